"""A seeded impairment channel between two DtlsConnections, driven on real time.

OpenSSL's retransmission timer runs on its own wall clock (STYLE.md section 0, fact 3), so a
fake clock cannot make it expire: this channel uses ``time.monotonic()`` and real sleeps.

Each direction has its own :class:`Impairment` (loss, duplication, reordering) and its own
``random.Random`` seeded from ``(seed, direction)``, so the n-th datagram sent one way always
meets the same fate for a given seed, whatever the timing of the other direction.

The loop (:func:`drive`): deliver what is due, call ``handle_timer`` on every connection whose
``get_timer()`` has passed, send what they produced through the impairment, then sleep until
the next timer or delivery (bounded by ``max_sleep``), until a condition holds or an overall
deadline passes. Several channels can be driven at once so that independent impaired
handshakes wait in parallel rather than one after the other.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dtls_ossl import ConnectionState, DtlsConnection, events

__all__ = ["CLEAN", "Channel", "Impairment", "Sent", "drive", "state_rank"]

_ORDER = list(ConnectionState)


def state_rank(state: ConnectionState) -> int:
    """Position of a state in the forward-only order NEW < HANDSHAKING < ... < FAILED."""
    return _ORDER.index(state)


@dataclass(frozen=True)
class Impairment:
    """What happens to the datagrams of one direction. Probabilities are per datagram."""

    loss: float = 0.0
    "Probability that a datagram is dropped."
    duplicate: float = 0.0
    "Probability that a delivered datagram is delivered a second time (a little later)."
    reorder: float = 0.0
    "Probability that a datagram is held back by up to ``reorder_delay`` (later ones overtake)."
    reorder_delay: float = 0.02
    "Largest extra delay, in seconds, of a held-back datagram or a duplicate."

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}: probability {p!r} is outside 0..1")
        if self.reorder_delay < 0:
            raise ValueError("reorder_delay must be >= 0")


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


@dataclass
class _Link:
    name: str
    dst: DtlsConnection
    impairment: Impairment
    rng: random.Random
    queue: list[tuple[float, int, bytes]] = field(default_factory=list)
    counter: itertools.count = field(default_factory=itertools.count)

    def push(self, data: bytes, now: float) -> str:
        imp = self.impairment
        rng = self.rng
        # Always draw the same number of values per datagram: fates stay aligned per index.
        r_loss, r_dup, r_reorder, r_delay, r_dup_delay = (rng.random() for _ in range(5))
        if r_loss < imp.loss:
            return "dropped"
        fate = "delivered"
        at = now
        if r_reorder < imp.reorder:
            at = now + r_delay * imp.reorder_delay
            fate = "delayed"
        heapq.heappush(self.queue, (at, next(self.counter), data))
        if r_dup < imp.duplicate:
            heapq.heappush(
                self.queue, (now + r_dup_delay * imp.reorder_delay, next(self.counter), data)
            )
            fate = "duplicated"
        return fate

    def pop_due(self, now: float) -> list[bytes]:
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(heapq.heappop(self.queue)[2])
        return out

    def next_at(self) -> float | None:
        return self.queue[0][0] if self.queue else None


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
        self.c2s = _Link("c2s", server, c2s, random.Random(f"{seed}/c2s"))
        self.s2c = _Link("s2c", client, s2c, random.Random(f"{seed}/s2c"))
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
                    link.dst.receive_datagram(d, now)
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
                self.trace.append(Sent(now, link.name, d, fate))
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
