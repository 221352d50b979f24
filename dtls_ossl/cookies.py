"""Stateless DTLS cookie exchange (HelloVerifyRequest, RFC 6347 §4.2.1).

A public DTLS server must not keep per-peer state for a ClientHello until the peer has shown it
receives datagrams at its claimed address. :class:`CookieVerifier` answers a cookie-less
ClientHello with a HelloVerifyRequest whose cookie is an HMAC of the client address and the
hello's random under a secret that rotates; no state is kept. When a ClientHello comes back with
a valid cookie, the server creates a :class:`~dtls_ossl.DtlsConnection` and hands it that
datagram with :meth:`~dtls_ossl.DtlsConnection.accept_verified_hello`.

Unlike OpenSSL's ``DTLSv1_listen(3)``, this works with a ClientHello split into fragments (as
Chromium's and Firefox's 1.4 KB hellos with post-quantum key shares are): only the first
fragment is needed, because it carries the random and the cookie. Later fragments of a hello
whose first fragment has not been verified are simply dropped; the client retransmits.

Secrets: pass the same ``secret`` to every process (or machine) that serves one address, and
cookies minted by one are accepted by all. The key used for a cookie is derived from the secret
and the time bucket (``rotation_interval``), so rotation needs no coordination; a cookie stays
valid for between one and two intervals. ``now`` here is wall-clock time (``time.time()``), the
one clock that processes share.
"""

from __future__ import annotations

import hmac
import os

from dtls_ossl._util import final
from dtls_ossl.exceptions import ConfigurationError

__all__ = ["ClientHelloInfo", "CookieVerifier", "parse_client_hello_untrusted"]

_COOKIE_TAG = 16  # bytes of HMAC-SHA256 kept; RFC 6347 allows up to 255 bytes of cookie


@final
class ClientHelloInfo:
    """The fields of a ClientHello's first fragment that the cookie exchange needs."""

    __slots__ = ("cookie", "fragment_offset", "message_seq", "random", "record_seq", "version")

    def __init__(
        self,
        *,
        record_seq: bytes,
        message_seq: int,
        fragment_offset: int,
        version: bytes,
        random: bytes,
        cookie: bytes,
    ) -> None:
        """Hold the parsed fields (see :func:`parse_client_hello_untrusted`)."""
        self.record_seq = record_seq
        self.message_seq = message_seq
        self.fragment_offset = fragment_offset
        self.version = version
        self.random = random
        self.cookie = cookie


def parse_client_hello_untrusted(datagram: bytes) -> ClientHelloInfo | None:
    """Parse the ClientHello (fragment) in the first record of a datagram, or return None.

    None also for a record longer than the datagram or an inconsistent fragment header. Only
    the fields up to the cookie are read; they all sit in the first fragment. A fragment with
    a non-zero offset is returned with empty ``random`` and ``cookie``. Cannot fail.
    """
    d = datagram
    n = len(d)
    # Record header (13) + handshake header (12).
    if n < 25 or d[0] != 22 or d[1] != 0xFE or d[3] != 0 or d[4] != 0 or d[13] != 1:
        return None
    record_len = (d[11] << 8) | d[12]
    end = 13 + record_len
    # Handshake header: msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)
    msg_len = (d[14] << 16) | (d[15] << 8) | d[16]
    message_seq = (d[17] << 8) | d[18]
    offset = (d[19] << 16) | (d[20] << 8) | d[21]
    frag_len = (d[22] << 16) | (d[23] << 8) | d[24]
    body_end = 25 + frag_len
    # A truncated record or an inconsistent fragment header is not a ClientHello: the
    # connection's own screen would drop it too (DtlsOssl_well_formed, DtlsOssl_acceptable).
    if end > n or body_end > end or offset + frag_len > msg_len:
        return None
    if offset != 0:
        return ClientHelloInfo(
            record_seq=bytes(d[5:11]),
            message_seq=message_seq,
            fragment_offset=offset,
            version=b"",
            random=b"",
            cookie=b"",
        )
    pos = 25
    # client_version(2) random(32) session_id<0..32> cookie<0..255>
    if body_end - pos < 35:
        return None
    version = bytes(d[pos : pos + 2])
    random = bytes(d[pos + 2 : pos + 34])
    sid_len = d[pos + 34]
    pos += 35 + sid_len
    if sid_len > 32 or pos >= body_end:
        return None
    cookie_len = d[pos]
    pos += 1
    if pos + cookie_len > body_end:
        return None
    return ClientHelloInfo(
        record_seq=bytes(d[5:11]),
        message_seq=message_seq,
        fragment_offset=0,
        version=version,
        random=random,
        cookie=bytes(d[pos : pos + cookie_len]),
    )


@final
class CookieVerifier:
    """Mint and check stateless DTLS cookies.

    :param secret: at least 16 bytes shared by every process serving the same address; a
        random one is made when omitted (then cookies are only valid in this process).
    :param rotation_interval: seconds per key; a cookie is accepted in its own interval and
        the next one.
    """

    __slots__ = ("_keys", "_rotation", "_secret")

    def __init__(self, secret: bytes | None = None, *, rotation_interval: float = 30.0) -> None:
        """Create the verifier; see the class docstring."""
        if secret is None:
            secret = os.urandom(32)
        if not isinstance(secret, (bytes, bytearray)) or len(secret) < 16:
            raise ConfigurationError("cookie secret: at least 16 bytes are needed")
        if not rotation_interval > 0:
            raise ConfigurationError("rotation_interval: must be > 0 seconds")
        self._secret = bytes(secret)
        self._rotation = float(rotation_interval)
        self._keys: dict[int, bytes] = {}

    def _key(self, bucket: int) -> bytes:
        key = self._keys.get(bucket)
        if key is None:
            if len(self._keys) > 4:
                self._keys.clear()
            key = self._keys[bucket] = hmac.digest(
                self._secret, b"dtls_ossl cookie key" + bucket.to_bytes(8, "big"), "sha256"
            )
        return key

    def _cookie(self, bucket: int, address: bytes, random: bytes) -> bytes:
        tag = hmac.digest(self._key(bucket), address + random, "sha256")[:_COOKIE_TAG]
        return bytes([bucket & 0xFF]) + tag

    def cookie_for(self, address: object, random: bytes, now: float) -> bytes:
        """Return the cookie for a client at ``address`` whose hello carries ``random``."""
        return self._cookie(int(now // self._rotation), _address_bytes(address), random)

    def check(self, hello: ClientHelloInfo, address: object, now: float) -> bool:
        """Tell whether ``hello`` carries a cookie we minted for ``address`` recently."""
        cookie = hello.cookie
        if len(cookie) != _COOKIE_TAG + 1:
            return False
        bucket = int(now // self._rotation)
        # The first byte names the bucket, so only one HMAC is computed per check.
        for b in (bucket, bucket - 1):
            if cookie[0] == b & 0xFF:
                expected = self._cookie(b, _address_bytes(address), hello.random)
                return hmac.compare_digest(expected, cookie)
        return False

    def hello_verify_request(self, hello: ClientHelloInfo, address: object, now: float) -> bytes:
        """Build the HelloVerifyRequest datagram answering ``hello`` (RFC 6347 §4.2.1).

        The record sequence number and message_seq echo the ClientHello's, as the RFC asks, so
        that repeated requests never collide; server_version is DTLS 1.0 (0xfeff), which every
        DTLS client accepts in this message.
        """
        cookie = self.cookie_for(address, hello.random, now)
        body = b"\xfe\xff" + bytes([len(cookie)]) + cookie
        n = len(body)
        handshake = (
            b"\x03"
            + n.to_bytes(3, "big")
            + hello.message_seq.to_bytes(2, "big")
            + b"\x00\x00\x00"
            + n.to_bytes(3, "big")
            + body
        )
        return (
            b"\x16\xfe\xff\x00\x00"
            + hello.record_seq
            + len(handshake).to_bytes(2, "big")
            + handshake
        )


def _address_bytes(address: object) -> bytes:
    """Canonical bytes of a peer address: ``(host, port)`` tuples, strings or bytes."""
    if isinstance(address, bytes):
        return address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}|{address[1]}".encode()
    return str(address).encode()
