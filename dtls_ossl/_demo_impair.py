"""The demo's impairment: loss, reordering and duplication, one seeded stream per direction."""

from __future__ import annotations

import random
from dataclasses import dataclass

_REORDER_DELAY = (0.01, 0.03)  # seconds a reordered datagram is held back: later ones overtake
_DUPLICATE_DELAY = (0.0, 0.02)  # seconds after the original that a duplicate is delivered


@dataclass(frozen=True)
class _Fate:
    dropped: bool
    delay: float
    "0 for an immediate delivery; > 0 when reordered."
    duplicate_delay: float | None
    "When a second copy is delivered, relative to now; None for no duplicate."

    @property
    def marks(self) -> list[str]:
        if self.dropped:
            return ["DROPPED"]
        out = []
        if self.delay:
            out.append("REORDERED")
        if self.duplicate_delay is not None:
            out.append("DUPLICATED")
        return out


class _Impairment:
    """One direction's loss/reorder/duplicate decisions, from its own seeded random stream."""

    def __init__(
        self, loss: float, reorder: float, duplicate: float, seed: int, direction: str
    ) -> None:
        self._loss, self._reorder, self._duplicate = loss, reorder, duplicate
        self._rng = random.Random(f"{seed}/{direction}")

    def fate(self) -> _Fate:
        rng = self._rng
        # Always draw the same count per datagram, so the n-th datagram of a direction meets
        # the same fate for a seed whatever the other options and timings are.
        r_loss, r_reorder, r_dup, r_delay, r_dup_delay = (rng.random() for _ in range(5))
        if r_loss < self._loss:
            return _Fate(True, 0.0, None)
        delay = 0.0
        if r_reorder < self._reorder:
            lo, hi = _REORDER_DELAY
            delay = lo + r_delay * (hi - lo)
        dup = None
        if r_dup < self._duplicate:
            lo, hi = _DUPLICATE_DELAY
            dup = lo + r_dup_delay * (hi - lo)
        return _Fate(False, delay, dup)
