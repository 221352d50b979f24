"""The benchmarks' confidence interval of a median ratio (benchmarks/_common.py, median_ci).

The verdict of a ratio target says "inconclusive" when this interval straddles the target, so it
must contain the median, narrow as more pairs are run, widen when generations of workers
disagree (their pairs are not independent), and give the same answer for the same ratios.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest
from test_bench_serve import _load_common

COMMON: Any = _load_common()


def _ratios(
    rng: random.Random, per_group: int, offsets: list[float]
) -> tuple[list[float], list[int]]:
    values: list[float] = []
    groups: list[int] = []
    for gen, offset in enumerate(offsets):
        for _ in range(per_group):
            values.append(0.92 + offset + rng.gauss(0, 0.04))
            groups.append(gen)
    return values, groups


def test_interval_contains_the_median_and_is_repeatable() -> None:
    values, groups = _ratios(random.Random(1), 50, [0.0] * 6)
    low, high = COMMON.median_ci(values, groups)
    assert low <= statistics.median(values) <= high
    assert (low, high) == COMMON.median_ci(values, groups)


def test_identical_ratios_give_a_point() -> None:
    assert COMMON.median_ci([0.93] * 12, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]) == (0.93, 0.93)


def test_more_pairs_narrow_it() -> None:
    few = COMMON.median_ci(*_ratios(random.Random(2), 10, [0.0] * 6))
    many = COMMON.median_ci(*_ratios(random.Random(2), 200, [0.0] * 6))
    assert many[1] - many[0] < (few[1] - few[0]) / 2


def test_disagreeing_generations_widen_it() -> None:
    values, groups = _ratios(random.Random(3), 100, [-0.03, 0.03, -0.03, 0.03, -0.03, 0.03])
    by_generation = COMMON.median_ci(values, groups)
    as_if_independent = COMMON.median_ci(values, list(range(len(values))))
    width = by_generation[1] - by_generation[0]
    assert width > 1.5 * (as_if_independent[1] - as_if_independent[0])


def test_no_ratios_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        COMMON.median_ci([], [])
