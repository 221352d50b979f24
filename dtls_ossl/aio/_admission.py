"""Who may start a handshake: :class:`AdmissionGate` (strangers, limits, cookies, restarts).

Theory of operation
===================

A DTLS datagram from an address without a connection costs a parse and a few counters, never
per-peer state, unless the gate says :attr:`Verdict.ACCEPT`:

1. It must be the first fragment of an epoch-0 ClientHello (a later fragment is dropped: the
   client retransmits the whole hello, whose first fragment carries what the cookie needs).
2. It must fit the limits: handshakes in progress, peers, and accepted handshakes in progress
   per source address (:func:`source_key`: one IPv4 address, one IPv6 /64).
3. With a :class:`~dtls_ossl.cookies.CookieVerifier`, it must carry a valid cookie; otherwise
   the gate answers with a HelloVerifyRequest (stateless, RFC 6347 §4.2.1) through ``send``.

On an established association, an epoch-0 ClientHello (RFC 6347 §4.2.8) goes through the same
cookie check: a valid cookie with a new random means the peer restarted
(:attr:`Verdict.ACCEPT`: the caller replaces the association); a late copy of the hello that
started the association is dropped; anything else is the connection's own business
(:attr:`Verdict.PASS`).

The gate keeps its own counters; the endpoint adds them into its
:class:`~dtls_ossl.aio.ServerStats`. The wall clock (cookies are minted per time bucket) and
``send`` are injected.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections.abc import Callable
from typing import Any, final

from dtls_ossl.cookies import ClientHelloInfo, CookieVerifier, parse_client_hello_untrusted

__all__ = ["AdmissionGate", "Verdict", "source_key"]


def source_key(addr: tuple[Any, ...]) -> object:
    """Return what ``max_handshakes_per_address`` counts by.

    That is the IPv4 address (also when mapped into IPv6), or the /64 prefix of an IPv6
    address (one host usually has a whole /64).
    """
    host = addr[0]
    if not isinstance(host, str) or ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return ip.packed[:8]


class Verdict(enum.Enum):
    """What the caller does with a datagram the gate looked at."""

    ACCEPT = "accept"
    "Start a server connection with this ClientHello (the hello id comes with it)."
    CONSUMED = "consumed"
    "Nothing: the gate dropped it, refused it or answered it (see its counters)."
    PASS = "pass"
    "Not the gate's business: hand it to the existing connection."


_CONSUMED = (Verdict.CONSUMED, 0)
_PASS = (Verdict.PASS, 0)


@final
class AdmissionGate:
    """Decides which ClientHellos may create (or restart) a connection; see the module doc.

    :param send: sends ``(datagram, addr)``: used for HelloVerifyRequests.
    :param verifier: require a stateless cookie (None: no cookie exchange).
    :param max_handshakes: handshakes in progress beyond which new hellos are refused.
    :param max_peers: connections beyond which new hellos are refused.
    :param max_per_source: accepted handshakes in progress per :func:`source_key`.
    :param wall_clock: seconds since the epoch, for cookies (``time.time``).
    """

    __slots__ = (
        "_max_handshakes",
        "_max_peers",
        "_max_per_source",
        "_per_source",
        "_send",
        "_verifier",
        "_wall_clock",
        "cookies_rejected",
        "dropped",
        "hello_verify_sent",
        "rejected_limit",
        "restarted",
    )

    def __init__(
        self,
        send: Callable[[bytes, tuple[Any, ...]], object],
        *,
        verifier: CookieVerifier | None,
        max_handshakes: int,
        max_peers: int,
        max_per_source: int,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Make a gate with every counter at zero."""
        self._send = send
        self._verifier = verifier
        self._max_handshakes = max_handshakes
        self._max_peers = max_peers
        self._max_per_source = max_per_source
        self._wall_clock = wall_clock
        # Accepted handshakes in progress by source_key (entries at zero are removed).
        self._per_source: dict[object, int] = {}
        self.hello_verify_sent = 0
        "HelloVerifyRequests sent."
        self.cookies_rejected = 0
        "ClientHellos whose cookie was invalid or expired."
        self.rejected_limit = 0
        "New ClientHellos refused by a limit."
        self.restarted = 0
        "Associations a new, cookie-verified ClientHello replaced."
        self.dropped = 0
        "Datagrams the gate dropped (not a first ClientHello fragment, a late copy)."

    @property
    def cookie_exchange(self) -> bool:
        """True if new peers must return a stateless cookie."""
        return self._verifier is not None

    def admit(
        self, data: bytes, addr: tuple[Any, ...], *, handshakes: int, peers: int
    ) -> tuple[Verdict, int]:
        """Look at a DTLS datagram from an address without a connection.

        ``handshakes`` and ``peers`` are the caller's current counts. Returns
        ``(Verdict.ACCEPT, hello_id)`` or ``(Verdict.CONSUMED, 0)``.
        """
        info = parse_client_hello_untrusted(data)
        if info is None or info.fragment_offset:
            self.dropped += 1
            return _CONSUMED
        if (
            handshakes >= self._max_handshakes
            or peers >= self._max_peers
            or self._per_source.get(source_key(addr), 0) >= self._max_per_source
        ):
            self.rejected_limit += 1
            return _CONSUMED
        if not self._cookie_ok(info, addr):
            return _CONSUMED
        return Verdict.ACCEPT, hash(info.random)

    def restart(self, data: bytes, addr: tuple[Any, ...], hello_id: int) -> tuple[Verdict, int]:
        """Look at a handshake datagram on an established association started by ``hello_id``.

        Returns ``(Verdict.ACCEPT, new_hello_id)`` if the peer restarted (RFC 6347 §4.2.8),
        ``(Verdict.PASS, 0)`` if it is not an epoch-0 ClientHello or there is no cookie
        exchange, else ``(Verdict.CONSUMED, 0)``. An accepted restart is counted.
        """
        if self._verifier is None:
            return _PASS  # without a cookie, a hello cannot prove the address: keep the peer
        info = parse_client_hello_untrusted(data)
        if info is None:
            return _PASS
        if info.fragment_offset or not self._cookie_ok(info, addr):
            if info.fragment_offset:
                self.dropped += 1
            return _CONSUMED
        new_id = hash(info.random)
        if new_id == hello_id:
            self.dropped += 1  # a late copy of the hello that started this association
            return _CONSUMED
        self.restarted += 1
        return Verdict.ACCEPT, new_id

    def started(self, addr: tuple[Any, ...]) -> None:
        """Count in an accepted handshake from ``addr``."""
        key = source_key(addr)
        self._per_source[key] = self._per_source.get(key, 0) + 1

    def finished(self, addr: tuple[Any, ...]) -> None:
        """Count out an accepted handshake from ``addr`` that completed or ended."""
        key = source_key(addr)
        n = self._per_source.get(key, 0) - 1
        if n > 0:
            self._per_source[key] = n
        else:
            self._per_source.pop(key, None)

    def in_progress_from(self, addr: tuple[Any, ...]) -> int:
        """Count the accepted handshakes in progress from ``addr``'s :func:`source_key`."""
        return self._per_source.get(source_key(addr), 0)

    def _cookie_ok(self, info: ClientHelloInfo, addr: tuple[Any, ...]) -> bool:
        """Check the hello's cookie; if it is missing or bad, answer a HelloVerifyRequest."""
        verifier = self._verifier
        if verifier is None:
            return True
        wall = self._wall_clock()
        if info.cookie and verifier.check(info, addr, wall):
            return True
        if info.cookie:
            self.cookies_rejected += 1
        self.hello_verify_sent += 1
        self._send(verifier.hello_verify_request(info, addr, wall), addr)
        return False
