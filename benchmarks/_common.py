"""Shared machinery for benchmarks/handshake.py and benchmarks/records.py.

Every implementation runs in its own subprocess and prints ``key=value`` lines:

* the C baseline, benchmarks/c/dtls_baseline.c with benchmarks/c/dtls_probe.c, compiled here
  against the system OpenSSL (pkg-config libssl libcrypto) into benchmarks/.build/, cached by a
  hash of sources and flags. It takes dtls_ossl's configuration on its command line
  (:func:`library_config`): one source of truth, the library's own ``SSL_CTX``;
* dtls_ossl, benchmarks/_dtls_ossl_peer.py under this interpreter;
* pyOpenSSL under this interpreter (normally the PyPI wheel, whose cryptography bundles its own,
  newer OpenSSL) and under /usr/bin/python3 (Debian's python3-openssl on the system OpenSSL),
  both through benchmarks/_pyopenssl_peer.py.

Each round runs every implementation once, in an order rotated from round to round; the figure
reported is the median over rounds (min and max are shown beside it). Timings are taken inside
each process, after a warm-up, so interpreter start-up is not part of any rate.

Like for like: after its timed handshakes every implementation does one more and reports, for
both sides, what it is configured with and what it negotiated (``client.*``/``server.*`` lines,
written for C and dtls_ossl by the same C code, benchmarks/c/dtls_probe.c). :func:`compare_reports`
checks them; a benchmark prints that check with its results and prints no ratio to C unless C
and dtls_ossl agree on every line.
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
    values: list[float] = field(default_factory=list)
    error: str = ""
    report: dict[str, str] = field(default_factory=dict)  # client.*/server.* of the last run

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def spread(self) -> str:
        """``min..max`` of the rounds (empty with fewer than two)."""
        if len(self.values) < 2:
            return ""
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
    """Print rows with their medians, min..max and ratios (or differences) to baselines.

    Columns named in ``refuse`` show "refused" instead of a ratio (the configuration check
    failed against that baseline); columns named in ``unlike`` are marked as not like-for-like.
    """
    base = {j.row: j.median for j in jobs if j.median is not None}
    heads = ["implementation", "OpenSSL", unit, "min..max"]
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


def check(label: str, value: float | None, ok: Callable[[float], bool], shown: str) -> None:
    """Print one target line: PASS, FAIL, or n/a when there is no number."""
    verdict = "n/a " if value is None else ("PASS" if ok(value) else "FAIL")
    print(f"  [{verdict}] {label}: {shown if value is not None else 'no measurement'}")


def ratio_spread(a: Job, b: Job) -> str:
    """Per-round ratios a/b (rounds are interleaved, so each pair shared the machine's state):
    ``; per round min/median/max 0.80/0.84/0.90``, or empty with fewer than two rounds."""
    pairs = [x / y for x, y in zip(a.values, b.values, strict=False) if y]
    if len(pairs) < 2:
        return ""
    return (
        f"; per round min/median/max {min(pairs):.2f}/{statistics.median(pairs):.2f}/"
        f"{max(pairs):.2f}"
    )


def ratio_check(label: str, a: Job | None, b: Job | None, target: float) -> None:
    """Print a ``>= target x`` line for a/b, judged on the median of the per-round ratios.

    Both runs of a round shared the machine's state, so the per-round ratio is the figure to
    trust when other jobs come and go; the ratio of the medians is shown beside it. When the
    per-round ratios' interquartile range straddles the target, the spread is wider than the
    margin and the line says so: more rounds, or a quieter machine, are needed to decide.
    """
    pairs = sorted(x / y for x, y in zip(a.values, b.values, strict=False) if y) if a and b else []
    if len(pairs) < 2:
        r = ratio(a, b)
        check(label, r, lambda v: v >= target, f"{r or 0:.2f} (one round)")
        return
    q = statistics.quantiles(pairs, n=4) if len(pairs) >= 4 else [pairs[0], 0.0, pairs[-1]]
    med = statistics.median(pairs)
    note = "" if not q[0] < target <= q[2] else "; spread wider than the margin: inconclusive"
    check(
        label,
        med,
        lambda v: v >= target,
        f"{med:.2f} (median of {len(pairs)} per-round ratios; quartiles {q[0]:.2f}..{q[2]:.2f}, "
        f"min..max {pairs[0]:.2f}..{pairs[-1]:.2f}; ratio of medians {ratio(a, b) or 0:.2f}"
        f"{note})",
    )


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
    p.add_argument(
        "--no-callgrind",
        action="store_true",
        help="skip the callgrind instruction counts (about a minute per figure)",
    )
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
