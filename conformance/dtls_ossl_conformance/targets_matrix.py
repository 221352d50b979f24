"""``dtls-ossl-conformance targets-matrix``: ``target``'s scenarios against each matrix peer.

Each peer of the interop matrix is made the endpoint under test, started by its own launch code
(the ``_Endpoint`` of its ``peer_*.py``) as a server target, and as a client target where that
tells something more. ``openssl`` also runs through ``--server-cmd``, the way a user's command
runs. The results are compared with :data:`EXPECTED`: the known defects of the peers, each with
its reason and RFC section. Exit status 0 only when the results match it exactly: every
expected failure failed (with its evidence in the failure) and nothing else failed or skipped.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TextIO

from dtls_ossl._roles import Role
from dtls_ossl_conformance._model import CellKind, CellResult, Status
from dtls_ossl_conformance._names import PROG
from dtls_ossl_conformance._peer import Peer
from dtls_ossl_conformance.target import TargetPeer, TargetSettings

__all__ = [
    "CASES",
    "DESCRIPTION",
    "EXPECTED",
    "Case",
    "Expected",
    "add_arguments",
    "compare",
    "run",
]

_OPENSSL_CMD = (
    "exec openssl s_server -dtls1_2 -accept {host}:{port} -naccept 1 -cert {cert} -key {key} "
    "-verify 1 -use_srtp {profiles} -keymatexport EXTRACTOR-dtls_srtp -keymatexportlen {keymatlen}"
)
"OpenSSL's server as a user would point ``target --server-cmd`` at it (the README's example)."

_QUICK = (
    "SRTP_AES128_CM_SHA1_80",
    "drop-each",
    "retransmit-schedule",
    "hostile-records",
    "small-mtu",
    "duplicated-reordered",
    "close-notify",
)
"The scenarios run per case by default: one profile's handshakes and the robustness ones."


@dataclass(frozen=True)
class Case:
    """One target of the matrix: a peer in one role, with the scenarios run against it."""

    peer: str
    "The matrix peer's name (``openssl-cmd``: openssl through ``--server-cmd``)."
    our_role: Role
    "Our role: CLIENT makes the peer a server target."
    scenarios: tuple[str, ...] = _QUICK

    @property
    def label(self) -> str:
        """``peer (server)``: the target's own role."""
        theirs = "server" if self.our_role is Role.CLIENT else "client"
        return f"{self.peer} ({theirs})"


CASES: tuple[Case, ...] = (
    Case("openssl-cmd", Role.CLIENT),
    Case("openssl", Role.SERVER),
    Case("pyopenssl", Role.CLIENT),
    Case("pyopenssl", Role.SERVER),
    Case("gnutls", Role.CLIENT),
    Case("gnutls", Role.SERVER),
    Case("mbedtls", Role.CLIENT),
    Case("mbedtls", Role.SERVER),
    Case("wolfssl", Role.CLIENT),
    # wolfSSL's 1.3-capable client: the seeded lossy path reorders its server's flight.
    Case("wolfssl", Role.SERVER, (*_QUICK, "lossy")),
    Case("aiortc", Role.CLIENT),
    Case("aiortc", Role.SERVER),
    Case("pion", Role.CLIENT),
    Case("pion", Role.SERVER),
    Case("werift", Role.CLIENT),
    Case("werift", Role.SERVER),
)
"Every target run by default, in order."


_NO_ANSWER = r"waiting for the handshake|handshake did not complete within"
"A handshake that timed out: the cell's deadline, or our own handshake timeout, came first."


@dataclass(frozen=True)
class Expected:
    """A known defect: the cell must fail, and its failure must match ``evidence``."""

    reason: str
    evidence: str
    "A regular expression the cell's failure reason must match."


EXPECTED: dict[str, Expected] = {
    "gnutls/client/hostile-records/ecdsa-p256": Expected(
        "gnutls-serv 3.7.9 (UDP mode) goes silent when any one hostile datagram (random bytes, "
        "a record longer than its datagram, a forged epoch-1 record) comes ahead of the first "
        "ClientHello: no HelloVerifyRequest, no answer to the real ClientHellos after it "
        "(RFC 6347 §4.1.2.7: invalid records are discarded)",
        _NO_ANSWER,
    ),
    "gnutls/server/drop-each/rsa-2048": Expected(
        "gnutls-cli 3.7.9 never resends its second flight (Certificate ... Finished) when it is "
        "lost: neither on its own timer nor when our ServerHello flight comes again, for 6 s "
        "(RFC 6347 §4.2.4; observed, its cause inside GnuTLS not traced)",
        "never retransmitted",
    ),
    "gnutls/server/hostile-records/ecdsa-p256": Expected(
        "gnutls-cli 3.7.9 stops answering after an epoch-0 handshake record whose declared "
        "length (900) runs past its datagram (the other hostile datagrams it discards): RFC "
        "6347 §4.1.2.7 says such a record is discarded",
        _NO_ANSWER,
    ),
    "mbedtls/client/hostile-records/ecdsa-p256": Expected(
        "Mbed TLS 2.28's server (ssl_server2) takes the first datagram of a new client as its "
        "ClientHello: any one hostile datagram ahead of it ends the handshake with "
        "MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO (or an internal error) instead of being discarded "
        "(RFC 6347 §4.1.2.7)",
        "mbedtls_ssl_handshake returned",
    ),
    "pion/server/hostile-records/ecdsa-p256": Expected(
        "pion/dtls 2.2.6's client, as its server: the handshake ends on a record whose "
        "declared length runs past the datagram (RFC 6347 §4.1.2.7)",
        "pion",
    ),
    "pion/client/hostile-records/ecdsa-p256": Expected(
        "pion/dtls 2.2.6 ends the handshake on a datagram that is not whole records (random "
        "bytes, or a record whose declared length runs past the datagram: 'packet length and "
        "declared length do not match', an error it calls temporary) instead of discarding it "
        "(RFC 6347 §4.1.2.7); forged epoch-1 records it does discard",
        "pion",
    ),
    "wolfssl/client/drop-each/rsa-2048": Expected(
        "wolfSSL 5.5.4's server never resends its last flight (ChangeCipherSpec, Finished) "
        "when our final flight comes again: RFC 6347 §4.2.4 says it MUST",
        "never retransmitted",
    ),
    "wolfssl/client/hostile-records/ecdsa-p256": Expected(
        "wolfSSL 5.5.4's version-negotiating server (-v d) stops answering after an epoch-0 "
        "handshake record whose length runs past its datagram (which it acknowledges with a "
        "DTLS 1.3 ACK record, content type 26, before any version was agreed) or a forged "
        "epoch-1 handshake record: RFC 6347 §4.1.2.7 says an invalid record is discarded; "
        "random bytes and forged epoch-1 application data and alerts it discards",
        _NO_ANSWER,
    ),
    "wolfssl/server/hostile-records/ecdsa-p256": Expected(
        "wolfSSL 5.5.4's client exits on any one malformed or forged record instead of "
        "discarding it (RFC 6347 §4.1.2.7): a record longer than its datagram or a forged "
        "epoch-1 handshake record -310 (not enough data), forged epoch-1 application data -373 "
        "(out of order message, fatal), a forged epoch-1 alert -132 (buffer error); random "
        "bytes it discards",
        "wolfSSL client exited",
    ),
    "wolfssl/server/duplicated-reordered/rsa-2048": Expected(
        "wolfSSL 5.5.4's version-negotiating client aborts with BAD_STATE_E (-192) when our "
        "ServerHello flight's second datagram comes first (RFC 6347 §4.2.2): as in lossy",
        "-192",
    ),
    "pion/server/duplicated-reordered/rsa-2048": Expected(
        "pion/dtls 2.2.6's client answers our ServerHello flight with its second datagram first "
        "by a fatal internal_error alert instead of buffering it (RFC 6347 §4.2.2); each "
        "datagram twice in order it handles",
        "internal_error",
    ),
    "werift/server/duplicated-reordered/rsa-2048": Expected(
        "werift-dtls 0.5.8's client loses our CertificateRequest when its two fragments (over "
        "two datagrams) come last fragment first and twice: it answers with ClientKeyExchange "
        "as message_seq 1, without its Certificate and CertificateVerify, which our server "
        "rejects (unexpected_message). RFC 6347 §4.2.3: fragments are reassembled in any order",
        "unexpected message",
    ),
    "wolfssl/server/lossy/rsa-2048": Expected(
        "wolfSSL 5.5.4's version-negotiating client (-v d) aborts with BAD_STATE_E (-192) on "
        "an out-of-order server flight instead of buffering it: RFC 6347 §4.2.2",
        "exited",
    ),
}
"Known defects, by cell id, with their reason: the only failures the run may have."


DESCRIPTION = __doc__.split("\n\n", 1)[1] + (
    "\nExit status: 0 when the results match the expectations exactly, 1 otherwise, 2 for bad\n"
    "arguments."
)


def _peer(name: str) -> Peer:
    from dtls_ossl_conformance.runner import all_peers

    for peer in all_peers():
        if peer.name == name:
            return peer
    raise ValueError(f"unknown peer {name!r}")


def target_for(case: Case) -> TargetPeer:
    """Make the TargetPeer that runs ``case``: the peer's own launch code, or a command."""
    if case.peer == "openssl-cmd":
        t = TargetPeer(TargetSettings(server_cmd=_OPENSSL_CMD), case.scenarios)
        t.name = case.peer
        return t
    import importlib

    peer = _peer(case.peer)
    module = importlib.import_module(type(peer).__module__)
    return TargetPeer(
        TargetSettings(),
        case.scenarios,
        peer=peer,
        role=case.our_role,
        endpoint=module._Endpoint,
    )


def compare(results: Sequence[CellResult], expected: dict[str, Expected]) -> list[str]:
    """Every way ``results`` differ from ``expected``: one line each (empty: they match)."""
    problems = []
    for r in results:
        want = expected.get(r.spec.id)
        if r.status is Status.SKIPPED:
            problems.append(f"{r.spec.id}: skipped: {r.reason}")
        elif want is None and r.status is Status.FAILED:
            problems.append(f"{r.spec.id}: unexpected failure: {r.reason}")
        elif want is not None and r.status is Status.PASSED:
            problems.append(f"{r.spec.id}: passed, but expected to fail ({want.reason})")
        elif want is not None and not re.search(want.evidence, r.reason):
            problems.append(
                f"{r.spec.id}: failed, but not as expected ({want.evidence!r} not in: {r.reason})"
            )
    return problems


_COLUMNS = (
    "handshake",
    "lossy",
    "drop-each",
    "retransmit-schedule",
    "hostile-records",
    "small-mtu",
    "duplicated-reordered",
    "close-notify",
)


def _cell_text(results: list[CellResult], expected: dict[str, Expected]) -> str:
    if not results:
        return "-"
    failed = [r for r in results if r.status is not Status.PASSED]
    if not failed:
        return "pass"
    known = all(r.spec.id in expected and r.status is Status.FAILED for r in failed)
    return "FAIL (known)" if known else "FAIL"


def table(
    cases: Sequence[Case], results: dict[Case, list[CellResult]], expected: dict[str, Expected]
) -> str:
    """Render the targets x scenarios table (Markdown), then the known defects that showed."""
    lines = [
        "| target | " + " | ".join(_COLUMNS) + " |",
        "|---" * (len(_COLUMNS) + 1) + "|",
    ]
    for case in cases:
        rs = results.get(case, [])
        cells = []
        for col in _COLUMNS:
            kind = CellKind.HANDSHAKE if col == "handshake" else CellKind(col)
            cells.append(_cell_text([r for r in rs if r.spec.kind is kind], expected))
        lines.append(f"| {case.label} | " + " | ".join(cells) + " |")
    shown = [r.spec.id for rs in results.values() for r in rs if r.spec.id in expected]
    if shown:
        lines.append("")
        lines += [f"- {cid}: {expected[cid].reason}" for cid in shown]
    return "\n".join(lines)


def _run_case(case: Case, timeout: float) -> tuple[list[CellResult], str]:
    from dtls_ossl_conformance.runner import run_matrix

    out = io.StringIO()
    started = time.monotonic()
    report = run_matrix([target_for(case)], timeout=timeout, out=out)
    took = time.monotonic() - started
    return report.results, f"== {case.label}: {took:.1f} s\n{out.getvalue()}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add --targets, --jobs, --timeout and --report."""
    from dtls_ossl_conformance.command import _seconds
    from dtls_ossl_conformance.runner import DEFAULT_TIMEOUT

    p.add_argument("--targets", metavar="A,B", help="only these peers (default: all)")
    p.add_argument(
        "--jobs", type=int, default=3, metavar="N", help="targets run at once (default: 3)"
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds one scenario may take (default: {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--report", metavar="DIR", help="write report.json and junit.xml into DIR")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the cases, print their lines and the table; 1 unless they match :data:`EXPECTED`."""
    out = out or sys.stdout
    wanted = {s.strip() for s in (args.targets or "").split(",") if s.strip()}
    cases = [c for c in CASES if not wanted or c.peer in wanted]
    if not cases:
        print(f"{PROG}: error: --targets matches no target", file=sys.stderr)
        return 2
    started = time.monotonic()
    results: dict[Case, list[CellResult]] = {}
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = {c: pool.submit(_run_case, c, args.timeout) for c in cases}
        for case in cases:
            rs, text = futures[case].result()
            results[case] = rs
            print(text, file=out, end="", flush=True)
    everything = [r for c in cases for r in results[c]]
    if args.report:
        _write_reports(args.report, cases, everything)
    print(table(cases, results, EXPECTED), file=out)
    problems = compare(everything, EXPECTED)
    took = time.monotonic() - started
    if problems:
        print(f"targets-matrix: {len(problems)} result(s) differ from the expectations:", file=out)
        for line in problems:
            print(f"  {line}", file=out)
        print(f"targets-matrix: FAILED in {took:.1f} s", file=out)
        return 1
    known = sum(r.spec.id in EXPECTED for r in everything)
    print(
        f"targets-matrix: {len(everything)} scenarios as expected ({known} known defects) "
        f"in {took:.1f} s",
        file=out,
    )
    return 0


def _write_reports(directory: str, cases: Sequence[Case], results: list[CellResult]) -> None:
    import os
    from datetime import datetime, timezone

    from dtls_ossl import __version__, openssl_version
    from dtls_ossl_conformance.report import RunReport, write_json, write_junit

    report = RunReport(
        peers={c.peer: target_for(c).availability() for c in cases},
        results=results,
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        our_version=f"dtls_ossl {__version__} ({openssl_version()})",
    )
    os.makedirs(directory, exist_ok=True)
    write_json(report, os.path.join(directory, "report.json"))
    write_junit(report, os.path.join(directory, "junit.xml"))
