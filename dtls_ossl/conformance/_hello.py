"""Read a peer's ClientHello from the datagrams it sent: size, fragments, offered versions.

The evidence for the cells where our server faces a DTLS 1.3-capable client (a browser,
wolfSSL): how many handshake fragments carried the first ClientHello, its length, whether its
``supported_versions`` extension offers DTLS 1.3 (0xfefc, RFC 9147 §5.3) and which key share
groups it sends. Only the plaintext epoch-0 records are read; nothing here is trusted beyond
the bounds checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["ClientHelloInfo", "inspect_client_hello"]

_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SUPPORTED_VERSIONS = 43
_KEY_SHARE = 51
_SUPPORTED_GROUPS = 10

_VERSIONS = {0xFEFC: "DTLSv1.3", 0xFEFD: "DTLSv1.2", 0xFEFF: "DTLSv1.0"}
_GROUPS = {
    0x0017: "P-256",
    0x0018: "P-384",
    0x0019: "P-521",
    0x001D: "X25519",
    0x001E: "X448",
    0x0100: "ffdhe2048",
    0x11EC: "X25519MLKEM768",
    0x6399: "X25519Kyber768Draft00",
}


@dataclass
class ClientHelloInfo:
    """What the first ClientHello (message_seq of the first one seen) looked like."""

    message_seq: int
    length: int
    "Length of the ClientHello body (the handshake message, without its 12-byte header)."
    fragments: int = 0
    "Distinct fragments it arrived in (the first transmission; retransmissions not counted)."
    datagrams: int = 0
    "Datagrams that carried those fragments."
    legacy_version: int = 0
    versions: list[int] = field(default_factory=list)
    "supported_versions, in the client's order (empty if the extension is absent)."
    key_shares: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    complete: bool = False
    "All its bytes were seen."

    @property
    def offers_dtls13(self) -> bool:
        """Whether supported_versions lists DTLS 1.3 (0xfefc)."""
        return 0xFEFC in self.versions

    def describe(self) -> str:
        """One line, e.g. ``ClientHello 1432 B in 2 fragments / 2 datagrams; versions ...``."""
        versions = ", ".join(f"{_VERSIONS.get(v, hex(v))} ({v:04x})" for v in self.versions)
        shares = ", ".join(_GROUPS.get(g, hex(g)) for g in self.key_shares)
        text = (
            f"ClientHello {self.length} B in {self.fragments} fragment"
            f"{'s' if self.fragments != 1 else ''} / {self.datagrams} datagram"
            f"{'s' if self.datagrams != 1 else ''}; supported_versions "
            f"[{versions or 'absent'}]"
        )
        if shares:
            text += f"; key_share [{shares}]"
        if not self.complete:
            text += " (incomplete)"
        return text


def _records(datagram: bytes) -> Iterable[tuple[int, int, bytes]]:
    """Yield (content type, epoch, fragment) of each record in a datagram."""
    at = 0
    while at + 13 <= len(datagram):
        ctype = datagram[at]
        epoch = int.from_bytes(datagram[at + 3 : at + 5], "big")
        length = int.from_bytes(datagram[at + 11 : at + 13], "big")
        body = datagram[at + 13 : at + 13 + length]
        if len(body) < length:
            return
        yield ctype, epoch, body
        at += 13 + length


def inspect_client_hello(datagrams: Iterable[bytes]) -> ClientHelloInfo | None:
    """Reassemble the first ClientHello found in ``datagrams`` and describe it (None if none)."""
    info: ClientHelloInfo | None = None
    body = b""
    have: dict[int, int] = {}  # fragment offset -> length
    for datagram in datagrams:
        carried = False
        for ctype, epoch, fragment in _records(datagram):
            if ctype != _HANDSHAKE or epoch != 0:
                continue
            at = 0
            while at + 12 <= len(fragment):
                mtype = fragment[at]
                total = int.from_bytes(fragment[at + 1 : at + 4], "big")
                seq = int.from_bytes(fragment[at + 4 : at + 6], "big")
                off = int.from_bytes(fragment[at + 6 : at + 9], "big")
                flen = int.from_bytes(fragment[at + 9 : at + 12], "big")
                piece = fragment[at + 12 : at + 12 + flen]
                at += 12 + flen
                if mtype != _CLIENT_HELLO or len(piece) != flen or off + flen > total:
                    continue
                if info is None:
                    info = ClientHelloInfo(message_seq=seq, length=total)
                    body = bytes(total)
                if seq != info.message_seq or total != info.length or off in have:
                    continue
                have[off] = flen
                body = body[:off] + piece + body[off + flen :]
                info.fragments += 1
                carried = True
        if carried and info is not None:
            info.datagrams += 1
    if info is None:
        return None
    covered = sorted(have.items())
    end = 0
    for off, flen in covered:
        if off > end:
            break
        end = max(end, off + flen)
    info.complete = end >= info.length
    if info.complete:
        _parse_body(info, body)
    return info


def _parse_body(info: ClientHelloInfo, body: bytes) -> None:
    try:
        info.legacy_version = int.from_bytes(body[0:2], "big")
        at = 2 + 32
        at += 1 + body[at]  # session_id
        at += 1 + body[at]  # cookie
        at += 2 + int.from_bytes(body[at : at + 2], "big")  # cipher_suites
        at += 1 + body[at]  # compression_methods
        end = at + 2 + int.from_bytes(body[at : at + 2], "big")
        at += 2
        while at + 4 <= min(end, len(body)):
            etype = int.from_bytes(body[at : at + 2], "big")
            elen = int.from_bytes(body[at + 2 : at + 4], "big")
            data = body[at + 4 : at + 4 + elen]
            at += 4 + elen
            if etype == _SUPPORTED_VERSIONS and data:
                info.versions = [
                    int.from_bytes(data[i : i + 2], "big") for i in range(1, 1 + data[0] - 1, 2)
                ]
            elif etype == _KEY_SHARE and len(data) >= 2:
                i = 2
                while i + 4 <= len(data):
                    info.key_shares.append(int.from_bytes(data[i : i + 2], "big"))
                    i += 4 + int.from_bytes(data[i + 2 : i + 4], "big")
            elif etype == _SUPPORTED_GROUPS and len(data) >= 2:
                n = int.from_bytes(data[0:2], "big")
                info.groups = [
                    int.from_bytes(data[i : i + 2], "big") for i in range(2, 2 + n - 1, 2)
                ]
    except IndexError:
        return
