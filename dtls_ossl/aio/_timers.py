"""One timer for many deadlines: :class:`DeadlineHeap`.

Theory of operation
===================

Every item (a stream, for the endpoint) has at most one *live* entry ``(deadline, seq, item)``
in a binary heap; the item's ``_due`` slot holds the deadline of that entry. Moving a deadline
pushes a new entry and leaves the old one behind, stale: an entry whose deadline differs from
its item's ``_due`` is skipped when it reaches the top (lazy deletion), and the heap is
compacted when more than half of it is stale. One ``call_at`` handle is armed at the earliest
live deadline and replaced only when that deadline changes, so moving a later deadline costs
a heap push and no timer call.

When the handle fires, every live entry due within :data:`SLACK` of now is popped and handed
to ``fire(item, when)`` (``when`` is the entry's deadline, or now if that is later); the
callback may schedule again (the handle is re-armed once, after the whole batch).

The clock and ``call_at`` are injected: the endpoint passes its loop's, a test passes a fake.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["SLACK", "DeadlineHeap", "Timed"]

SLACK = 0.001
"Entries due within this much of now are handled in the same wake-up."
_COMPACT_MIN = 1024

_heappush = heapq.heappush
_heappop = heapq.heappop


class Timed:
    """Base of whatever a :class:`DeadlineHeap` schedules: one slot, owned by the heap.

    ``_due`` is the deadline of the item's live entry (None: not scheduled). Subclasses may
    read it (a cheap "is an early enough wake-up already set?" test); only the heap writes it.
    """

    __slots__ = ("_due",)

    def __init__(self) -> None:
        self._due: float | None = None


class _Handle(Protocol):
    def cancel(self) -> None: ...


T = TypeVar("T", bound=Timed)


class DeadlineHeap(Generic[T]):
    """Deadlines of many items behind one armed timer (see the module docstring).

    :param fire: called with ``(item, now)`` for each item whose deadline has come.
    :param clock: the current time, on the same scale as ``call_at``.
    :param call_at: ``loop.call_at``: arms ``callback`` at an absolute time, returns a handle.
    """

    __slots__ = (
        "_armed",
        "_at",
        "_call_at",
        "_clock",
        "_fire",
        "_heap",
        "_in_fire",
        "_seq",
        "_stale",
        "wakeups",
    )

    def __init__(
        self,
        fire: Callable[[T, float], None],
        *,
        clock: Callable[[], float],
        call_at: Callable[[float, Callable[[], None]], _Handle],
    ) -> None:
        """Make an empty heap; nothing is armed until the first :meth:`schedule`."""
        self._fire = fire
        self._clock = clock
        self._call_at = call_at
        self._heap: list[tuple[float, int, T]] = []
        self._seq = itertools.count()
        self._stale = 0
        self._armed: _Handle | None = None
        self._at: float | None = None
        self._in_fire = False
        self.wakeups = 0
        "How many times the armed timer fired."

    @property
    def armed_at(self) -> float | None:
        """The time the one timer is armed at (the earliest live deadline), or None."""
        return self._at

    def __len__(self) -> int:
        """Entries held, stale ones included (what compaction bounds)."""
        return len(self._heap)

    def schedule(self, item: T, when: float) -> None:
        """Set ``item``'s deadline to ``when`` (earlier or later than before)."""
        old = item._due
        if old == when:
            return
        if old is not None:
            self._stale += 1
        item._due = when
        _heappush(self._heap, (when, next(self._seq), item))
        at = self._at
        if at is None or when < at or old == at:
            self._rearm()
        if self._stale > _COMPACT_MIN and self._stale * 2 > len(self._heap):
            self._compact()

    def cancel(self, item: T) -> None:
        """Drop ``item``'s deadline; moves the timer if it was armed for it."""
        old = item._due
        if old is None:
            return
        item._due = None
        self._stale += 1
        if old == self._at:
            self._rearm()

    def clear(self) -> None:
        """Drop every entry and disarm the timer."""
        self._disarm()
        for _, _, item in self._heap:
            item._due = None
        self._heap.clear()
        self._stale = 0

    def _disarm(self) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed = None
        self._at = None

    def _compact(self) -> None:
        heap = [e for e in self._heap if e[2]._due == e[0]]
        heapq.heapify(heap)
        self._heap = heap
        self._stale = 0

    def _rearm(self) -> None:
        """Arm at the earliest live deadline, dropping stale entries on top."""
        if self._in_fire:
            return  # _on_timer re-arms once it has handled everything due
        heap = self._heap
        while heap and heap[0][2]._due != heap[0][0]:
            _heappop(heap)
            if self._stale:
                self._stale -= 1
        if not heap:
            self._disarm()
        elif heap[0][0] != self._at:
            when = heap[0][0]
            if self._armed is not None:
                self._armed.cancel()
            self._armed = self._call_at(when, self._on_timer)
            self._at = when

    def _on_timer(self) -> None:
        self._armed = None
        self._at = None
        self.wakeups += 1
        self._in_fire = True
        try:
            now = self._clock()
            heap = self._heap
            fire = self._fire
            limit = now + SLACK
            while heap and heap[0][0] <= limit:
                when, _, item = _heappop(heap)
                if item._due != when:
                    if self._stale:
                        self._stale -= 1
                    continue
                item._due = None
                fire(item, when if when > now else now)
        finally:
            self._in_fire = False
        self._rearm()
