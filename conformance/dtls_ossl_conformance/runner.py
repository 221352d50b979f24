"""The conformance matrix: which peers exist, and running their cells one by one."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TextIO

from dtls_ossl import __version__, openssl_version
from dtls_ossl.webrtc.srtp import SrtpProfile
from dtls_ossl_conformance._cell import CellContext, Identities
from dtls_ossl_conformance._model import (
    CellFailure,
    CellKind,
    CellResult,
    CheckStatus,
    Deadline,
    Negotiated,
    Status,
)
from dtls_ossl_conformance._peer import Peer
from dtls_ossl_conformance.report import RunReport, cell_line, summary, write_json, write_junit

__all__ = ["DEFAULT_TIMEOUT", "all_peers", "run_matrix"]

DEFAULT_TIMEOUT = 10.0
"Seconds one cell may take (a browser cell gets a multiple)."
LOSSY_FACTOR = 3.0
"A lossy cell may take this multiple: the peers' own retransmission timers start at 1 s."

_AES_CM = (SrtpProfile.AES128_CM_SHA1_80, SrtpProfile.AES128_CM_SHA1_32)


def all_peers() -> list[Peer]:
    """Every peer the harness knows, in the order they run."""
    from dtls_ossl_conformance.peer_aiortc import AiortcPeer
    from dtls_ossl_conformance.peer_aiortc_browser import AiortcBrowserPeer
    from dtls_ossl_conformance.peer_chromium import ChromiumPeer
    from dtls_ossl_conformance.peer_firefox import FirefoxPeer
    from dtls_ossl_conformance.peer_gnutls import GnuTLSPeer
    from dtls_ossl_conformance.peer_mbedtls import MbedTLSPeer
    from dtls_ossl_conformance.peer_openssl import OpenSSLPeer
    from dtls_ossl_conformance.peer_pion import PionPeer
    from dtls_ossl_conformance.peer_pyopenssl import PyOpenSSLPeer
    from dtls_ossl_conformance.peer_werift import WeriftPeer
    from dtls_ossl_conformance.peer_wolfssl import WolfSSLPeer

    return [
        OpenSSLPeer(),
        PyOpenSSLPeer(),
        GnuTLSPeer(),
        ChromiumPeer(),
        MbedTLSPeer(),
        WolfSSLPeer(),
        FirefoxPeer(),
        AiortcPeer(),
        AiortcBrowserPeer("chromium"),
        AiortcBrowserPeer("firefox"),
        PionPeer(),
        WeriftPeer(),
    ]


def _run_cell(peer: Peer, ctx: CellContext) -> CellResult:
    started = time.monotonic()
    result = CellResult(ctx.spec, Status.FAILED)
    try:
        outcome = peer.run(ctx)
    except CellFailure as exc:
        result.reason = str(exc)
        result.log = ctx.log()
    except Exception as exc:  # a bug in the harness or the library: report, never crash
        result.reason = f"{type(exc).__name__}: {exc}"
        result.log = f"{traceback.format_exc()}\n{ctx.log()}"
    else:
        result.checks = outcome.checks
        result.ours = outcome.ours
        result.theirs = outcome.theirs
        result.handshake_time = outcome.handshake_time
        result.log = outcome.log
        failed = [c for c in outcome.checks if c.status is CheckStatus.FAIL]
        if not outcome.checks:
            result.reason = "no check was made"
        elif failed:
            result.reason = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        else:
            result.status = Status.PASSED
    finally:
        ctx.cleanup()
    result.duration = time.monotonic() - started
    return result


def run_matrix(
    peers: Sequence[Peer],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    out: TextIO,
    report_dir: str | None = None,
) -> RunReport:
    """Run every cell of ``peers`` in order, printing a live line per cell and a summary.

    Writes ``report.json`` and ``junit.xml`` into ``report_dir`` (created) when given.
    """
    started = time.monotonic()
    report = RunReport(
        peers={},
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        our_version=f"dtls_ossl {__version__} ({openssl_version()})",
    )
    plan = []
    for peer in peers:
        avail = peer.availability()
        report.peers[peer.name] = avail
        plan += [(peer, avail, spec) for spec in peer.cells()]
    print(f"{report.our_version}: {len(plan)} cells", file=out, flush=True)
    peer_width = max([9, *(len(spec.peer) for _, _, spec in plan)])
    identities = Identities()
    explained: set[str] = set()
    for index, (peer, avail, spec) in enumerate(plan, 1):
        if not avail.available:
            result = CellResult(spec, Status.SKIPPED, reason=avail.reason, install=avail.install)
            result.ours = Negotiated()
        else:
            slow = spec.kind in (CellKind.LOSSY, CellKind.DROP_EACH, CellKind.RETRANSMIT_SCHEDULE)
            factor = peer.cell_timeout_factor * (LOSSY_FACTOR if slow else 1)
            deadline = Deadline(timeout * factor)
            result = _run_cell(peer, CellContext(spec, deadline, identities))
        report.results.append(result)
        explain = spec.peer not in explained
        explained.add(spec.peer)
        line = cell_line(index, len(plan), result, explain_skip=explain, peer_width=peer_width)
        print(line, file=out, flush=True)
    report.duration = time.monotonic() - started
    summary(report, out)
    if report_dir is not None:
        os.makedirs(report_dir, exist_ok=True)
        write_json(report, os.path.join(report_dir, "report.json"))
        write_junit(report, os.path.join(report_dir, "junit.xml"))
        print(f"reports: {report_dir}/report.json, {report_dir}/junit.xml", file=out)
    return report
