"""The demo's record printer: what a DTLS datagram carries, named for a timeline."""

from __future__ import annotations

from dtls_ossl import events
from dtls_ossl._records import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    HANDSHAKE_TYPES,
    split_handshake_untrusted,
    split_records_untrusted,
)

__all__ = ["describe_datagram"]

_ALERT_LEVELS = {1: "warning", 2: "fatal"}


def describe_datagram(data: bytes) -> str:
    """Name what a DTLS datagram carries, e.g. ``ServerHello+Certificate+ServerHelloDone``.

    Parses the 13-byte record headers (RFC 6347 §4.1) and, in epoch 0, the 12-byte handshake
    headers (RFC 6347 §4.2.2) with the untrusted parsers. Never raises: bytes that do not form
    a whole record are labelled, not trusted.
    """
    labels: list[str] = []
    records, stop = split_records_untrusted(data)
    for record in records:
        ctype, epoch, body = record.content_type, record.epoch, record.fragment
        if ctype == HANDSHAKE and epoch == 0:
            labels.extend(_handshake_labels(body))
        elif ctype == HANDSHAKE:
            labels.append("Finished (encrypted)")
        elif ctype == CHANGE_CIPHER_SPEC:
            labels.append("ChangeCipherSpec")
        elif ctype == ALERT and epoch == 0 and len(body) == 2:
            level = _ALERT_LEVELS.get(body[0], str(body[0]))
            labels.append(f"Alert({level} {events.alert_name(body[1])})")
        elif ctype == ALERT:
            labels.append("Alert (encrypted)")
        elif ctype == APPLICATION_DATA:
            labels.append("ApplicationData")
        else:
            labels.append(f"ContentType{ctype}")
    if stop < len(data):
        labels.append(f"?({len(data) - stop} trailing bytes)")
    return "+".join(labels) if labels else "(empty)"


def _handshake_labels(body: bytes) -> list[str]:
    """Name the handshake messages (or fragments of them) of one epoch-0 record."""
    out: list[str] = []
    fragments, stop = split_handshake_untrusted(body)
    for hs in fragments:
        name = HANDSHAKE_TYPES.get(hs.msg_type, f"Handshake{hs.msg_type}")
        frag_len = len(hs.body)
        if hs.fragment_offset or frag_len < hs.length:
            name += f"[{hs.fragment_offset}..{hs.fragment_offset + frag_len}/{hs.length}]"
        out.append(name)
    if stop < len(body):
        out.append("Handshake(truncated)")
    return out
