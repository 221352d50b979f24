"""1200-byte records/s, client to server, through an established in-memory DTLS 1.2 pair.

Rows: the C baseline (SSL_write, BIO_read, BIO_write, SSL_read), dtls_ossl through the
per-datagram API (send, datagrams_to_send, receive_datagram, next_event) and through the batch
API (send_many/receive_datagrams, many records per call), and pyOpenSSL under this interpreter
(PyPI wheel, its own OpenSSL) and under /usr/bin/python3 (Debian, system OpenSSL).

Timed in paired chunks (benchmarks/_common.py, ``run_paired``): every row is one long-lived
worker holding an established pair; chunks of records, each about 25 ms of work, run back to
back in pairs with C (the row then C, C then the row, ...) for about 18 s. The rate is the median
of the chunk rates, with their quartiles; a ratio to C is the median of the per-pair ratios.

    python benchmarks/records.py                    # full run
    python benchmarks/records.py --quick            # smoke run (3 s of pairs)
    python benchmarks/records.py --seconds 60       # more pairs; --pairs N for a fixed count
    python benchmarks/records.py --json out.json    # every rate and target, for tables
    python benchmarks/records.py --whole-process    # the older whole-process rounds

Targets (issue): per-datagram >= 0.70 x C and > 2 x pyOpenSSL; batch of 64 >= 0.85 x C. The
verdicts are on the median of the per-pair ratios, shown with the median's 95 % confidence
interval, the ratios' quartiles and min..max (INCONCLUSIVE, not PASS or FAIL, when the
interval straddles the target: run longer); the stable secondary figure,
instructions per record counted by callgrind for dtls_ossl and C, follows (unless
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
    C,
    Job,
    add_pacing_args,
    check,
    discover,
    like_for_like,
    pacing,
    parser,
    print_machine,
    print_table,
    ratio,
    ratio_check,
    rounds,
    run_interleaved,
    run_paired,
    with_mtu,
)
from _dtls_ossl_peer import records_mtu


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    add_pacing_args(p)
    p.add_argument(
        "--records", type=int, help="--whole-process: records per run (default 200000, quick 10000)"
    )
    p.add_argument("--size", type=int, default=1200, help="record payload bytes (default 1200)")
    p.add_argument("--batch", type=int, default=64, help="records per batch call (default 64)")
    args = p.parse_args()
    n = args.records or (10000 if args.quick else 200000)
    size = str(args.size)
    nrounds = rounds(args)
    pace = pacing(args)

    print_machine()
    # dtls_ossl's records runs use an MTU that fits the record (see records_mtu): C and
    # pyOpenSSL are given the same, so the configuration check compares like with like.
    impls = {impl.name: with_mtu(impl, records_mtu(args.size)) for impl in discover()}
    batch_row = f"{DTLS_OSSL} batch x{args.batch}"
    one = ["records", size]
    jobs = [
        Job(C, impls[C], ["records", str(n), size], "records_per_s", serve=one),
        Job(DTLS_OSSL, impls[DTLS_OSSL], ["records", str(n), size], "records_per_s", serve=one),
        Job(
            batch_row,
            impls[DTLS_OSSL],
            ["records-batch", str(n), size, str(args.batch)],
            "records_per_s",
            serve=["records-batch", size, str(args.batch)],
        ),
        Job(
            PYOPENSSL_HERE,
            impls[PYOPENSSL_HERE],
            ["records", str(n), size],
            "records_per_s",
            serve=one,
        ),
        Job(
            PYOPENSSL_DEBIAN,
            impls[PYOPENSSL_DEBIAN],
            ["records", str(n), size],
            "records_per_s",
            serve=one,
        ),
    ]
    if args.whole_process:
        print(f"Records: {n} x {size} B per run, {nrounds} interleaved rounds", file=sys.stderr)
        run_interleaved(jobs, nrounds)
        method = f"median of {nrounds} whole-process rounds"
    else:
        print(f"Records: {size} B, {pace.describe()}", file=sys.stderr)
        run_paired(jobs, [(j, jobs[0]) for j in jobs[1:]], pace)
        method = "median of paired chunks; ratios: median per-pair ratio"
    unlike, refusal = like_for_like(jobs)
    print_table(
        f"{size}-byte records/s, one direction ({method})",
        jobs,
        "records/s",
        refuse=(C,) if refusal else (),
        unlike=unlike,
    )
    if refusal:
        print(refusal)
        _write_json(args, n, nrounds)
        return 1

    by_row = {j.row: j for j in jobs}
    per_dgram, batch = by_row[DTLS_OSSL], by_row[batch_row]
    print("Targets for dtls_ossl (same OpenSSL as C, same configuration: checked above):")
    ratio_check("per-datagram >= 0.70 x C", per_dgram, by_row[C], 0.70)
    for name in (PYOPENSSL_DEBIAN, PYOPENSSL_HERE):
        r = ratio(per_dgram, by_row[name])
        which = impls[name].openssl or "?"
        check(f"per-datagram > 2 x {name} [{which}]", r, lambda v: v > 2.0, f"{r or 0:.2f} x")
    ratio_check(f"batch x{args.batch} >= 0.85 x C", batch, by_row[C], 0.85)
    print()
    if not args.no_callgrind:
        counts = _callgrind.report(impls, ["records", "records-batch"])
        RESULTS.notes["callgrind"] = {m: {"dtls_ossl": v[0], "C": v[1]} for m, v in counts.items()}
    _write_json(args, n, nrounds)
    return 0


def _write_json(args: argparse.Namespace, n: int, nrounds: int) -> None:
    if args.json:
        p = pacing(args)
        settings: dict[str, Any] = {
            "method": "whole-process" if args.whole_process else "paired",
            "record_size": args.size,
            "batch": args.batch,
        }
        if args.whole_process:
            settings |= {"records_per_run": n, "rounds": nrounds}
        else:
            settings |= dataclasses.asdict(p)
        RESULTS.write(args.json, "records", settings)


if __name__ == "__main__":
    sys.exit(main())
