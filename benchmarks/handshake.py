"""Handshakes/s, memory per established connection and ``import dtls_ossl`` time.

Compares dtls_ossl with a C program doing the same work on the same OpenSSL
(benchmarks/c/dtls_baseline.c, given the library's own configuration on its command line, and
checked: see the "Configuration check" the run prints; no ratio to C is printed, and the exit
status is 1, if C and dtls_ossl differ in anything they negotiated) and with pyOpenSSL twice:
under this interpreter (normally the PyPI wheel, which bundles its own newer OpenSSL) and under
/usr/bin/python3 (Debian's python3-openssl on the system OpenSSL).

Handshakes are timed in paired chunks (benchmarks/_common.py, ``run_paired``): every
implementation is one long-lived worker; chunks of complete in-memory handshake pairs, each
about 25 ms of work, run back to back in pairs (dtls_ossl then C, C then dtls_ossl, ...; every
other row is paired with C the same way) for about 18 s. The rate is the median of the chunk
rates, with their quartiles; a ratio to C is the median of the per-pair ratios.

    python benchmarks/handshake.py                    # full run
    python benchmarks/handshake.py --quick            # smoke run (3 s of pairs)
    python benchmarks/handshake.py --seconds 60       # more pairs; --pairs N for a fixed count
    python benchmarks/handshake.py --json out.json    # every rate and target, for tables
    python benchmarks/handshake.py --whole-process    # the older whole-process rounds

Targets (issue): handshakes/s >= 0.92 x C; import < 5 ms; memory per connection within 1 KB of
C's (RSS growth compared with RSS growth; whole-process rounds, ``--rounds``, default 5). The
verdict is on the median of the per-pair ratios, with the median's 95 % confidence interval,
the ratios' quartiles and min..max beside it (INCONCLUSIVE, not PASS or FAIL, when the
interval straddles the target: run longer); the stable secondary figure,
instructions per handshake pair counted by callgrind for dtls_ossl and C, follows (unless
--no-callgrind; benchmarks/_callgrind.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

import _callgrind
from _common import (
    DTLS_OSSL,
    PYOPENSSL_DEBIAN,
    PYOPENSSL_HERE,
    RESULTS,
    SYSTEM_PYTHON,
    C,
    Job,
    add_pacing_args,
    check,
    discover,
    import_time_ms,
    like_for_like,
    pacing,
    parser,
    print_machine,
    print_table,
    ratio_check,
    rounds,
    run_interleaved,
    run_paired,
)

C_ALLOCS = "C (heap allocs)"
C_RSS = "C (RSS)"


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    add_pacing_args(p)
    p.add_argument(
        "--handshakes", type=int, help="--whole-process: handshakes per run (default 500, quick 50)"
    )
    p.add_argument("--connections", type=int, help="connections kept (default 1000, quick 100)")
    p.add_argument("--import-runs", type=int, help="fresh interpreters (default 20, quick 5)")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-import", action="store_true")
    args = p.parse_args()
    n = args.handshakes or (50 if args.quick else 500)
    conns = args.connections or (100 if args.quick else 1000)
    import_runs = args.import_runs or (5 if args.quick else 20)
    nrounds = rounds(args)
    pace = pacing(args)

    print_machine()
    impls = {impl.name: impl for impl in discover()}

    hs = [
        Job(name, impl, ["handshake", str(n)], "handshakes_per_s", serve=["handshake"])
        for name, impl in impls.items()
    ]
    if args.whole_process:
        print(f"Handshakes: {n} per run, {nrounds} interleaved rounds", file=sys.stderr)
        run_interleaved(hs, nrounds)
        method = f"median of {nrounds} whole-process rounds"
    else:
        print(f"Handshakes: {pace.describe()}", file=sys.stderr)
        c_job = next(j for j in hs if j.row == C)
        run_paired(hs, [(j, c_job) for j in hs if j is not c_job], pace)
        method = "median of paired chunks; ratios: median per-pair ratio"
    unlike, refusal = like_for_like(hs)
    refuse = (C, C_RSS, C_ALLOCS) if refusal else ()
    print_table(
        f"In-memory DTLS 1.2 handshakes/s (the library's default configuration as the "
        f"benchmark sets it, C given the same; {method})",
        hs,
        "handshakes/s",
        refuse=refuse,
        unlike=unlike,
    )

    mem: list[Job] = []
    if not args.skip_memory:
        print(f"Memory: {conns} server-side connections, {nrounds} rounds", file=sys.stderr)
        c = impls[C]
        mem = [
            Job(C_ALLOCS, c, ["memory", str(conns)], "bytes_per_conn"),
            Job(C_RSS, c, ["rss", str(conns)], "rss_bytes_per_conn"),
        ]
        mem += [
            Job(name, impl, ["memory", str(conns)], "rss_bytes_per_conn")
            for name, impl in impls.items()
            if name != C
        ]
        run_interleaved(mem, nrounds)
        print_table(
            f"Bytes per established server-side connection ({conns} kept; C (heap allocs) counts "
            "live OpenSSL allocations, all other rows are RSS growth / N)",
            mem,
            "bytes/conn",
            ratio_to=(C_RSS, C_ALLOCS),
            diff=True,
            refuse=refuse,
        )

    imp: dict[str, tuple[float, float] | None] = {}
    if not args.skip_import:
        print(f"Import time: {import_runs} fresh interpreters each", file=sys.stderr)
        here = impls[DTLS_OSSL].argv
        imp["import dtls_ossl"] = import_time_ms(sys.executable, "dtls_ossl", import_runs)
        if impls[PYOPENSSL_HERE].argv:
            imp[f"import OpenSSL.SSL ({PYOPENSSL_HERE})"] = import_time_ms(
                sys.executable, "OpenSSL.SSL", import_runs
            )
        if impls[PYOPENSSL_DEBIAN].argv:
            imp[f"import OpenSSL.SSL ({PYOPENSSL_DEBIAN})"] = import_time_ms(
                SYSTEM_PYTHON, "OpenSSL.SSL", import_runs
            )
        print(f"Import time, median of {import_runs} fresh interpreters")
        w = max(len(k) for k in imp)
        print(f"  {'what':{w}}  in-process (-X importtime)  wall clock minus bare python")
        for what, t in imp.items():
            if t is None or (what == "import dtls_ossl" and here is None):
                print(f"  {what:{w}}  {'dtls_ossl not built' if 'dtls' in what else 'failed'}")
            else:
                print(f"  {what:{w}}  {t[0]:8.2f} ms {'':16} {t[1]:8.2f} ms")
        print()

    if refusal:
        print(refusal)
        _write_json(args, n, nrounds)
        return 1
    hs_rows = {j.row: j for j in hs}
    mem_rows = {j.row: j for j in mem}
    print("Targets for dtls_ossl (same OpenSSL as C, same configuration: checked above):")
    ratio_check("handshakes/s >= 0.92 x C", hs_rows.get(DTLS_OSSL), hs_rows.get(C), 0.92)
    if not args.skip_import:
        t = imp.get("import dtls_ossl") if impls[DTLS_OSSL].argv else None
        check(
            "import dtls_ossl < 5 ms",
            t[0] if t else None,
            lambda v: v < 5.0,
            f"{t[0] if t else 0:.2f} ms in-process",
        )
    if mem:
        d, c_rss, c_alloc = mem_rows.get(DTLS_OSSL), mem_rows.get(C_RSS), mem_rows.get(C_ALLOCS)
        delta = None
        if d and c_rss and d.median is not None and c_rss.median is not None:
            delta = d.median - c_rss.median
        alloc = f", C allocs {c_alloc.median:,.0f} B" if c_alloc and c_alloc.median else ""
        check(
            "memory/conn within 1 KB of C (RSS vs RSS)",
            delta,
            lambda v: v <= 1024,
            f"{delta or 0:+,.0f} B vs C RSS{alloc}",
        )
    print()
    if not args.no_callgrind:
        counts = _callgrind.report(impls, ["handshake"])
        RESULTS.notes["callgrind"] = {m: {"dtls_ossl": v[0], "C": v[1]} for m, v in counts.items()}
    _write_json(args, n, nrounds)
    return 0


def _write_json(args: argparse.Namespace, n: int, nrounds: int) -> None:
    if args.json:
        p = pacing(args)
        settings: dict[str, Any] = {"method": "whole-process" if args.whole_process else "paired"}
        if args.whole_process:
            settings |= {"handshakes_per_run": n, "rounds": nrounds}
        else:
            settings |= dataclasses.asdict(p)
        RESULTS.write(args.json, "handshake", settings)


if __name__ == "__main__":
    sys.exit(main())
