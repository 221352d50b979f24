"""The one impairment model (dtls_ossl._impair.Link): seeded fates, the delivery queue."""

from __future__ import annotations

import pytest

from dtls_ossl._impair import Fate, Impairment, Link


def fates(imp: Impairment, seed: int, name: str, n: int = 60) -> list[Fate]:
    link = Link(imp, seed, name)
    return [link.fate() for _ in range(n)]


def test_same_seed_and_direction_same_fates() -> None:
    imp = Impairment(loss=0.3, duplicate=0.3, reorder=0.3)
    assert fates(imp, 42, "c2s") == fates(imp, 42, "c2s")
    assert fates(imp, 42, "c2s") != fates(imp, 42, "s2c")
    assert fates(imp, 42, "c2s") != fates(imp, 43, "c2s")


def test_nth_fate_does_not_depend_on_the_other_options() -> None:
    # Five draws per datagram whatever the outcome: a datagram lost under one setting is
    # lost under another with the same loss, and the kept ones' reorder decisions line up.
    lossy = fates(Impairment(loss=0.3), 7, "out")
    both = fates(Impairment(loss=0.3, reorder=0.5, delay=(0.01, 0.03)), 7, "out")
    assert [f.dropped for f in lossy] == [f.dropped for f in both]
    assert any(f.delay for f in both) and all(0.01 <= f.delay <= 0.03 for f in both if f.delay)
    assert all(f.delay == 0.0 and f.duplicate_delay is None for f in lossy)


def test_counters_and_outcomes() -> None:
    link = Link(Impairment(loss=1.0), 1, "x")
    assert [link.fate().outcome for _ in range(3)] == ["dropped"] * 3
    assert (link.seen, link.dropped) == (3, 3)
    assert Fate(False, 0.0, None).outcome == "delivered"
    assert Fate(False, 0.01, None).outcome == "delayed"
    assert Fate(False, 0.01, 0.0).outcome == "duplicated"
    assert Fate(False, 0.01, 0.0).marks == ["REORDERED", "DUPLICATED"]


def test_queue_delivers_by_time_with_duplicates() -> None:
    link = Link(Impairment(duplicate=1.0, duplicate_delay=(0.5, 0.5)), 3, "c2s")
    assert link.push(b"a", 10.0) == Fate(False, 0.0, 0.5)
    link.push(b"b", 10.1)
    assert link.next_at() == 10.0
    assert link.pop_due(10.1) == [b"a", b"b"]
    assert link.pop_due(10.55) == [b"a"]
    assert link.take_all() == [b"b"] and link.next_at() is None


@pytest.mark.parametrize(
    "kwargs",
    [{"loss": 1.5}, {"reorder": -0.1}, {"delay": (0.2, 0.1)}, {"duplicate_delay": (-1.0, 0.0)}],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Impairment(**kwargs)  # type: ignore[arg-type]
