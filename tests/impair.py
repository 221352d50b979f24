"""A seeded impairment channel between two DtlsConnections, driven on real time.

OpenSSL's retransmission timer runs on its own wall clock (``DTLSv1_handle_timeout`` does
nothing before the real time has passed; see DTLS_set_timer_cb(3)), so a fake clock cannot make
it expire: this channel uses ``time.monotonic()`` and real sleeps.

Each direction is a :class:`dtls_ossl._impair.Link` with its own :class:`Impairment` (loss,
duplication, reordering) and its own ``random.Random`` seeded from ``(seed, direction)``, so the
n-th datagram sent one way always meets the same fate for a given seed, whatever the timing of
the other direction.

The loop (:func:`drive`): deliver what is due, call ``handle_timer`` on every connection whose
``get_timer()`` has passed, send what they produced through the impairment, then sleep until
the next timer or delivery (bounded by ``max_sleep``), until a condition holds or an overall
deadline passes. Several channels can be driven at once so that independent impaired
handshakes wait in parallel rather than one after the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dtls_ossl import ConnectionState, DtlsConnection, events
from dtls_ossl._impair import Impairment, Link

__all__ = ["CLEAN", "Channel", "Impairment", "Sent", "drive", "state_rank"]

_ORDER = list(ConnectionState)


def state_rank(state: ConnectionState) -> int:
    """Position of a state in the forward-only order NEW < HANDSHAKING < ... < FAILED."""
    return _ORDER.index(state)


CLEAN = Impairment()


@dataclass(frozen=True)
class Sent:
    """One datagram that left a connection (the channel's trace)."""

    at: float
    "time.monotonic() when the sender produced it."
    direction: str
    "``c2s`` or ``s2c``."
    data: bytes
    fate: str
    "``delivered``, ``dropped``, ``delayed`` (reordered) or ``duplicated``."


class Channel:
    """A client and a server joined by two impaired links.

    The channel collects every event of both connections (``client_events``,
    ``server_events``), a trace of every datagram sent (``trace``), and asserts on every step
    that neither connection's state goes backwards.
    """

    def __init__(
        self,
        client: DtlsConnection,
        server: DtlsConnection,
        *,
        seed: int = 0,
        c2s: Impairment = CLEAN,
        s2c: Impairment = CLEAN,
    ) -> None:
        self.client = client
        self.server = server
        self.seed = seed
        self.c2s = Link(c2s, seed, "c2s")
        self.s2c = Link(s2c, seed, "s2c")
        self._dst = {"c2s": server, "s2c": client}
        self.client_events: list[events.DtlsEvent] = []
        self.server_events: list[events.DtlsEvent] = []
        self.trace: list[Sent] = []
        self._ranks = {id(client): state_rank(client.state), id(server): state_rank(server.state)}

    # -------------------------------------------------------------------------- settings

    def set_impairment(
        self, *, c2s: Impairment | None = None, s2c: Impairment | None = None
    ) -> None:
        """Change the impairment of one or both directions from now on."""
        if c2s is not None:
            self.c2s.impairment = c2s
        if s2c is not None:
            self.s2c.impairment = s2c

    # --------------------------------------------------------------------------- driving

    def start(self, now: float | None = None) -> None:
        """``connect()`` the client and send its first flight."""
        now = time.monotonic() if now is None else now
        self.client.connect(now)
        self.step(now)

    def step(self, now: float) -> bool:
        """Do everything that is due at ``now``; return True if anything was delivered."""
        delivered_any = False
        for _ in range(1000):  # bounded: every round consumes queued datagrams
            self._timers(now)
            self._flush(now)
            delivered = False
            for link in (self.c2s, self.s2c):
                for d in link.pop_due(now):
                    self._dst[link.name].receive_datagram(d, now)
                    delivered = True
            self._flush(now)
            if not delivered:
                break
            delivered_any = True
        return delivered_any

    def next_wakeup(self) -> float | None:
        """The earliest timer or delivery time of this channel, or None."""
        times = [
            t
            for t in (
                self.client.get_timer(),
                self.server.get_timer(),
                self.c2s.next_at(),
                self.s2c.next_at(),
            )
            if t is not None
        ]
        return min(times) if times else None

    def run(
        self,
        until: Callable[[Channel], bool],
        *,
        timeout: float,
        max_sleep: float = 0.01,
    ) -> bool:
        """Drive this channel until ``until(self)`` or ``timeout`` seconds; True if it held."""
        return drive([self], until, timeout=timeout, max_sleep=max_sleep)[0]

    # ---------------------------------------------------------------------------- queries

    def established(self) -> bool:
        """Both ends completed the handshake."""
        return (
            self.client.state is ConnectionState.ESTABLISHED
            and self.server.state is ConnectionState.ESTABLISHED
        )

    def terminated(self) -> bool:
        """Either end has terminated."""
        ends = (ConnectionState.CLOSED, ConnectionState.FAILED)
        return self.client.state in ends or self.server.state in ends

    def sent(self, direction: str) -> list[Sent]:
        """The trace of one direction."""
        return [s for s in self.trace if s.direction == direction]

    # -------------------------------------------------------------------------- internals

    def _timers(self, now: float) -> None:
        for conn in (self.client, self.server):
            t = conn.get_timer()
            if t is not None and t <= now:
                conn.handle_timer(now)

    def _flush(self, now: float) -> None:
        for conn, link, evs in (
            (self.client, self.c2s, self.client_events),
            (self.server, self.s2c, self.server_events),
        ):
            for d in conn.datagrams_to_send(now):
                fate = link.push(d, now)
                self.trace.append(Sent(now, link.name, d, fate.outcome))
            while (e := conn.next_event()) is not None:
                evs.append(e)
            rank = state_rank(conn.state)
            assert rank >= self._ranks[id(conn)], f"{conn!r} went backwards"
            self._ranks[id(conn)] = rank


def drive(
    channels: Iterable[Channel],
    until: Callable[[Channel], bool],
    *,
    timeout: float,
    max_sleep: float = 0.01,
) -> list[bool]:
    """Drive several channels on real time until each satisfies ``until`` or time runs out.

    Returns, per channel, whether ``until`` held. A channel that satisfied it is no longer
    driven. Sleeps until the earliest timer or delivery, at most ``max_sleep`` at a time.
    """
    chans = list(channels)
    done = [False] * len(chans)
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        for i, ch in enumerate(chans):
            if not done[i]:
                ch.step(now)
                done[i] = until(ch)
        if all(done) or now >= deadline:
            return done
        wake = [
            w for i, ch in enumerate(chans) if not done[i] if (w := ch.next_wakeup()) is not None
        ]
        target = min([*wake, deadline, now + max_sleep])
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
