"""1200-byte records/s, client to server, through an established in-memory DTLS 1.2 pair.

Rows: the C baseline (SSL_write, BIO_read, BIO_write, SSL_read), dtls_ossl through the
per-datagram API (send, datagrams_to_send, receive_datagram, next_event) and through the batch
API (send_many/receive_datagrams, many records per call), and pyOpenSSL under this interpreter
(PyPI wheel, its own OpenSSL) and under /usr/bin/python3 (Debian, system OpenSSL). Figures are
medians of interleaved rounds.

    python benchmarks/records.py            # full run, 5 rounds
    python benchmarks/records.py --quick    # smoke run

Targets (issue): per-datagram >= 0.70 x C and > 2 x pyOpenSSL; batch of 64 >= 0.85 x C. The
verdicts are on the median of the per-round ratios, shown with their quartiles and min..max;
the stable secondary figure, instructions per record counted by callgrind for dtls_ossl and C,
follows (unless --no-callgrind; benchmarks/_callgrind.py).
"""

from __future__ import annotations

import sys

import _callgrind
from _common import (
    DTLS_OSSL,
    PYOPENSSL_DEBIAN,
    PYOPENSSL_HERE,
    C,
    Job,
    check,
    discover,
    like_for_like,
    parser,
    print_machine,
    print_table,
    ratio,
    ratio_check,
    rounds,
    run_interleaved,
    with_mtu,
)
from _dtls_ossl_peer import records_mtu


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--records", type=int, help="records per run (default 200000, quick 10000)")
    p.add_argument("--size", type=int, default=1200, help="record payload bytes (default 1200)")
    p.add_argument("--batch", type=int, default=64, help="records per batch call (default 64)")
    args = p.parse_args()
    n = args.records or (10000 if args.quick else 200000)
    size = str(args.size)
    nrounds = rounds(args)

    print_machine()
    # dtls_ossl's records runs use an MTU that fits the record (see records_mtu): C and
    # pyOpenSSL are given the same, so the configuration check compares like with like.
    impls = {impl.name: with_mtu(impl, records_mtu(args.size)) for impl in discover()}
    batch_row = f"{DTLS_OSSL} batch x{args.batch}"
    jobs = [
        Job(C, impls[C], ["records", str(n), size], "records_per_s"),
        Job(DTLS_OSSL, impls[DTLS_OSSL], ["records", str(n), size], "records_per_s"),
        Job(
            batch_row,
            impls[DTLS_OSSL],
            ["records-batch", str(n), size, str(args.batch)],
            "records_per_s",
        ),
        Job(PYOPENSSL_HERE, impls[PYOPENSSL_HERE], ["records", str(n), size], "records_per_s"),
        Job(PYOPENSSL_DEBIAN, impls[PYOPENSSL_DEBIAN], ["records", str(n), size], "records_per_s"),
    ]
    print(f"Records: {n} x {size} B per run, {nrounds} interleaved rounds", file=sys.stderr)
    run_interleaved(jobs, nrounds)
    unlike, refusal = like_for_like(jobs)
    print_table(
        f"{size}-byte records/s, one direction (median of {nrounds})",
        jobs,
        "records/s",
        refuse=(C,) if refusal else (),
        unlike=unlike,
    )
    if refusal:
        print(refusal)
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
        _callgrind.report(impls, ["records", "records-batch"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
