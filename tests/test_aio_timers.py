"""DeadlineHeap and HeapTrimmer through their own API, with an injected clock and call_at.

No event loop: a fake ``call_at`` records the one armed handle, and the test fires it.
"""

from __future__ import annotations

from collections.abc import Callable

from dtls_ossl.aio._memory import HeapTrimmer
from dtls_ossl.aio._timers import SLACK, DeadlineHeap, Timed


class Handle:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """A clock and ``call_at``: the test moves the time and fires what is due."""

    def __init__(self) -> None:
        self.now = 100.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.handles.append(handle)
        return handle

    def live(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled]

    def advance(self, to: float) -> None:
        """Move the clock to ``to``, running each armed handle that is due (in time order)."""
        self.now = to
        while True:
            due = sorted((h for h in self.live() if h.when <= to), key=lambda h: h.when)
            if not due:
                return
            due[0].cancelled = True  # a fired handle is spent
            due[0].callback()


class Item(Timed):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


def armed(heap: DeadlineHeap[Item]) -> float | None:
    """Where the timer is armed (a call, so that mypy does not keep a narrowed value)."""
    return heap.armed_at


def make_heap() -> tuple[FakeLoop, DeadlineHeap[Item], list[tuple[str, float]]]:
    loop = FakeLoop()
    fired: list[tuple[str, float]] = []
    heap: DeadlineHeap[Item] = DeadlineHeap(
        lambda item, now: fired.append((item.name, now)), clock=loop.time, call_at=loop.call_at
    )
    return loop, heap, fired


def test_one_handle_armed_at_the_earliest_deadline() -> None:
    loop, heap, fired = make_heap()
    a, b, c = Item("a"), Item("b"), Item("c")
    assert armed(heap) is None
    heap.schedule(b, 105.0)
    heap.schedule(a, 103.0)
    heap.schedule(c, 109.0)
    assert armed(heap) == 103.0
    assert [h.when for h in loop.live()] == [103.0]
    assert len(loop.handles) == 2  # 105 then 103: a later deadline never re-armed it
    loop.advance(104.0)
    assert fired == [("a", 104.0)]
    assert heap.wakeups == 1 and armed(heap) == 105.0
    loop.advance(200.0)
    assert fired == [("a", 104.0), ("b", 200.0), ("c", 200.0)]
    assert heap.wakeups == 2 and armed(heap) is None and loop.live() == []


def test_moving_a_later_deadline_costs_no_timer_call() -> None:
    loop, heap, fired = make_heap()
    a, b = Item("a"), Item("b")
    heap.schedule(a, 101.0)
    heap.schedule(b, 150.0)
    calls = len(loop.handles)
    for t in (140.0, 130.0, 120.0, 160.0):
        heap.schedule(b, t)
    assert len(loop.handles) == calls and armed(heap) == 101.0
    heap.schedule(b, 160.0)  # unchanged: nothing at all
    loop.advance(170.0)
    assert fired == [("a", 170.0), ("b", 170.0)]  # b once, at its last deadline


def test_deadlines_within_slack_share_one_wakeup_and_fire_in_order() -> None:
    loop, heap, fired = make_heap()
    items = [Item(str(i)) for i in range(5)]
    for i, item in enumerate(reversed(items)):
        heap.schedule(item, 110.0 + (4 - i) * SLACK / 10)
    loop.advance(110.0)
    assert [name for name, _ in fired] == ["0", "1", "2", "3", "4"]
    # The early one gets now; those due within the slack get their own deadline.
    assert fired[0][1] == 110.0 and fired[4][1] == 110.0 + 4 * SLACK / 10
    assert heap.wakeups == 1


def test_cancel_moves_the_timer_and_a_fire_callback_may_reschedule() -> None:
    loop = FakeLoop()
    fired: list[str] = []
    again = Item("again")

    def fire(item: Item, now: float) -> None:
        fired.append(item.name)
        if item is again and len(fired) < 3:
            heap.schedule(item, now + 1.0)  # rescheduled from inside the batch

    heap: DeadlineHeap[Item] = DeadlineHeap(fire, clock=loop.time, call_at=loop.call_at)
    first, second = Item("first"), Item("second")
    heap.schedule(first, 101.0)
    heap.schedule(second, 102.0)
    heap.cancel(first)
    assert armed(heap) == 102.0
    heap.cancel(second)
    assert armed(heap) is None and loop.live() == []
    heap.cancel(second)  # not scheduled: nothing
    heap.schedule(again, 101.0)
    loop.advance(101.0)
    assert armed(heap) == 102.0 and len(loop.live()) == 1  # re-armed once, after the batch
    loop.advance(102.0)
    loop.advance(103.0)
    assert fired == ["again", "again", "again"] and heap.wakeups == 3
    assert armed(heap) is None


def test_stale_entries_are_compacted() -> None:
    _, heap, fired = make_heap()
    a, b = Item("a"), Item("b")
    heap.schedule(a, 101.0)
    longest = 0
    for i in range(10_000):
        heap.schedule(b, 200.0 + i / 1000)  # each move leaves a stale entry behind
        longest = max(longest, len(heap))
    assert longest < 1100 and len(heap) < 1100
    assert fired == []


def test_clear_disarms_and_forgets_every_deadline() -> None:
    loop, heap, fired = make_heap()
    a = Item("a")
    heap.schedule(a, 101.0)
    heap.clear()
    assert armed(heap) is None and loop.live() == [] and len(heap) == 0
    loop.advance(150.0)
    assert fired == []
    heap.schedule(a, 160.0)  # usable again; the item was unscheduled
    assert armed(heap) == 160.0


def test_heap_trimmer_releases_at_most_once_per_interval_and_when_the_last_ends() -> None:
    now = [0.0]
    released: list[float] = []
    trimmer = HeapTrimmer(lambda: now[0], release=lambda: released.append(now[0]), interval=1.0)
    trimmer.peer_ended(failed=False, in_progress=3)  # nothing failed: nothing to give back
    assert released == []
    trimmer.peer_ended(failed=True, in_progress=3)
    assert released == [0.0]
    now[0] = 0.5
    trimmer.peer_ended(failed=True, in_progress=2)  # within the interval: later
    assert released == [0.0]
    now[0] = 0.7
    trimmer.peer_ended(failed=False, in_progress=1)  # a pending release, still too soon
    assert released == [0.0]
    now[0] = 0.8
    trimmer.peer_ended(failed=True, in_progress=0)  # the last one ended: now
    assert released == [0.0, 0.8] and trimmer.releases == 2
    now[0] = 5.0
    trimmer.peer_ended(failed=False, in_progress=0)  # nothing pending
    assert trimmer.releases == 2
