"""The demo's record printer: what a DTLS datagram carries, named for a timeline."""

from __future__ import annotations

from dtls_ossl import events

__all__ = ["describe_datagram"]

_HANDSHAKE_TYPES = {
    0: "HelloRequest",
    1: "ClientHello",
    2: "ServerHello",
    3: "HelloVerifyRequest",
    4: "NewSessionTicket",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    20: "Finished",
}
_ALERT_LEVELS = {1: "warning", 2: "fatal"}


def describe_datagram(data: bytes) -> str:
    """Name what a DTLS datagram carries, e.g. ``ServerHello+Certificate+ServerHelloDone``.

    Parses the 13-byte record headers (RFC 6347 §4.1) and, in epoch 0, the 12-byte handshake
    headers (RFC 6347 §4.2.2). Never raises: truncated input is labelled, not trusted.
    """
    labels: list[str] = []
    off = 0
    while off < len(data):
        if len(data) - off < 13:
            labels.append(f"?({len(data) - off} trailing bytes)")
            break
        ctype = data[off]
        epoch = int.from_bytes(data[off + 3 : off + 5], "big")
        length = int.from_bytes(data[off + 11 : off + 13], "big")
        body = data[off + 13 : off + 13 + length]
        off += 13 + length
        if ctype == 22 and epoch == 0:
            labels.extend(_handshake_labels(body))
        elif ctype == 22:
            labels.append("Finished (encrypted)")
        elif ctype == 20:
            labels.append("ChangeCipherSpec")
        elif ctype == 21 and epoch == 0 and len(body) == 2:
            level = _ALERT_LEVELS.get(body[0], str(body[0]))
            labels.append(f"Alert({level} {events.alert_name(body[1])})")
        elif ctype == 21:
            labels.append("Alert (encrypted)")
        elif ctype == 23:
            labels.append("ApplicationData")
        else:
            labels.append(f"ContentType{ctype}")
    return "+".join(labels) if labels else "(empty)"


def _handshake_labels(body: bytes) -> list[str]:
    """Name the handshake messages (or fragments of them) of one epoch-0 record."""
    out: list[str] = []
    pos = 0
    while pos < len(body):
        if len(body) - pos < 12:
            out.append("Handshake(truncated)")
            break
        msg_type = body[pos]
        total = int.from_bytes(body[pos + 1 : pos + 4], "big")
        frag_off = int.from_bytes(body[pos + 6 : pos + 9], "big")
        frag_len = int.from_bytes(body[pos + 9 : pos + 12], "big")
        name = _HANDSHAKE_TYPES.get(msg_type, f"Handshake{msg_type}")
        if frag_off or frag_len < total:
            name += f"[{frag_off}..{frag_off + frag_len}/{total}]"
        out.append(name)
        pos += 12 + frag_len
    return out
