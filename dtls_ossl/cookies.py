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

# ClientHelloInfo and its parser live with every other parser of peer bytes; they stay
# importable from here, where they were first published.
from dtls_ossl._limits import check_positive
from dtls_ossl._records import ClientHelloInfo, parse_client_hello_untrusted
from dtls_ossl._util import final
from dtls_ossl.exceptions import ConfigurationError

__all__ = ["ClientHelloInfo", "CookieVerifier", "parse_client_hello_untrusted"]

_COOKIE_TAG = 16  # bytes of HMAC-SHA256 kept; RFC 6347 allows up to 255 bytes of cookie


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
        check_positive("rotation_interval", rotation_interval)
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
