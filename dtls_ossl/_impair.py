"""One seeded impairment model: loss, reordering and duplication of datagrams, per direction.

Theory of operation. A :class:`Link` is one direction of a path (client to server, or what a
harness sends). For every datagram it draws exactly five numbers from its own
``random.Random`` seeded with ``f"{seed}/{name}"``: whether the datagram is lost, held back,
duplicated, and the two delays. Drawing the same count whatever the outcome keeps the n-th
datagram's fate fixed for a seed, whatever the options, the timing and the other direction.
A link can also queue what it lets through, by delivery time, for drivers that deliver from
the link itself (``push`` / ``pop_due`` / ``next_at``).

Users: the demo (``dtls-ossl demo``) asks a link for each datagram's :class:`Fate` and
delivers through its own sockets; the tests' two-connection channel (``tests/impair.py``)
delivers from the links' queues; the conformance harness's lossy cells wrap two links in a
:class:`LossyPath`, which adds the cell's forcing rules (see its docstring). The delays are
real seconds: OpenSSL's retransmission timer runs on the wall clock.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass

__all__ = ["Fate", "Impairment", "Link", "LossyPath"]

_APPLICATION_DATA = b"\x17"


@dataclass(frozen=True)
class Impairment:
    """What happens to the datagrams of one direction. Probabilities are per datagram."""

    loss: float = 0.0
    "Probability that a datagram is dropped."
    duplicate: float = 0.0
    "Probability that a delivered datagram is delivered a second time."
    reorder: float = 0.0
    "Probability that a datagram is held back by ``delay`` (later ones overtake it)."
    delay: tuple[float, float] = (0.0, 0.02)
    "Range, in seconds, of the hold of a held-back datagram."
    duplicate_delay: tuple[float, float] = (0.0, 0.02)
    "Range, in seconds, of when a duplicate arrives after the original is sent."

    def __post_init__(self) -> None:
        """Refuse probabilities outside 0..1 and empty or negative delay ranges."""
        for name in ("loss", "duplicate", "reorder"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}: probability {p!r} is outside 0..1")
        for name in ("delay", "duplicate_delay"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{name}: range {(lo, hi)!r} is not 0 <= low <= high")


@dataclass(frozen=True)
class Fate:
    """What a link does with one datagram."""

    dropped: bool
    delay: float
    "0 for an immediate delivery; > 0 when held back."
    duplicate_delay: float | None
    "When a second copy is delivered, relative to now; None for no duplicate."

    @property
    def marks(self) -> list[str]:
        """Upper-case labels for a timeline: ``DROPPED``, ``REORDERED``, ``DUPLICATED``."""
        if self.dropped:
            return ["DROPPED"]
        out = []
        if self.delay:
            out.append("REORDERED")
        if self.duplicate_delay is not None:
            out.append("DUPLICATED")
        return out

    @property
    def outcome(self) -> str:
        """One word for a trace: ``dropped``, ``duplicated``, ``delayed`` or ``delivered``."""
        if self.dropped:
            return "dropped"
        if self.duplicate_delay is not None:
            return "duplicated"
        return "delayed" if self.delay else "delivered"


class Link:
    """One direction's seeded fates, its delivery queue and its counters."""

    def __init__(self, impairment: Impairment, seed: int, name: str) -> None:
        """Start a direction named ``name`` (part of the seed: each direction differs)."""
        self.impairment = impairment
        "May be replaced at any time; the random stream goes on."
        self.name = name
        self._rng = random.Random(f"{seed}/{name}")
        self._queue: list[tuple[float, int, bytes]] = []
        self._order = itertools.count()
        self.seen = 0
        "Datagrams given a fate."
        self.dropped = 0
        self.reordered = 0
        "Held datagrams that a later one overtook (counted by LossyPath)."
        self.delayed = 0
        "Held datagrams that nothing overtook, released after their hold (LossyPath)."

    def fate(self) -> Fate:
        """Decide the next datagram's fate (five draws, whatever the outcome)."""
        imp = self.impairment
        rng = self._rng
        r_loss, r_reorder, r_dup, r_delay, r_dup_delay = (rng.random() for _ in range(5))
        self.seen += 1
        if r_loss < imp.loss:
            self.dropped += 1
            return Fate(True, 0.0, None)
        delay = 0.0
        if r_reorder < imp.reorder:
            lo, hi = imp.delay
            delay = lo + r_delay * (hi - lo)
        dup = None
        if r_dup < imp.duplicate:
            lo, hi = imp.duplicate_delay
            dup = lo + r_dup_delay * (hi - lo)
        return Fate(False, delay, dup)

    def push(self, datagram: bytes, now: float) -> Fate:
        """Decide ``datagram``'s fate and queue its deliveries; return the fate."""
        fate = self.fate()
        if not fate.dropped:
            self.schedule(datagram, now + fate.delay)
            if fate.duplicate_delay is not None:
                self.schedule(datagram, now + fate.duplicate_delay)
        return fate

    def schedule(self, datagram: bytes, at: float) -> None:
        """Queue ``datagram`` for delivery at ``at`` (ties leave in the order queued)."""
        heapq.heappush(self._queue, (at, next(self._order), datagram))

    def pop_due(self, now: float) -> list[bytes]:
        """Take the queued datagrams whose delivery time has come, in delivery order."""
        out = []
        while self._queue and self._queue[0][0] <= now:
            out.append(heapq.heappop(self._queue)[2])
        return out

    def take_all(self) -> list[bytes]:
        """Take everything queued, in delivery order."""
        out = [d for _, _, d in sorted(self._queue)]
        self._queue.clear()
        return out

    def next_at(self) -> float | None:
        """When the earliest queued datagram is due, if any."""
        return self._queue[0][0] if self._queue else None

    def summary(self) -> str:
        """E.g. ``out 3/12 lost, 2 reordered, 1 delayed``."""
        return (
            f"{self.name} {self.dropped}/{self.seen} lost, {self.reordered} reordered, "
            f"{self.delayed} delayed"
        )


class LossyPath:
    """Seeded loss and reordering of both directions of a conformance lossy cell.

    It sits between our connection and its UDP socket; each direction (``out``: what we send,
    ``inn``: what we receive) is a :class:`Link` whose fates it follows, with the cell's rules
    on top so that every lossy cell really exercises retransmission and reordering:

    - the first datagram each way is always lost, so both sides' retransmission timers fire;
    - a held datagram (probability ``reorder``, for ``max_hold`` x 0.25..1) leaves right after
      the next datagram of its direction that passes (*reordered*), or when its hold ends if
      none comes (*delayed*);
    - the first batch of two or more datagrams each way after the first loss (a flight that
      spans datagrams) passes whole but in reverse order;
    - datagrams that start with an application-data record pass untouched: DTLS does not
      retransmit them, and a peer may send its first message the moment its handshake
      completes.
    """

    def __init__(
        self,
        seed: int,
        *,
        loss: float = 0.25,
        reorder: float = 0.3,
        max_hold: float = 0.08,
    ) -> None:
        """Start with the given probabilities; ``max_hold`` bounds how long a datagram waits."""
        if not (0.0 <= loss < 1.0 and 0.0 <= reorder < 1.0 and max_hold > 0):
            raise ValueError("loss and reorder must be in [0, 1), max_hold positive")
        self.seed = seed
        self.loss = loss
        self.reorder = reorder
        self.max_hold = max_hold
        imp = Impairment(loss=loss, reorder=reorder, delay=(0.25 * max_hold, max_hold))
        self.out = Link(imp, seed, "out")
        self.inn = Link(imp, seed, "in")
        self.active = True
        self._reversed: set[str] = set()

    def outbound(self, batch: list[bytes], now: float) -> list[bytes]:
        """Return what of ``batch`` (our datagrams, in order) goes on the wire now."""
        return self._pass(self.out, batch, now)

    def inbound(self, batch: list[bytes], now: float) -> list[bytes]:
        """Return what our connection receives now of ``batch`` (what just arrived, in order)."""
        return self._pass(self.inn, batch, now)

    def _pass(self, link: Link, batch: list[bytes], now: float) -> list[bytes]:
        if not self.active:
            return list(batch)
        if link.name not in self._reversed and len(batch) >= 2 and link.seen > 0:
            self._reversed.add(link.name)
            link.seen += len(batch)
            link.reordered += len(batch) - 1
            return batch[::-1] + self._overtaken(link)
        fresh: list[bytes] = []
        overtaken: list[bytes] = []
        for datagram in batch:
            if datagram[:1] == _APPLICATION_DATA:
                fresh.append(datagram)
                continue
            fate = link.fate()
            if fate.dropped:
                continue
            if link.seen == 1:
                link.dropped += 1  # the first datagram each way: always lost
                continue
            if fate.delay:
                link.schedule(datagram, now + fate.delay)
                continue
            fresh.append(datagram)
            overtaken += self._overtaken(link)
        return fresh + overtaken

    @staticmethod
    def _overtaken(link: Link) -> list[bytes]:
        """Whatever was held is now behind what just passed: it follows."""
        out = link.take_all()
        link.reordered += len(out)
        return out

    def next_release(self) -> float | None:
        """When the earliest held datagram (either way) is due, if any."""
        times = [t for t in (self.out.next_at(), self.inn.next_at()) if t is not None]
        return min(times) if times else None

    def due(self, now: float) -> tuple[list[bytes], list[bytes]]:
        """Release the held datagrams whose time has come: (to send, to receive)."""
        out, inn = self.out.pop_due(now), self.inn.pop_due(now)
        self.out.delayed += len(out)
        self.inn.delayed += len(inn)
        return out, inn

    def stop(self) -> tuple[list[bytes], list[bytes]]:
        """Turn the impairment off; return what was still held: (to send, to receive)."""
        self.active = False
        return self.out.take_all(), self.inn.take_all()

    def summary(self) -> str:
        """One line with the seed and both directions' counters."""
        return (
            f"seed {self.seed}, loss {self.loss:.0%}, reorder {self.reorder:.0%}: "
            f"{self.out.summary()}; {self.inn.summary()}"
        )
