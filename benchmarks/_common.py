"""Shared machinery for benchmarks/handshake.py and benchmarks/records.py.

Every implementation runs in its own subprocess and prints ``key=value`` lines:

* the C baseline, benchmarks/c/dtls_baseline.c, compiled here against the system OpenSSL
  (pkg-config libssl libcrypto) into benchmarks/.build/, cached by a hash of source and flags;
* dtls_ossl, benchmarks/_dtls_ossl_peer.py under this interpreter;
* pyOpenSSL under this interpreter (normally the PyPI wheel, whose cryptography bundles its own,
  newer OpenSSL) and under /usr/bin/python3 (Debian's python3-openssl on the system OpenSSL),
  both through benchmarks/_pyopenssl_peer.py.

Each round runs every implementation once, in an order rotated from round to round; the figure
reported is the median over rounds. Timings are taken inside each process, after a warm-up, so
interpreter start-up is not part of any rate.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / ".build"
C_SOURCE = BENCH_DIR / "c" / "dtls_baseline.c"
SYSTEM_PYTHON = "/usr/bin/python3"
EXIT_NOT_BUILT = 3  # _dtls_ossl_peer.py: dtls_ossl cannot be imported

C = "C"
DTLS_OSSL = "dtls_ossl"
PYOPENSSL_HERE = "pyOpenSSL (this python)"
PYOPENSSL_DEBIAN = "pyOpenSSL (Debian)"


class BenchError(Exception):
    """A one-line reason why an implementation produced no number."""


# --------------------------------------------------------------------------- C baseline


def build_c_baseline() -> Path:
    """Compile the C baseline (cached by source and flags); raise BenchError in one line."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("C baseline unavailable: gcc not found (apt-get install gcc)")
    if shutil.which("pkg-config") is None:
        raise BenchError(
            "C baseline unavailable: pkg-config not found (apt-get install pkg-config)"
        )
    flags: list[list[str]] = []
    for what in ("--cflags", "--libs"):
        proc = subprocess.run(
            ["pkg-config", what, "libssl", "libcrypto"], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise BenchError(
                "C baseline unavailable: OpenSSL headers not found by pkg-config "
                "(apt-get install libssl-dev)"
            )
        flags.append(proc.stdout.split())
    cflags, libs = flags
    source = C_SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(cflags + libs).encode()).hexdigest()[:16]
    exe = BUILD_DIR / f"dtls_baseline-{digest}"
    if exe.exists():
        return exe
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = exe.with_suffix(".tmp")
    cmd = [gcc, "-O2", "-Wall", *cflags, str(C_SOURCE), "-o", str(tmp), *libs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines()
        first = lines[0].strip() if lines else f"exit status {proc.returncode}"
        raise BenchError(f"C baseline unavailable: gcc failed: {first}")
    tmp.replace(exe)
    return exe


# --------------------------------------------------------------------------- subprocesses


def run_kv(argv: Sequence[str], timeout: float = 900) -> dict[str, str]:
    """Run a benchmark process and parse its ``key=value`` output; BenchError on failure."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout:.0f} s") from exc
    except OSError as exc:
        raise BenchError(str(exc)) from exc
    out: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    if proc.returncode != 0:
        if "error" in out:
            raise BenchError(out["error"])
        lines = proc.stderr.strip().splitlines()
        raise BenchError(lines[-1] if lines else f"exit status {proc.returncode}")
    return out


@dataclass
class Impl:
    """One implementation: how to start it, or why it is unavailable."""

    name: str
    argv: list[str] | None  # command prefix; the mode arguments follow
    detail: str = ""  # versions, for the table
    openssl: str = ""
    unavailable: str = ""


def discover(quiet: bool = False) -> list[Impl]:
    """Find the C baseline, dtls_ossl and both pyOpenSSLs, each with its OpenSSL version."""
    impls: list[Impl] = []
    try:
        impls.append(Impl(C, [str(build_c_baseline())], detail="gcc -O2"))
    except BenchError as exc:
        impls.append(Impl(C, None, unavailable=str(exc)))
    here = sys.executable
    impls.append(Impl(DTLS_OSSL, [here, str(BENCH_DIR / "_dtls_ossl_peer.py")]))
    impls.append(Impl(PYOPENSSL_HERE, [here, str(BENCH_DIR / "_pyopenssl_peer.py")]))
    if Path(SYSTEM_PYTHON).exists():
        impls.append(Impl(PYOPENSSL_DEBIAN, [SYSTEM_PYTHON, str(BENCH_DIR / "_pyopenssl_peer.py")]))
    else:
        impls.append(Impl(PYOPENSSL_DEBIAN, None, unavailable=f"{SYSTEM_PYTHON} not found"))
    for impl in impls:
        if impl.argv is None:
            continue
        try:
            info = run_kv([*impl.argv, "version"])
        except BenchError as exc:
            if impl.name == PYOPENSSL_HERE and "No module named" in str(exc):
                impl.unavailable = "pyOpenSSL not installed here (pip install pyOpenSSL)"
            elif impl.name == PYOPENSSL_DEBIAN and "No module named" in str(exc):
                impl.unavailable = (
                    f"{exc} under {SYSTEM_PYTHON} (apt-get install python3-openssl "
                    "python3-cryptography)"
                )
            else:
                impl.unavailable = str(exc)
            impl.argv = None
            continue
        impl.openssl = info.get("openssl_version", "?")
        if impl.name == DTLS_OSSL:
            impl.detail = f"{info.get('dtls_ossl_version', '?')}, python {info.get('python', '?')}"
        elif impl.name != C:
            impl.detail = f"{info.get('pyopenssl_version', '?')}, python {info.get('python', '?')}"
    if not quiet:
        print_implementations(impls)
    return impls


def print_implementations(impls: Sequence[Impl]) -> None:
    system = next((i.openssl for i in impls if i.name == C and i.openssl), "")
    print("Implementations:")
    for impl in impls:
        if impl.unavailable:
            print(f"  {impl.name:24} unavailable: {impl.unavailable}")
            continue
        note = ""
        if impl.name.startswith("pyOpenSSL") and system:
            if impl.openssl == system:
                note = "  <- same OpenSSL as the C baseline"
            else:
                note = "  <- its own OpenSSL, NOT the system one: faster handshakes for that reason"
        print(f"  {impl.name:24} {impl.openssl}  [{impl.detail}]{note}")
    print()


# --------------------------------------------------------------------------- interleaving


@dataclass
class Job:
    """One row of a table: an implementation run in one mode, reporting one key."""

    row: str
    impl: Impl
    args: list[str]
    key: str
    values: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None


def run_interleaved(jobs: Sequence[Job], rounds: int, verbose: bool = True) -> None:
    """Run every job once per round, order rotated each round; a failing job is dropped."""
    for job in jobs:
        if job.impl.argv is None:
            job.error = job.impl.unavailable
    for r in range(rounds):
        live = [j for j in jobs if not j.error]
        if not live:
            return
        shift = r % len(live)
        order = live[shift:] + live[:shift]
        t0 = time.perf_counter()
        for job in order:
            assert job.impl.argv is not None
            try:
                out = run_kv([*job.impl.argv, *job.args])
                job.values.append(float(out[job.key]))
            except BenchError as exc:
                job.error = str(exc)
            except (KeyError, ValueError):
                job.error = f"no {job.key}= in output"
        if verbose:
            print(f"  round {r + 1}/{rounds} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)


# --------------------------------------------------------------------------- tables


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.3g}{unit}"


def print_table(
    title: str,
    jobs: Sequence[Job],
    unit: str,
    ratio_to: Sequence[str] = (C, PYOPENSSL_HERE, PYOPENSSL_DEBIAN),
    diff: bool = False,
) -> None:
    """Print rows with their medians and ratios (or differences, with diff=True) to baselines."""
    base = {j.row: j.median for j in jobs if j.median is not None}
    heads = ["implementation", "OpenSSL", unit]
    heads += [(f"- {b}" if diff else f"x {b}") for b in ratio_to]
    rows: list[list[str]] = []
    for job in jobs:
        ossl = job.impl.openssl.replace("OpenSSL ", "").split(" ")[0] if job.impl.openssl else ""
        if job.median is None:
            reason = job.error or "no result"
            rows.append([job.row, ossl, reason])
            continue
        row = [job.row, ossl, _fmt(job.median)]
        for b in ratio_to:
            ref = base.get(b)
            if ref is None or b == job.row:
                row.append("")
            elif diff:
                row.append(f"{job.median - ref:+,.0f}")
            else:
                row.append(f"{job.median / ref:.2f}" if ref else "")
        rows.append(row)
    widths = [len(h) for h in heads]
    for row in rows:
        if len(row) == len(heads):
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    print(title)
    print("  " + "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip())
    for row in rows:
        if len(row) == len(heads):
            print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        else:  # an error: name, OpenSSL, reason across the rest
            print(f"  {row[0].ljust(widths[0])}  {row[1].ljust(widths[1])}  {row[2]}")
    print()


def check(label: str, value: float | None, ok: Callable[[float], bool], shown: str) -> None:
    """Print one target line: PASS, FAIL, or n/a when there is no number."""
    verdict = "n/a " if value is None else ("PASS" if ok(value) else "FAIL")
    print(f"  [{verdict}] {label}: {shown if value is not None else 'no measurement'}")


def ratio(a: Job | None, b: Job | None) -> float | None:
    if a is None or b is None or a.median is None or b.median is None or not b.median:
        return None
    return a.median / b.median


# --------------------------------------------------------------------------- import time


def import_time_ms(python: str, module: str, runs: int) -> tuple[float, float] | None:
    """Median ``import module`` time in ms: (in-process, from -X importtime; wall clock).

    The in-process figure sums the cumulative times of the top-level imports that a bare
    ``python -c pass`` does not do. The wall-clock figure is the median of fresh
    ``python -c "import module"`` runs minus the median of ``python -c pass`` runs, interleaved.
    Returns None if the import fails. Bytecode is allowed: the first run writes __pycache__ (as
    pip does at install time), even where PYTHONDONTWRITEBYTECODE is set in the environment,
    which would otherwise make every run compile the sources.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def timed(code: str) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run([python, "-c", code], capture_output=True, cwd=ROOT, env=env)
        if proc.returncode != 0:
            raise BenchError("import failed")
        return time.perf_counter() - t0

    def top_level(code: str) -> dict[str, int]:
        proc = subprocess.run(
            [python, "-X", "importtime", "-c", code],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
        )
        if proc.returncode != 0:
            raise BenchError("import failed")
        found: dict[str, int] = {}
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            parts = line.split("|")
            if len(parts) == 3 and not parts[2].startswith("  "):
                found[parts[2].strip()] = int(parts[1])
        return found

    stmt = f"import {module}"
    try:
        timed(stmt)  # write __pycache__ first
        bare = set(top_level("pass"))
        inproc: list[float] = []
        bare_wall: list[float] = []
        mod_wall: list[float] = []
        for _ in range(runs):
            bare_wall.append(timed("pass"))
            mod_wall.append(timed(stmt))
            inproc.append(sum(us for name, us in top_level(stmt).items() if name not in bare))
    except BenchError:
        return None
    wall = (statistics.median(mod_wall) - statistics.median(bare_wall)) * 1e3
    return statistics.median(inproc) / 1e3, wall


# --------------------------------------------------------------------------- command line


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="short smoke run (few rounds, small N)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 5, --quick 2)")
    return p


def rounds(args: argparse.Namespace) -> int:
    if args.rounds:
        return int(args.rounds)
    return 2 if args.quick else 5


def print_machine() -> None:
    """One line about the machine, since the targets are "on this machine"."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import platform

    print(f"Machine: {model}, {os.cpu_count()} CPUs; python {platform.python_version()}\n")
