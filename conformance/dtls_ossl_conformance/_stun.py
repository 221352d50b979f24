"""A minimal ICE-lite responder: STUN Binding requests in, success responses out (RFC 5389).

Chromium runs full ICE and, as the controlling agent facing an ``a=ice-lite`` peer, sends
Binding requests signed with our ice-pwd (short-term credentials, RFC 5389 §10.1.1). We answer
each valid one with a Binding success response carrying XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY
(HMAC-SHA1 keyed with our ice-pwd) and FINGERPRINT (CRC-32 xor 0x5354554E). Requests whose
integrity or fingerprint does not check are dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import zlib

__all__ = ["MAGIC_COOKIE", "binding_response_untrusted", "is_stun"]

MAGIC_COOKIE = 0x2112A442
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101
_USERNAME = 0x0006
_MESSAGE_INTEGRITY = 0x0008
_XOR_MAPPED_ADDRESS = 0x0020
_USE_CANDIDATE = 0x0025
_FINGERPRINT = 0x8028
_FINGERPRINT_XOR = 0x5354554E


def is_stun(data: bytes) -> bool:
    """RFC 7983: a first byte of 0..3 and the magic cookie."""
    return len(data) >= 20 and data[0] < 4 and data[4:8] == MAGIC_COOKIE.to_bytes(4, "big")


def _attributes_untrusted(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, offset of the attribute header, value) for each attribute; [] if malformed."""
    out = []
    at = 20
    end = 20 + int.from_bytes(data[2:4], "big")
    if end != len(data):
        return []
    while at + 4 <= end:
        kind, length = struct.unpack_from("!HH", data, at)
        if at + 4 + length > end:
            return []
        out.append((kind, at, data[at + 4 : at + 4 + length]))
        at += 4 + (length + 3) // 4 * 4
    return out


def _integrity(message: bytes, key: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha1).digest()


def _fingerprint(message: bytes) -> int:
    return (zlib.crc32(message) & 0xFFFFFFFF) ^ _FINGERPRINT_XOR


def binding_response_untrusted(
    data: bytes, addr: tuple[str, int], local_ufrag: str, password: str
) -> tuple[bytes, bool] | None:
    """Answer a Binding request for us; None if it is not a valid one.

    :returns: the response and whether the request carried USE-CANDIDATE.
    """
    if not is_stun(data) or int.from_bytes(data[0:2], "big") != _BINDING_REQUEST:
        return None
    attrs = _attributes_untrusted(data)
    if not attrs:
        return None
    key = password.encode()
    username = next((v for k, _, v in attrs if k == _USERNAME), b"")
    if not username.startswith(local_ufrag.encode() + b":"):
        return None
    mi = next(((off, v) for k, off, v in attrs if k == _MESSAGE_INTEGRITY), None)
    if mi is None:
        return None
    off, value = mi
    # MESSAGE-INTEGRITY covers the header (length up to and including itself) and what precedes.
    head = bytearray(data[:off])
    struct.pack_into("!H", head, 2, off + 24 - 20)
    if not hmac.compare_digest(_integrity(bytes(head), key), value):
        return None
    use_candidate = any(k == _USE_CANDIDATE for k, _, _ in attrs)
    tid = data[8:20]
    ip = int(ipaddress.IPv4Address(addr[0]))
    xport = addr[1] ^ (MAGIC_COOKIE >> 16)
    body = struct.pack("!HHBBHI", _XOR_MAPPED_ADDRESS, 8, 0, 1, xport, ip ^ MAGIC_COOKIE)
    header = struct.pack("!HHI", _BINDING_SUCCESS, len(body) + 24, MAGIC_COOKIE) + tid
    signed = header + body
    body += struct.pack("!HH", _MESSAGE_INTEGRITY, 20) + _integrity(signed, key)
    header = struct.pack("!HHI", _BINDING_SUCCESS, len(body) + 8, MAGIC_COOKIE) + tid
    message = header + body
    message += struct.pack("!HHI", _FINGERPRINT, 4, _fingerprint(message))
    return message, use_candidate
