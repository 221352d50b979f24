"""The benchmarks' long-lived workers speak their serve protocol, and a tiny paired run ends.

benchmarks/handshake.py and benchmarks/records.py time every implementation as a ``serve``
worker (benchmarks/_common.py, ``run_paired``): setup once, ``ready``, then ``handshake N`` or
``records N`` answered by one line of seconds (wall, then thread CPU), ``report`` answered by
``key=value`` lines and ``end``. Each worker is driven here through the benchmark's own
``Worker`` class; then both benchmarks run end to end with tiny ``--quick`` settings and must
print their target lines (in the shape other tools parse) and write ``--json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
ROOT = BENCH.parent
RUN_LIMIT = 60  # seconds for one tiny benchmark run (the brief's bound)
TARGET_LINE = re.compile(r"\[(PASS|FAIL|INCONCLUSIVE)\] (.*?): ([0-9.]+)")

NO_C = shutil.which("gcc") is None or shutil.which("pkg-config") is None
needs_c = pytest.mark.skipif(NO_C, reason="gcc or pkg-config not found: no C baseline, no ratio")


def _load_common() -> Any:
    # benchmarks/ is a directory of scripts, not a package: load _common as they do.
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("_common", BENCH / "_common.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["_common"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def common() -> Any:
    return _load_common()


@pytest.fixture(scope="module")
def impls(common: Any) -> dict[str, Any]:
    """Every implementation the benchmarks would run, with records' MTU (1500) where it matters."""
    return {impl.name: impl for impl in common.discover(quiet=True)}


def _serve_args(impl_name: str, common: Any) -> list[list[str]]:
    args = [["handshake"], ["records", "1200"]]
    if impl_name == common.DTLS_OSSL:
        args.append(["records-batch", "1200", "64"])
    return args


def _drive(common: Any, impl: Any, serve: list[str]) -> None:
    argv = [*impl.argv, "serve", *serve]
    if serve[0].startswith("records"):
        argv = [*common.with_mtu(impl, 1500).argv, "serve", *serve]
    unit = serve[0].split("-")[0]
    worker = common.Worker(argv, unit)
    try:
        for n in (1, 3):
            wall, cpu = worker.run(n)
            assert 0 < wall < 30 and 0 < cpu < 30
        report = worker.report()
        assert report["client.version"] == "DTLSv1.2"
        assert report["server.cipher"].startswith("ECDHE-ECDSA")
        assert "openssl_version" in report
        wall, cpu = worker.run(2)  # still serving after a report
        assert wall > 0
    finally:
        worker.close()
    assert worker.proc.returncode == 0  # "quit" ends it cleanly


@pytest.mark.parametrize(
    "name",
    ["C", "dtls_ossl", "pyOpenSSL (this python)", "pyOpenSSL (Debian)"],
)
def test_worker_speaks_the_serve_protocol(common: Any, impls: dict[str, Any], name: str) -> None:
    impl = impls[name]
    if impl.argv is None:
        if name == common.C and not NO_C:
            pytest.fail(f"C baseline unavailable with gcc present: {impl.unavailable}")
        if name == common.DTLS_OSSL:
            pytest.fail(f"dtls_ossl worker unavailable: {impl.unavailable}")
        pytest.skip(f"{name} unavailable here: {impl.unavailable}")
    for serve in _serve_args(name, common):
        _drive(common, impl, serve)


def test_worker_failure_is_one_line(common: Any, impls: dict[str, Any]) -> None:
    impl = impls[common.DTLS_OSSL]
    worker = common.Worker([*impl.argv, "serve", "handshake"], "records")  # wrong unit
    try:
        with pytest.raises(common.BenchError, match="unknown command: records 1"):
            worker.run(1)
    finally:
        worker.close()


def _run_benchmark(script: str, *args: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    out = tmp_path / f"{script}.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / script),
            "--quick",
            "--seconds",
            "0.5",
            "--chunk-ms",
            "5",
            "--no-callgrind",
            "--json",
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT,
        cwd=ROOT,
        env=env,
    )
    assert time.monotonic() - t0 < RUN_LIMIT
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout, json.loads(out.read_text())


def _check_rows(doc: dict[str, Any]) -> None:
    rows = doc["tables"][0]["rows"]
    for row in rows:
        if row["implementation"] in ("C", "dtls_ossl"):
            assert row["error"] is None
        if row["error"] is None:
            assert row["median"] > 0
            assert row["chunk"] >= 1
            assert row["clock"] == "cpu"
    assert doc["settings"]["method"] == "paired"


@needs_c
def test_records_quick_run_prints_its_targets(tmp_path: Path) -> None:
    stdout, doc = _run_benchmark("records.py", tmp_path=tmp_path)
    targets = [m.group(2) for m in TARGET_LINE.finditer(stdout)]
    assert "per-datagram >= 0.70 x C" in targets
    assert "batch x64 >= 0.85 x C" in targets
    assert "per-pair ratios" in stdout
    _check_rows(doc)
    judged = {t["target"]: t for t in doc["targets"]}
    per_dgram = judged["per-datagram >= 0.70 x C"]
    assert per_dgram["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
    assert (per_dgram["verdict"] == "INCONCLUSIVE") == per_dgram["inconclusive"]
    assert per_dgram["q1"] <= per_dgram["ratio"] <= per_dgram["q3"]
    assert per_dgram["ci_low"] <= per_dgram["ratio"] <= per_dgram["ci_high"]
    assert per_dgram["inconclusive"] == (
        per_dgram["ci_low"] < per_dgram["min_ratio"] <= per_dgram["ci_high"]
    )
    assert per_dgram["n"] >= 2
    assert doc["like_for_like"]["refusal"] == ""


@needs_c
def test_handshake_quick_run_prints_its_target(tmp_path: Path) -> None:
    stdout, doc = _run_benchmark(
        "handshake.py", "--skip-memory", "--skip-import", tmp_path=tmp_path
    )
    targets = [m.group(2) for m in TARGET_LINE.finditer(stdout)]
    assert targets == ["handshakes/s >= 0.92 x C"]
    _check_rows(doc)
    (hs,) = doc["targets"]
    assert hs["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
    assert (hs["verdict"] == "INCONCLUSIVE") == hs["inconclusive"]
    assert hs["n"] >= 2 and hs["method"] == "per-pair"
    assert "other_clock" in hs
