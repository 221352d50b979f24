"""Shared machinery for benchmarks/handshake.py and benchmarks/records.py.

Every implementation runs in its own subprocess:

* the C baseline, benchmarks/c/dtls_baseline.c with benchmarks/c/dtls_probe.c, compiled here
  against the system OpenSSL (pkg-config libssl libcrypto) into benchmarks/.build/, cached by a
  hash of sources and flags. It takes dtls_ossl's configuration on its command line
  (:func:`library_config`): one source of truth, the library's own ``SSL_CTX``;
* dtls_ossl, benchmarks/_dtls_ossl_peer.py under this interpreter;
* pyOpenSSL under this interpreter (normally the PyPI wheel, whose cryptography bundles its own,
  newer OpenSSL) and under /usr/bin/python3 (Debian's python3-openssl on the system OpenSSL),
  both through benchmarks/_pyopenssl_peer.py.

Paired chunks (:func:`run_paired`, the default for the rates). This machine is shared and noisy:
whole-process runs compared one after the other gave per-round ratios to C from 0.58 to 0.76
(records per datagram) and 0.62 to 1.33 (batched) in one 5-round run. Instead each
implementation runs as one long-lived worker (the peers' ``serve`` mode): it does its setup once
(certificates, contexts; for records an established pair and a warm-up), then reads
``handshake N`` or ``records N`` on stdin, runs that chunk, and prints the wall and thread CPU
seconds it took, timed inside the worker. A worker waiting for its next command blocks on stdin,
so only one works at a time. After a short calibration each job's chunk is sized to about 25 ms
of its own work. Then the driver runs pairs of chunks, one of each side of a comparison, back
to back, alternating which side goes first (AB BA AB ...). It cycles through the comparisons until
the time budget (or ``--pairs``) is spent. Both chunks of a pair ran in the same state of the
machine, so the ratio of their rates is the figure. A comparison reports the median of its
per-pair ratios with its 95 % confidence interval (bootstrapped by generation), their
quartiles, min..max and count; a row's rate is the median of its chunk rates. Every worker is
pinned to one CPU, chunks are judged by thread CPU time (the wall clock's ratio is printed beside
it), and the workers are replaced in six generations.
:func:`run_paired` says why, with what an A/A run measured.

``--whole-process`` keeps the older method (:func:`run_interleaved`): each round starts every
implementation once as a whole process (its one-shot mode, ``key=value`` output), order rotated
from round to round; a ratio is then judged per round. The memory measurements always use it.

Like for like: at the end every implementation reports, for both sides of one more handshake
(or of its established pair), what it is configured with and what it negotiated
(``client.*``/``server.*`` lines, written for C and dtls_ossl by the same C code,
benchmarks/c/dtls_probe.c). :func:`compare_reports` checks them; a benchmark prints that check
with its results and prints no ratio to C unless C and dtls_ossl agree on every line.

``--json FILE`` (:data:`RESULTS`) writes every row's rate and every target's ratio, quartiles and
verdict.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
BUILD_DIR = BENCH_DIR / ".build"
C_SOURCE = BENCH_DIR / "c" / "dtls_baseline.c"
PROBE_SOURCE = BENCH_DIR / "c" / "dtls_probe.c"
PROBE_HEADER = BENCH_DIR / "c" / "dtls_probe.h"
SYSTEM_PYTHON = "/usr/bin/python3"
EXIT_NOT_BUILT = 3  # _dtls_ossl_peer.py: dtls_ossl cannot be imported

C = "C"
DTLS_OSSL = "dtls_ossl"
PYOPENSSL_HERE = "pyOpenSSL (this python)"
PYOPENSSL_DEBIAN = "pyOpenSSL (Debian)"


class BenchError(Exception):
    """A one-line reason why an implementation produced no number."""


# --------------------------------------------------------------------------- C baseline


def _openssl_flags() -> tuple[str, list[str], list[str]]:
    """gcc and pkg-config's OpenSSL cflags and libs; BenchError in one line if missing."""
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
    return gcc, flags[0], flags[1]


def _compile(name: str, sources: Sequence[Path], extra: Sequence[str]) -> Path:
    """Compile sources into BUILD_DIR/name-<hash> (cached by sources and flags)."""
    gcc, cflags, libs = _openssl_flags()
    blob = b"".join(p.read_bytes() for p in (*sources, PROBE_HEADER))
    digest = hashlib.sha256(blob + " ".join([*extra, *cflags, *libs]).encode()).hexdigest()[:16]
    out = BUILD_DIR / f"{name}-{digest}"
    if out.exists():
        return out
    BUILD_DIR.mkdir(exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    cmd = [gcc, "-O2", "-Wall", *extra, *cflags, *map(str, sources), "-o", str(tmp), *libs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines()
        first = lines[0].strip() if lines else f"exit status {proc.returncode}"
        raise BenchError(f"C baseline unavailable: gcc failed: {first}")
    tmp.replace(out)  # atomic: concurrent builds (tests, peers) never see half a file
    return out


def build_c_baseline() -> Path:
    """Compile the C baseline (cached by source and flags); raise BenchError in one line."""
    return _compile("dtls_baseline", [C_SOURCE, PROBE_SOURCE], [])


def build_probe_library() -> Path:
    """Compile benchmarks/c/dtls_probe.c as a shared object for the dtls_ossl peer."""
    return _compile("dtls_probe", [PROBE_SOURCE], ["-shared", "-fPIC"]).resolve()


# --------------------------------------------------------------------------- configuration

# dtls_ossl's configured values (benchmarks/_dtls_ossl_peer.py ``config``) -> C baseline options.
_C_CONFIG_FLAGS = {
    "options": "--options",
    "session_cache_mode": "--session-cache-mode",
    "verify_mode": "--verify-mode",
    "min_version": "--min-version",
    "max_version": "--max-version",
    "tls12_ciphers": "--ciphers",
    "groups": "--groups",
    "srtp_profiles": "--srtp-profiles",
    "mtu": "--mtu",
}


def library_config(dtls_ossl_argv: Sequence[str]) -> list[str]:
    """The C baseline's CONFIG arguments, read from dtls_ossl's own configured ``SSL_CTX``.

    Raises BenchError if the dtls_ossl peer cannot report it.
    """
    out = run_kv([*dtls_ossl_argv, "config"], timeout=120)
    if "probe_error" in out:
        raise BenchError(out["probe_error"])
    missing = [k for k in _C_CONFIG_FLAGS if not out.get(k)]
    if missing:
        raise BenchError(f"dtls_ossl peer reported no {', '.join(missing)}")
    return [a for key, flag in _C_CONFIG_FLAGS.items() for a in (flag, out[key])]


# Every client.*/server.* key must be equal between C and dtls_ossl, except these, shown apart:
# fingerprint_how is explanation; handshake_bytes_sent varies by a few bytes from run to run
# (ECDSA signatures are DER integers of varying length), so it is shown, not compared; the
# number of datagrams and the certificates' shape (own_cert_shape) are compared.
REPORT_INFO_KEYS = ("fingerprint_how", "handshake_bytes_sent")


def report_of(out: dict[str, str]) -> dict[str, str]:
    """The client.* and server.* lines of one run's output."""
    return {k: v for k, v in out.items() if k.startswith(("client.", "server."))}


def compare_reports(reports: dict[str, dict[str, str]], reference: str = C) -> dict[str, list[str]]:
    """For each implementation, the keys whose value differs from the reference's.

    A key that either side did not report counts as differing (unknown is not identical); a
    run with no report at all gives ``["(no report)"]``.
    """
    ref = reports.get(reference, {})
    diffs: dict[str, list[str]] = {}
    for name, rep in reports.items():
        if name == reference:
            continue
        if not rep or not ref:
            diffs[name] = ["(no report)"]
            continue
        diffs[name] = [
            k for k in sorted(set(ref) | set(rep)) if not _info_key(k) and ref.get(k) != rep.get(k)
        ]
    return diffs


def print_config_check(
    reports: dict[str, dict[str, str]], diffs: dict[str, list[str]], reference: str = C
) -> None:
    """Print what each implementation reported, one row per key, differences marked ``*``."""
    others = [n for n in reports if n != reference]
    names = [reference, *others]
    keys: list[str] = []
    for n in names:
        keys += [k for k in reports.get(n, {}) if k not in keys and not _info_key(k)]
    print(
        "Configuration check: what each side reported after a handshake (= same as C, "
        "* differs from C, - not reported; C's value last)"
    )
    ref = reports.get(reference, {})
    cols: list[list[str]] = []
    for n in others:
        rep = reports.get(n, {})
        col = []
        for k in keys:
            if k not in rep:
                col.append("-")
            elif rep[k] == ref.get(k):
                col.append("=")
            else:
                col.append(("*" if k in diffs.get(n, []) else "") + rep[k])
        cols.append(col)
    heads = ["key", *others, reference]
    table = [[k, *[c[i] for c in cols], ref.get(k, "-")] for i, k in enumerate(keys)]
    widths = [max(len(r[j]) for r in [heads, *table]) for j in range(len(heads) - 1)]
    for row in [heads, *table]:
        cells = [v.ljust(w) for v, w in zip(row, widths, strict=False)] + [row[-1]]
        print("  " + "  ".join(cells).rstrip())
    print("  Shown, not compared:")
    for n in names:
        rep = reports.get(n, {})
        hows = {v for k, v in rep.items() if k.endswith(".fingerprint_how")}
        sent = [f"{k.split('.')[0]} {rep[k]}" for k in rep if k.endswith(".handshake_bytes_sent")]
        print(f"    {n}: fingerprint check: {'; '.join(sorted(hows)) or 'not reported'}")
        print(f"    {'':{len(n)}}  handshake bytes sent: {', '.join(sent) or 'not reported'}")
    for n in others:
        d = diffs.get(n, [])
        if not d:
            print(f"  {n}: identical to C on every line above")
            continue
        missing = [k for k in d if k not in reports.get(n, {}) or k not in ref]
        other = [k for k in d if k not in missing]
        parts = []
        if other:
            parts.append(f"differs in {_both_sides(other)}")
        if missing:
            parts.append(f"not reported: {_both_sides(missing)}")
        print(f"  {n}: NOT like-for-like with C: {'; '.join(parts)}")
    print()


def _info_key(key: str) -> bool:
    return key.split(".", 1)[-1] in REPORT_INFO_KEYS


def _both_sides(keys: Sequence[str]) -> str:
    """``client.x, server.x, client.y`` -> ``x, client.y``: shorter one-line verdicts."""
    out: list[str] = []
    for k in keys:
        side, _, name = k.partition(".")
        other = ("server." if side == "client" else "client.") + name
        if other in keys:
            if name not in out:
                out.append(name)
        else:
            out.append(k)
    return ", ".join(out)


def like_for_like(jobs: Sequence[Job]) -> tuple[list[str], str]:
    """Print the configuration check of these jobs' runs; return (unlike baselines, refusal).

    ``refusal`` is a one-line reason to refuse every ratio to C (C and dtls_ossl differ or did
    not report), else empty. ``unlike`` names the pyOpenSSL rows that are not like-for-like.
    """
    reports: dict[str, dict[str, str]] = {}
    for job in jobs:
        if job.impl.name not in reports and job.values:
            reports[job.impl.name] = job.report
    if C not in reports or DTLS_OSSL not in reports:
        return [], ""  # nothing to compare: no ratio to C will be printed anyway
    diffs = compare_reports(reports)
    print_config_check(reports, diffs)
    unlike = [n for n, d in diffs.items() if d and n != DTLS_OSSL]
    refusal = ""
    if diffs.get(DTLS_OSSL):
        refusal = (
            "refusing to print ratios to C: C and dtls_ossl did not do the same protocol work "
            f"(differ in {', '.join(diffs[DTLS_OSSL])})"
        )
    RESULTS.notes["like_for_like"] = {"refusal": refusal, "unlike": unlike, "differences": diffs}
    return unlike, refusal


def with_mtu(impl: Impl, mtu: int) -> Impl:
    """A copy of impl whose CONFIG says ``--mtu mtu`` (for the records runs)."""
    if impl.argv is None or "--mtu" not in impl.argv:
        return impl
    argv = list(impl.argv)
    argv[argv.index("--mtu") + 1] = str(mtu)
    return Impl(impl.name, argv, impl.detail, impl.openssl, impl.unavailable)


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
    here = sys.executable
    dtls_ossl_argv = [here, str(BENCH_DIR / "_dtls_ossl_peer.py")]
    try:
        exe = build_c_baseline()
        try:
            config = library_config(dtls_ossl_argv)
        except BenchError as exc:
            msg = f"C baseline unavailable: no configuration from dtls_ossl: {exc}"
            raise BenchError(msg) from exc
        impls.append(Impl(C, [str(exe), *config], detail="gcc -O2"))
    except BenchError as exc:
        impls.append(Impl(C, None, unavailable=str(exc)))
    impls.append(Impl(DTLS_OSSL, dtls_ossl_argv))
    # pyOpenSSL gets the same CONFIG, applied as far as its API allows.
    py_config = impls[0].argv[1:] if impls[0].argv else []
    impls.append(Impl(PYOPENSSL_HERE, [here, str(BENCH_DIR / "_pyopenssl_peer.py"), *py_config]))
    if Path(SYSTEM_PYTHON).exists():
        impls.append(
            Impl(
                PYOPENSSL_DEBIAN,
                [SYSTEM_PYTHON, str(BENCH_DIR / "_pyopenssl_peer.py"), *py_config],
            )
        )
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
    values: list[float] = field(default_factory=list)  # one per round, or one per chunk
    error: str = ""
    report: dict[str, str] = field(default_factory=dict)  # client.*/server.* of the last run
    serve: list[str] = field(default_factory=list)  # the worker's serve arguments (run_paired)
    chunk: int = 0  # units per chunk, from the calibration (run_paired)
    ratios: dict[str, list[float]] = field(default_factory=dict)  # per-pair ratios, by row
    ratio_gens: dict[str, list[int]] = field(default_factory=dict)  # each ratio's generation
    alt_values: list[float] = field(default_factory=list)  # chunk rates by the other clock
    alt_ratios: dict[str, list[float]] = field(default_factory=dict)  # same, by the other clock
    clock: str = ""  # "cpu" or "wall": what values and ratios were timed by (run_paired)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def spread(self) -> str:
        """Quartiles of the chunk rates (paired runs), else ``min..max`` of the rounds."""
        if len(self.values) < 2:
            return ""
        if self.chunk and len(self.values) >= 4:
            q1, q3 = quartiles(self.values)
            return f"{_fmt(q1)}..{_fmt(q3)}"
        return f"{_fmt(min(self.values))}..{_fmt(max(self.values))}"


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
                job.report = report_of(out) or job.report
            except BenchError as exc:
                job.error = str(exc)
            except (KeyError, ValueError):
                job.error = f"no {job.key}= in output"
        if verbose:
            print(f"  round {r + 1}/{rounds} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)


# --------------------------------------------------------------------------- paired chunks

START_TIMEOUT = 120.0  # seconds for a worker's setup and warm-up (a compile is done before)
CHUNK_TIMEOUT = 60.0  # seconds for one chunk or one report


class Worker:
    """One implementation's long-lived ``serve`` process (the line protocol of the peers).

    Starts it and waits for ``ready``; :meth:`run` sends ``UNIT N`` and returns the seconds the
    worker measured; :meth:`report` returns its ``key=value`` report lines. Any failure (the
    process died, an ``error=`` line, no answer in time) is a BenchError in one line.
    """

    def __init__(self, argv: Sequence[str], unit: str) -> None:
        self.unit = unit
        # A file, not a pipe: nothing has to drain it while the worker runs. Closed in close().
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._buf = b""
        try:
            self.proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=ROOT,
                bufsize=0,
            )
        except OSError as exc:
            self._stderr.close()
            raise BenchError(str(exc)) from exc
        line = self._readline(START_TIMEOUT)
        if line != "ready":
            raise self._failure(line)

    def run(self, n: int) -> tuple[float, float]:
        """Run a chunk of n units; return the (wall, CPU) seconds the worker measured."""
        self._send(f"{self.unit} {n}")
        line = self._readline(CHUNK_TIMEOUT)
        try:
            wall, cpu = map(float, line.split())
        except ValueError:
            raise self._failure(line) from None
        if wall <= 0 or cpu <= 0:
            raise BenchError(f"worker measured {line} s for {n} {self.unit}")
        return wall, cpu

    def report(self) -> dict[str, str]:
        """The worker's ``key=value`` report (version, client.*, server.*)."""
        self._send("report")
        out: dict[str, str] = {}
        while (line := self._readline(CHUNK_TIMEOUT)) != "end":
            key, sep, value = line.partition("=")
            if key == "error":
                raise BenchError(value)
            if sep:
                out[key.strip()] = value.strip()
        return out

    def close(self) -> None:
        """Ask the worker to quit; kill it if it does not within 5 s."""
        try:
            self._send("quit")
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (BenchError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._stderr.close()

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(f"{command}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise self._failure("") from None

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                raise BenchError(f"worker gave no answer within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    raise self._failure("")
                self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace").strip()

    def _failure(self, line: str) -> BenchError:
        """The reason a worker failed: its error= line, else its last line on stderr."""
        if line.startswith("error="):
            return BenchError(line[len("error=") :])
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace").strip().splitlines()
        if err:
            return BenchError(err[-1])
        if line:
            return BenchError(f"unexpected answer: {line[:80]}")
        return BenchError(f"worker exited with status {self.proc.returncode}")


@dataclass
class Pacing:
    """How a paired run is paced, timed and placed (see :func:`run_paired`)."""

    seconds: float = 18.0  # time budget for the pairs (worker setup and calibration not counted)
    pairs: int = 0  # if > 0: exactly this many pairs per comparison, no time budget
    chunk_ms: float = 25.0  # target duration of one chunk
    calibration_chunks: int = 3  # chunks at the estimated size; their median rate sizes the chunk
    clock: str = "cpu"  # "cpu": the worker's thread CPU time; "wall": its monotonic clock
    generations: int = 6  # fresh workers this many times, the budget split between them
    cpu: int | None = None  # the CPU every worker is pinned to; None: not pinned

    def describe(self) -> str:
        budget = f"{self.pairs} pairs per comparison" if self.pairs else f"{self.seconds:g} s"
        where = "unpinned" if self.cpu is None else f"all workers on CPU {self.cpu}"
        return (
            f"paired chunks of about {self.chunk_ms:g} ms, {budget}, {self.generations} "
            f"generation(s) of workers, {where}, timed by {_CLOCK_NAME[self.clock]}"
        )


def default_cpu() -> int | None:
    """The CPU to pin workers to: the last one this process may run on (None: cannot pin)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    return max(os.sched_getaffinity(0))


def _pick(timing: tuple[float, float], clock: str) -> tuple[float, float]:
    """(seconds by the chosen clock, seconds by the other one)."""
    wall, cpu = timing
    return (cpu, wall) if clock == "cpu" else (wall, cpu)


def _calibrate(job: Job, worker: Worker, pacing: Pacing) -> None:
    """Size job.chunk to about pacing.chunk_ms of its work (these chunks are not counted)."""
    target = pacing.chunk_ms / 1e3
    n = 1
    while True:
        seconds = _pick(worker.run(n), pacing.clock)[0]
        if seconds >= target / 5 or n >= 1 << 24:
            break
        n = min(n * 100, max(n * 2, int(n * target / 5 / seconds) + 1))
    rates = [n / seconds]
    n = max(1, round(rates[0] * target))
    for _ in range(pacing.calibration_chunks):
        rates.append(n / _pick(worker.run(n), pacing.clock)[0])
    job.chunk = max(1, round(statistics.median(rates) * target))


def run_paired(
    jobs: Sequence[Job],
    comparisons: Sequence[tuple[Job, Job]],
    pacing: Pacing,
    verbose: bool = True,
) -> None:
    """Run every job as a ``serve`` worker, in pairs of adjacent chunks.

    ``comparisons`` are (a, b) pairs of jobs: each pair of chunks, a's and b's back to back (b
    first every other time), appends both chunk rates to the jobs' values and the rate ratio
    a/b to ``a.ratios[b.row]`` (and the same by the other clock to ``alt_values`` and
    ``alt_ratios``). A job in no live comparison still runs, on its own, once per cycle.

    Why it is built this way (measured on this 2-CPU shared VM by pairing a worker with an
    identical one, where every ratio should be 1.00):

    * each vCPU is fast or slow for stretches of a second or so, independently of the other,
      so two workers on different CPUs see different states: every worker is pinned to one CPU
      (``pacing.cpu``), which narrowed the A/A ratios' quartiles from about +-9 % to +-3-5 %
      (wall clock, load 1.5-2);
    * other processes take turns on that CPU: the thread CPU time a worker reports does not
      count them. Under load 3-4 its A/A quartiles were +-1-5 % where the wall clock's were
      +-3-42 % (mostly 4-10 %); the wall clock is still reported, as ``alt_*``;
    * two identical processes can differ by a few percent for their whole life (ten fresh pinned
      pairs of C workers: medians 0.95 to 1.02; cause not found): the workers are replaced
      ``pacing.generations`` times, so no single draw decides a ratio. Chunk sizes are
      calibrated once, by the first generation.

    A job whose worker fails is dropped with its error; the others go on. The last
    generation's workers give the reports (the configuration check).
    """
    for job in jobs:
        job.clock = pacing.clock
        if job.impl.argv is None:
            job.error = job.impl.unavailable
    generations = max(1, pacing.generations)
    t_start = time.perf_counter()
    visits = 0
    for gen in range(generations):
        workers: dict[int, Worker] = {}
        try:
            for job in jobs:
                if job.error or job.impl.argv is None:
                    continue
                try:
                    unit = job.serve[0].split("-")[0]  # records-batch runs "records N" chunks
                    worker = Worker([*job.impl.argv, "serve", *job.serve], unit)
                    workers[id(job)] = worker
                    if pacing.cpu is not None:
                        os.sched_setaffinity(worker.proc.pid, {pacing.cpu})
                    if not job.chunk:
                        _calibrate(job, worker, pacing)
                except (BenchError, OSError) as exc:
                    job.error = str(exc)
            if verbose and gen == 0:
                sizes = ", ".join(f"{j.row} {j.chunk}" for j in jobs if j.chunk and not j.error)
                print(f"  chunk sizes: {sizes}", file=sys.stderr)
            visits = _pairs(jobs, comparisons, pacing, workers, gen, visits, verbose, t_start)
            if gen == generations - 1:
                for job in jobs:
                    if not job.error and id(job) in workers:
                        try:
                            job.report = report_of(workers[id(job)].report())
                        except BenchError as exc:
                            job.error = f"report failed: {exc}"
        finally:
            for worker in workers.values():
                worker.close()
    if verbose:
        elapsed = time.perf_counter() - t_start
        print(f"  {visits} pairs per comparison, {elapsed:.1f} s in all", file=sys.stderr)


def _pairs(
    jobs: Sequence[Job],
    comparisons: Sequence[tuple[Job, Job]],
    pacing: Pacing,
    workers: dict[int, Worker],
    gen: int,
    visits: int,
    verbose: bool,
    t_start: float,
) -> int:
    """One generation's pairs; returns the number of pairs per comparison so far."""
    generations = max(1, pacing.generations)
    quota = pacing.pairs * (gen + 1) // generations if pacing.pairs else 0
    budget = pacing.seconds / generations

    def live(job: Job) -> bool:
        return not job.error and id(job) in workers

    def chunk(job: Job) -> tuple[float, float] | None:
        try:
            first, other = _pick(workers[id(job)].run(job.chunk), pacing.clock)
        except BenchError as exc:
            job.error = str(exc)
            return None
        rates = (job.chunk / first, job.chunk / other)
        job.values.append(rates[0])
        job.alt_values.append(rates[1])
        return rates

    t0 = last = time.perf_counter()
    while True:
        if quota and visits >= quota:
            break
        pairs = [(a, b) for a, b in comparisons if live(a) and live(b)]
        paired = {id(j) for ab in pairs for j in ab}
        alone = [j for j in jobs if live(j) and id(j) not in paired]
        if not pairs and not alone:
            break
        for a, b in pairs:
            first, second = (a, b) if visits % 2 == 0 else (b, a)
            r1 = chunk(first)
            r2 = chunk(second) if r1 is not None else None
            if r1 is not None and r2 is not None:
                ra, rb = (r1, r2) if first is a else (r2, r1)
                a.ratios.setdefault(b.row, []).append(ra[0] / rb[0])
                a.ratio_gens.setdefault(b.row, []).append(gen)
                a.alt_ratios.setdefault(b.row, []).append(ra[1] / rb[1])
        for job in alone:
            chunk(job)
        visits += 1
        now = time.perf_counter()
        if verbose and now - last >= 5:
            last = now
            print(f"  {visits} pairs each, {now - t_start:.0f} s", file=sys.stderr)
        if not quota and now - t0 >= budget and visits >= 2 * (gen + 1):
            break
    return visits


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartiles; min and max with fewer than 4 values (nothing to cut)."""
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def per_pair(a: Job | None, b: Job | None) -> list[float]:
    """The ratios a/b to judge: per pair of chunks if paired, else per whole-process round."""
    return per_pair_grouped(a, b)[0]


def per_pair_grouped(a: Job | None, b: Job | None) -> tuple[list[float], list[int]]:
    """:func:`per_pair` with each ratio's group: its workers' generation, or its own round."""
    if a is None or b is None:
        return [], []
    if b.row in a.ratios:  # _pairs appends a ratio and its generation together
        return list(a.ratios[b.row]), list(a.ratio_gens[b.row])
    values = [x / y for x, y in zip(a.values, b.values, strict=False) if y]
    return values, list(range(len(values)))


def median_ci(
    values: Sequence[float],
    groups: Sequence[int],
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 20261206,
) -> tuple[float, float]:
    """A bootstrap confidence interval of the median of ``values``, resampled by group.

    Ratios from one generation of workers share those processes' lasting offsets (see
    :func:`run_paired`), so they are not independent draws. Each resample therefore draws the
    groups with replacement, then the values inside each drawn group with replacement: the
    interval widens with the spread between generations as well as within them, and narrows
    as either more pairs or more generations are run. The seed is fixed so that one set of
    ratios always gives the same interval.
    """
    by_group: dict[int, list[float]] = {}
    for value, group in zip(values, groups, strict=True):
        by_group.setdefault(group, []).append(value)
    clusters = list(by_group.values())
    if not clusters:
        raise ValueError("median_ci of no values")
    rng = random.Random(seed)
    medians = []
    for _ in range(resamples):
        pooled: list[float] = []
        for cluster in rng.choices(clusters, k=len(clusters)):
            pooled.extend(rng.choices(cluster, k=len(cluster)))
        medians.append(statistics.median(pooled))
    medians.sort()
    tail = (1 - level) / 2
    low = medians[round(tail * (resamples - 1))]
    high = medians[round((1 - tail) * (resamples - 1))]
    return low, high


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
    refuse: Sequence[str] = (),
    unlike: Sequence[str] = (),
) -> None:
    """Print rows with their medians, spreads and ratios (or differences) to baselines.

    A paired run's rate is the median of its chunk rates, shown with their quartiles, and its
    ratio to a baseline it was paired with is the median of the per-pair ratios; otherwise the
    median of the rounds with their min..max, and the ratio of the medians. Columns named in
    ``refuse`` show "refused" instead of a ratio (the configuration check failed against that
    baseline); columns named in ``unlike`` are marked as not like-for-like. The rows go into
    :data:`RESULTS` too.
    """
    RESULTS.add_table(title, unit, jobs)
    base = {j.row: j.median for j in jobs if j.median is not None}
    paired = any(j.chunk for j in jobs)
    heads = ["implementation", "OpenSSL", unit, "chunk quartiles" if paired else "min..max"]
    clock = next((j.clock for j in jobs if j.clock and j.values), "")
    if paired and clock:
        title += f"; timed by {_CLOCK_NAME[clock]}"
    heads += [(f"- {b}" if diff else f"x {b}") + ("*" if b in unlike else "") for b in ratio_to]
    rows: list[list[str]] = []
    for job in jobs:
        ossl = job.impl.openssl.replace("OpenSSL ", "").split(" ")[0] if job.impl.openssl else ""
        if job.median is None:
            reason = job.error or "no result"
            rows.append([job.row, ossl, reason])
            continue
        row = [job.row, ossl, _fmt(job.median), job.spread]
        for b in ratio_to:
            ref = base.get(b)
            if ref is None or b == job.row:
                row.append("")
            elif b in refuse:
                row.append("refused")
            elif diff:
                row.append(f"{job.median - ref:+,.0f}")
            elif job.ratios.get(b):
                row.append(f"{statistics.median(job.ratios[b]):.2f}")
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
    if unlike:
        print("  * not like-for-like: see the configuration check")
    print()


def check(
    label: str,
    value: float | None,
    ok: Callable[[float], bool],
    shown: str,
    extra: dict[str, Any] | None = None,
    inconclusive: bool = False,
) -> None:
    """Print one target line: PASS, FAIL, INCONCLUSIVE (the uncertainty spans the target), or
    n/a when there is no number (and record it)."""
    if value is None:
        verdict = "n/a "
    elif inconclusive:
        verdict = "INCONCLUSIVE"
    else:
        verdict = "PASS" if ok(value) else "FAIL"
    print(f"  [{verdict}] {label}: {shown if value is not None else 'no measurement'}")
    RESULTS.targets.append(
        {
            "target": label,
            "verdict": verdict.strip(),
            "value": value,
            "shown": shown,
            **(extra or {}),
        }
    )


def ratio_check(label: str, a: Job | None, b: Job | None, target: float) -> None:
    """Print a ``>= target x`` line for a/b, judged on the median of the per-pair ratios.

    Both chunks of a pair (or both runs of a whole-process round) shared the machine's state, so
    their ratio is the figure to trust when other jobs come and go; the ratio of the medians is
    shown beside it. The line gives two spreads: the quartiles of the ratios (how much single
    pairs scatter; more pairs do not narrow it) and the 95 % confidence interval of their median
    (:func:`median_ci`, by generation of workers; more pairs and generations narrow it). When
    that interval straddles the target the margin is smaller than the uncertainty: the verdict
    is INCONCLUSIVE, not PASS or FAIL; run longer (``--seconds``, ``--generations``) or on a
    quieter machine. PASS needs the whole interval at or above the target.
    """
    raw, groups = per_pair_grouped(a, b)
    pairs = sorted(raw)
    what = "per-pair" if a is not None and b is not None and b.row in a.ratios else "per-round"
    alt = sorted(a.alt_ratios.get(b.row, [])) if a is not None and b is not None else []
    if len(pairs) < 2:
        r = ratio(a, b)
        check(label, r, lambda v: v >= target, f"{r or 0:.2f} (one round)", {"min_ratio": target})
        return
    q = quartiles(pairs)
    med = statistics.median(pairs)
    ci = median_ci(raw, groups)
    n_groups = len(set(groups))
    inconclusive = ci[0] < target <= ci[1]
    note = "; the interval straddles the target: inconclusive" if inconclusive else ""
    over = f"{n_groups} generation{'s' * (n_groups != 1)}" if what == "per-pair" else "rounds"
    check(
        label,
        med,
        lambda v: v >= target,
        f"{med:.3f} (median of {len(pairs)} {what} ratios; 95% CI of the median "
        f"{ci[0]:.3f}..{ci[1]:.3f} by {over}; quartiles {q[0]:.2f}..{q[1]:.2f}, "
        f"min..max {pairs[0]:.2f}..{pairs[-1]:.2f}; ratio of medians {ratio(a, b) or 0:.2f}"
        f"{note})",
        {
            "min_ratio": target,
            "ratio": med,
            "q1": q[0],
            "q3": q[1],
            "min": pairs[0],
            "max": pairs[-1],
            "n": len(pairs),
            "ci_low": ci[0],
            "ci_high": ci[1],
            "generations": n_groups if what == "per-pair" else None,
            "method": what,
            "ratio_of_medians": ratio(a, b),
            "inconclusive": inconclusive,
            **_alt_summary(alt),
        },
        inconclusive=inconclusive,
    )
    if a is not None and len(alt) >= 2:
        qa = quartiles(alt)
        print(
            f"         by the {_ALT_CLOCK[a.clock]}: "
            f"{statistics.median(alt):.2f} (quartiles {qa[0]:.2f}..{qa[1]:.2f}, "
            f"min..max {alt[0]:.2f}..{alt[-1]:.2f})"
        )


_ALT_CLOCK = {"cpu": "wall clock", "wall": "thread CPU time"}
_CLOCK_NAME = {"cpu": "each worker's thread CPU time", "wall": "each worker's wall clock"}


def _alt_summary(alt: Sequence[float]) -> dict[str, Any]:
    if len(alt) < 2:
        return {}
    q = quartiles(alt)
    return {"other_clock": {"ratio": statistics.median(alt), "q1": q[0], "q3": q[1]}}


def ratio(a: Job | None, b: Job | None) -> float | None:
    if a is None or b is None or a.median is None or b.median is None or not b.median:
        return None
    return a.median / b.median


# --------------------------------------------------------------------------- --json


@dataclass
class Results:
    """Everything a benchmark printed as a figure, for ``--json FILE``."""

    tables: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def add_table(self, title: str, unit: str, jobs: Sequence[Job]) -> None:
        rows = []
        for job in jobs:
            v = sorted(job.values)
            q = quartiles(v) if v else (None, None)
            rows.append(
                {
                    "row": job.row,
                    "implementation": job.impl.name,
                    "openssl": job.impl.openssl,
                    "detail": job.impl.detail,
                    "median": job.median,
                    "q1": q[0],
                    "q3": q[1],
                    "min": v[0] if v else None,
                    "max": v[-1] if v else None,
                    "n": len(v),
                    "chunk": job.chunk or None,
                    "clock": job.clock or None,
                    "other_clock_median": (
                        statistics.median(job.alt_values) if job.alt_values else None
                    ),
                    "ratios": {
                        b: {
                            "median": statistics.median(r),
                            "q1": quartiles(r)[0],
                            "q3": quartiles(r)[1],
                            "n": len(r),
                            "other_clock_median": (
                                statistics.median(job.alt_ratios[b])
                                if job.alt_ratios.get(b)
                                else None
                            ),
                        }
                        for b, r in job.ratios.items()
                        if r
                    },
                    "error": job.error or None,
                }
            )
        self.tables.append({"title": title, "unit": unit, "rows": rows})

    def write(self, path: str, benchmark: str, settings: dict[str, Any]) -> None:
        import platform

        doc = {
            "benchmark": benchmark,
            "argv": sys.argv,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count()},
            "python": platform.python_version(),
            "settings": settings,
            "tables": self.tables,
            "targets": self.targets,
            **self.notes,
        }
        Path(path).write_text(json.dumps(doc, indent=1) + "\n")


RESULTS = Results()
"What this run printed; handshake.py and records.py write it with ``--json FILE``."


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
    p.add_argument(
        "--no-callgrind",
        action="store_true",
        help="skip the callgrind instruction counts (about a minute per figure)",
    )
    return p


def add_pacing_args(p: argparse.ArgumentParser) -> None:
    """Options of the paired-chunk runs (handshake.py, records.py) and ``--json``."""
    p.add_argument(
        "--seconds",
        type=float,
        help="time budget for the paired chunks (default 18, --quick 3)",
    )
    p.add_argument(
        "--pairs", type=int, help="exactly this many pairs per comparison (no time budget)"
    )
    p.add_argument(
        "--chunk-ms", type=float, default=25.0, help="work per chunk, in ms (default 25)"
    )
    p.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time chunks by the worker's thread CPU time (default: other processes' turns on "
        "the CPU do not count) or by its monotonic clock; the other is printed beside it",
    )
    p.add_argument(
        "--generations",
        type=int,
        help="replace the workers this many times, splitting the budget (default 6, --quick 1)",
    )
    p.add_argument(
        "--cpu",
        type=int,
        help="pin every worker to this CPU (default: the last one this process may use)",
    )
    p.add_argument("--no-pin", action="store_true", help="leave the workers unpinned")
    p.add_argument(
        "--whole-process",
        action="store_true",
        help="the older method: whole processes in interleaved rounds (see --rounds)",
    )
    p.add_argument("--json", metavar="FILE", help="write every rate and target to FILE")


def pacing(args: argparse.Namespace) -> Pacing:
    """The Pacing the command line asks for."""
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 18.0)
    generations = args.generations or (1 if args.quick else 6)
    cpu = None if args.no_pin else (args.cpu if args.cpu is not None else default_cpu())
    return Pacing(
        seconds=seconds,
        pairs=args.pairs or 0,
        chunk_ms=args.chunk_ms,
        calibration_chunks=1 if args.quick else 3,
        clock=args.clock,
        generations=generations,
        cpu=cpu,
    )


def rounds(args: argparse.Namespace) -> int:
    if args.rounds:
        return int(args.rounds)
    return 2 if args.quick else 5


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def print_machine() -> None:
    """One line about the machine, since the targets are "on this machine"."""
    import platform

    print(f"Machine: {_cpu_model()}, {os.cpu_count()} CPUs; python {platform.python_version()}\n")
