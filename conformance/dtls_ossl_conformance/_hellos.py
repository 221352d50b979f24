"""ClientHellos that real clients send, built from one of ours: browser DTLS 1.3 offers, DTLS 1.0.

``browser-hello`` and ``dtls10-refused`` replay these to a server target (and the library's
framing tests to our own server). Each starts from a real ClientHello body of our client, so the
cipher suites, groups and signature algorithms are ones the target can answer in DTLS 1.2; only
what a browser or an old client adds or changes is added or changed.

Layouts (RFC 6347 §4.2.1, §4.1; RFC 8446 §4.2.1, §4.2.8): see :mod:`dtls_ossl._records`.
"""

from __future__ import annotations

from dtls_ossl._records import HANDSHAKE, HANDSHAKE_HEADER, RECORD_HEADER

__all__ = [
    "BROWSERS",
    "browser_hello",
    "dtls10_hello",
    "hello_body",
    "hello_record",
    "with_cookie",
]

BROWSERS = ("chromium", "firefox")
"The browsers whose DTLS 1.3-capable ClientHellos :func:`browser_hello` imitates."

_X25519MLKEM768 = 0x11EC
_X25519 = 0x001D
_SECP256R1 = 0x0017


def _u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _extensions_at(body: bytes) -> int:
    """Offset of the extensions' length in a ClientHello body (ours: well formed)."""
    off = 2 + 32  # client_version, random
    off += 1 + body[off]  # session_id
    off += 1 + body[off]  # cookie (DTLS)
    off += 2 + int.from_bytes(body[off : off + 2], "big")  # cipher_suites
    off += 1 + body[off]  # compression_methods
    return off


def browser_hello(body: bytes, browser: str = "chromium") -> bytes:
    """Add a browser's DTLS 1.3 offer to our ClientHello ``body``: about 1.4 KB.

    supported_versions (DTLS 1.3, 1.2) and a key_share led by a hybrid X25519MLKEM768 share
    (1216 bytes), then x25519 (and P-256 for Firefox), as Chromium and Firefox send them; the
    X25519MLKEM768 group is also offered in supported_groups. A DTLS 1.2 server ignores all of it
    (RFC 5246 §7.4.1.4: unknown extensions are ignored) and must answer in DTLS 1.2.
    """
    if browser not in BROWSERS:
        raise ValueError(f"unknown browser {browser!r}")
    off = _extensions_at(body)
    exts = body[off + 2 : off + 2 + int.from_bytes(body[off : off + 2], "big")]
    shares = (
        _u16(_X25519MLKEM768) + _u16(1216) + bytes(range(256)) * 4 + bytes(192)
        + _u16(_X25519) + _u16(32) + bytes(range(1, 33))
    )  # fmt: skip
    if browser == "firefox":
        shares += _u16(_SECP256R1) + _u16(65) + b"\x04" + bytes(range(2, 66))
    kept = b""
    i = 0
    while i + 4 <= len(exts):
        etype = int.from_bytes(exts[i : i + 2], "big")
        n = int.from_bytes(exts[i + 2 : i + 4], "big")
        data = exts[i + 4 : i + 4 + n]
        if etype == 10:  # supported_groups: the hybrid group first, as the browsers list it
            groups = _u16(_X25519MLKEM768) + data[2:]
            data = _u16(len(groups)) + groups
        kept += _u16(etype) + _u16(len(data)) + data
        i += 4 + n
    supported_versions = _u16(43) + _u16(5) + bytes([4]) + b"\xfe\xfc\xfe\xfd"
    key_share = _u16(51) + _u16(2 + len(shares)) + _u16(len(shares)) + shares
    extra = supported_versions + key_share
    if browser == "firefox":
        extra += _u16(28) + _u16(2) + _u16(0x4001)  # record_size_limit (RFC 8449)
        extra += _u16(45) + _u16(2) + b"\x01\x01"  # psk_key_exchange_modes: psk_dhe_ke
    new = kept + extra
    return body[:off] + _u16(len(new)) + new


def dtls10_hello(body: bytes) -> bytes:
    """Make our ClientHello ``body`` offer DTLS 1.0 only: client_version 0xfeff, no 1.3 offer."""
    off = _extensions_at(body)
    exts = body[off + 2 :]
    kept = b""
    i = 0
    while i + 4 <= len(exts):
        etype = int.from_bytes(exts[i : i + 2], "big")
        n = int.from_bytes(exts[i + 2 : i + 4], "big")
        if etype != 43:  # supported_versions
            kept += exts[i : i + 4 + n]
        i += 4 + n
    return b"\xfe\xff" + body[2:off] + _u16(len(kept)) + kept


def with_cookie(body: bytes, cookie: bytes) -> bytes:
    """Put a HelloVerifyRequest's ``cookie`` into a ClientHello body (RFC 6347 §4.2.1)."""
    off = 2 + 32
    off += 1 + body[off]
    end = off + 1 + body[off]
    return body[:off] + bytes([len(cookie)]) + cookie + body[end:]


def hello_record(
    body: bytes,
    *,
    message_seq: int,
    record_seqs: tuple[int, ...],
    version: int = 0xFEFD,
) -> list[bytes]:
    """One datagram per fragment: ``body`` cut in ``len(record_seqs)`` equal parts."""
    parts = len(record_seqs)
    bounds = [len(body) * i // parts for i in range(parts + 1)]
    out = []
    for seq, a, b in zip(record_seqs, bounds, bounds[1:], strict=False):
        frag = (
            bytes([1])
            + len(body).to_bytes(3, "big")
            + message_seq.to_bytes(2, "big")
            + a.to_bytes(3, "big")
            + (b - a).to_bytes(3, "big")
            + body[a:b]
        )
        out.append(
            bytes([HANDSHAKE])
            + version.to_bytes(2, "big")
            + b"\x00\x00"
            + seq.to_bytes(6, "big")
            + len(frag).to_bytes(2, "big")
            + frag
        )
    return out


def hello_body(datagram: bytes) -> bytes:
    """Return the ClientHello body of our first datagram (one whole, unfragmented record)."""
    return datagram[RECORD_HEADER + HANDSHAKE_HEADER :]
