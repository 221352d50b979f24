"""The counters of an endpoint or server: :class:`ServerStats` (a snapshot, summed with +)."""

from __future__ import annotations

from dtls_ossl._stats import Stats
from dtls_ossl._util import final

__all__ = ["EndpointCounts", "ServerStats"]


@final
class ServerStats(Stats):
    """Counters of an endpoint or server (a snapshot; summed over workers for ``workers > 1``).

    Counters only grow, except the two gauges ``handshakes_in_progress`` and ``active_peers``.
    """

    handshakes_completed: int = 0
    "Handshakes that completed (peer certificate verified)."
    handshakes_failed: int = 0
    "Connections that ended before completing their handshake (including timeouts)."
    handshakes_timed_out: int = 0
    "Of the failed handshakes, those that hit the handshake deadline or OpenSSL's retry limit."
    handshakes_in_progress: int = 0
    "Gauge: connections that exist and have not completed their handshake."
    active_peers: int = 0
    "Gauge: established connections."
    hello_verify_sent: int = 0
    "HelloVerifyRequests sent (stateless: no state is created for them)."
    cookies_rejected: int = 0
    "ClientHellos carrying a cookie that was invalid or expired (answered with a new one)."
    peers_rejected_limit: int = 0
    """New ClientHellos dropped because ``max_handshakes``, ``max_peers`` or
    ``max_handshakes_per_address`` was reached."""
    peers_rejected_unknown: int = 0
    "New ClientHellos dropped because ``remote_fingerprints(addr)`` returned None or failed."
    peers_reaped_idle: int = 0
    "Established peers closed by ``idle_timeout``."
    peers_restarted: int = 0
    "Associations replaced by a new, cookie-verified handshake from the same address."
    datagrams_received: int = 0
    "Datagrams received by the endpoint (every kind)."
    datagrams_sent: int = 0
    "Datagrams sent by the endpoint's DTLS connections (including HelloVerifyRequests)."
    datagrams_dropped: int = 0
    "Datagrams the endpoint itself dropped: strangers' non-hellos, late fragments, unrouted."
    datagrams_overflowed: int = 0
    "Decrypted records dropped because a stream's receive queue was full (nobody reading)."
    network_errors: int = 0
    "Errors reported by the transport (``error_received``: ICMP unreachable and the like)."
    handler_errors: int = 0
    "Exceptions raised by the handler or the datagram callbacks (logged)."
    timer_wakeups: int = 0
    "Wake-ups of the endpoint's one timer (many deadlines share one; idle peers cost none)."
    memory_releases: int = 0
    "Times the C heap's free pages were given back after failed handshakes (``malloc_trim``)."


class EndpointCounts:
    """What an endpoint counts itself, as it runs (its gate, timer heap and router count the rest).

    Mutable and cheap to bump; :attr:`DtlsEndpoint.stats` combines it with the others' counts
    into one :class:`ServerStats` snapshot.
    """

    __slots__ = (
        "active",
        "completed",
        "dropped",
        "failed",
        "handler_errors",
        "in_progress",
        "network_errors",
        "overflowed",
        "reaped_idle",
        "received",
        "rejected_unknown",
        "sent",
        "timed_out",
    )

    completed: int
    failed: int
    timed_out: int
    in_progress: int
    active: int
    rejected_unknown: int
    reaped_idle: int
    received: int
    sent: int
    dropped: int
    overflowed: int
    network_errors: int
    handler_errors: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
