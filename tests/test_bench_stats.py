"""The benchmarks' confidence interval of a median ratio (benchmarks/_common.py, median_ci).

A ratio target is INCONCLUSIVE (not PASS or FAIL) when this interval straddles the target, so it
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


def _judge(centre: float, capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, Any]]:
    """ratio_check on 6 generations of 40 pairs around ``centre``: its line and its record."""
    values, groups = _ratios(random.Random(4), 40, [centre - 0.92] * 6)
    impl = COMMON.Impl("x", None)
    a = COMMON.Job("dtls_ossl", impl, [], "k", values=[1.0])
    b = COMMON.Job("C", impl, [], "k", values=[1.0])
    a.ratios["C"], a.ratio_gens["C"] = values, groups
    del COMMON.RESULTS.targets[:]
    COMMON.ratio_check("x >= 0.92 x C", a, b, 0.92)
    (record,) = COMMON.RESULTS.targets
    return capsys.readouterr().out, record


@pytest.mark.parametrize(
    ("centre", "verdict"), [(0.95, "PASS"), (0.921, "INCONCLUSIVE"), (0.89, "FAIL")]
)
def test_verdict_is_pass_or_fail_only_when_the_interval_is_on_one_side(
    centre: float, verdict: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line, record = _judge(centre, capsys)
    assert line.lstrip().startswith(f"[{verdict}] x >= 0.92 x C: ")
    assert record["verdict"] == verdict
    assert record["inconclusive"] == (verdict == "INCONCLUSIVE")
    if verdict == "PASS":
        assert record["ci_low"] >= 0.92
    elif verdict == "FAIL":
        assert record["ci_high"] < 0.92
    else:
        assert record["ci_low"] < 0.92 <= record["ci_high"]
