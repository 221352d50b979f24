"""A seeded, lossy and reordering path on our side of the socket, for the lossy cells.

:class:`Impairment` sits between our :class:`~dtls_ossl.DtlsConnection` and its UDP socket and
treats each direction (what we send, what we receive) alike:

- the first datagram each way is always lost, so both sides' retransmission timers must fire;
- after that each datagram is lost with probability ``loss``;
- a surviving datagram is held back with probability ``reorder`` until the next datagram of
  the same direction has passed it (*reordered*), or for at most ``max_hold`` seconds if none
  comes (*delayed*);
- the first batch of two or more datagrams each way after the first loss (a flight that spans
  datagrams, sent by us at once or read by us at once) passes whole but in reverse order, so
  a lossy cell reorders whenever either side's flights span datagrams (RSA-2048 flights do not
  fit one 1200-byte datagram; OpenSSL retransmits one handshake message per datagram).

Datagrams that start with an application-data record pass untouched: DTLS does not retransmit
them, and a peer may send its first message the moment its handshake completes.

The decisions come from two ``random.Random`` seeded from ``seed``, one per direction, so the
n-th datagram each way meets the same fate from run to run (how many datagrams there are still
depends on timing).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Direction", "Impairment"]

_APPLICATION_DATA = b"\x17"


@dataclass
class Direction:
    """The counters and held datagrams of one direction."""

    name: str
    rng: random.Random
    "Each direction draws from its own generator: its pattern does not depend on the other's."
    seen: int = 0
    dropped: int = 0
    reordered: int = 0
    "Datagrams that were passed by a later one of the same direction."
    delayed: int = 0
    "Datagrams held back that nothing overtook (released after their hold)."
    held: list[tuple[float, bytes]] = field(default_factory=list)
    reversed_a_batch: bool = False

    def summary(self) -> str:
        """E.g. ``out 3/12 lost, 2 reordered, 1 delayed``."""
        return (
            f"{self.name} {self.dropped}/{self.seen} lost, {self.reordered} reordered, "
            f"{self.delayed} delayed"
        )


class Impairment:
    """Seeded loss and reordering of both directions (see the module docstring)."""

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
        self.out = Direction("out", random.Random(seed))
        self.inn = Direction("in", random.Random(seed ^ 0x5BD1E995))
        self.active = True

    def outbound(self, batch: list[bytes], now: float) -> list[bytes]:
        """Return what of ``batch`` (our datagrams, in order) goes on the wire now."""
        return self._pass(self.out, batch, now)

    def inbound(self, batch: list[bytes], now: float) -> list[bytes]:
        """Return what our connection receives now of ``batch`` (what just arrived, in order)."""
        return self._pass(self.inn, batch, now)

    def _pass(self, d: Direction, batch: list[bytes], now: float) -> list[bytes]:
        if not self.active:
            return list(batch)
        if not d.reversed_a_batch and len(batch) >= 2 and d.seen > 0:
            # The first flight that spans datagrams arrives whole, in reverse order.
            d.reversed_a_batch = True
            d.seen += len(batch)
            d.reordered += len(batch) - 1
            return batch[::-1] + self._overtaken(d)
        fresh: list[bytes] = []
        overtaken: list[bytes] = []
        for datagram in batch:
            if datagram[:1] == _APPLICATION_DATA:
                fresh.append(datagram)  # not retransmitted by DTLS: never lost here
                continue
            d.seen += 1
            if d.seen == 1 or d.rng.random() < self.loss:
                d.dropped += 1
                continue
            if d.rng.random() < self.reorder:
                hold = self.max_hold * (0.25 + 0.75 * d.rng.random())
                d.held.append((now + hold, datagram))
                continue
            fresh.append(datagram)
            overtaken += self._overtaken(d)
        return fresh + overtaken

    @staticmethod
    def _overtaken(d: Direction) -> list[bytes]:
        """Whatever was held is now behind what just passed: it follows."""
        d.reordered += len(d.held)
        out = [h for _, h in d.held]
        d.held.clear()
        return out

    def next_release(self) -> float | None:
        """When the earliest held datagram (either way) is due, if any."""
        times = [t for t, _ in self.out.held + self.inn.held]
        return min(times) if times else None

    def due(self, now: float) -> tuple[list[bytes], list[bytes]]:
        """Release the held datagrams whose time has come: (to send, to receive)."""
        return self._due(self.out, now), self._due(self.inn, now)

    @staticmethod
    def _due(d: Direction, now: float) -> list[bytes]:
        ready = [h for t, h in d.held if t <= now]
        d.held = [(t, h) for t, h in d.held if t > now]
        d.delayed += len(ready)
        return ready

    def stop(self) -> tuple[list[bytes], list[bytes]]:
        """Turn the impairment off; return what was still held: (to send, to receive)."""
        self.active = False
        out = [h for _, h in self.out.held]
        inn = [h for _, h in self.inn.held]
        self.out.held.clear()
        self.inn.held.clear()
        return out, inn

    def summary(self) -> str:
        """One line with the seed and both directions' counters."""
        return (
            f"seed {self.seed}, loss {self.loss:.0%}, reorder {self.reorder:.0%}: "
            f"{self.out.summary()}; {self.inn.summary()}"
        )
