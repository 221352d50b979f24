"""Chromium and Firefox against aiortc on dtls_ossl, in a lo-only network namespace.

These are the conformance harness's ``aiortc-chromium`` and ``aiortc-firefox`` cells
(conformance/dtls_ossl_conformance/peer_aiortc_browser.py), run here one by one: each runs
``python -m dtls_ossl_conformance._aiortc_browser_cell`` under ``unshare -n`` (root only), so the
browser, aiortc and everything between them share a namespace whose only interface is ``lo``.
aiortc answers the browser's offer (fake microphone and one data channel) with
``dtls_ossl.aiortc.install()`` in force, in the DTLS role the test chooses; the cell checks
the data channel both ways, audio both ways, and that a wrong fingerprint fails closed.
"""

from __future__ import annotations

import pytest

from dtls_ossl._roles import Role
from dtls_ossl_conformance._cell import CellContext, Identities
from dtls_ossl_conformance._model import CellKind, CellSpec, CheckStatus, Deadline
from dtls_ossl_conformance.peer_aiortc_browser import AiortcBrowserPeer

CELL_TIMEOUT = 25.0
"Seconds one cell may take (the page posts its result sooner once everything has flowed)."

pytestmark = [pytest.mark.browser, pytest.mark.timeout(CELL_TIMEOUT + 60)]


def run_cell(browser: str, role: Role, kind: CellKind) -> None:
    """Run one harness cell; fail with its failed checks (and the browser's log)."""
    peer = AiortcBrowserPeer(browser)
    avail = peer.availability()
    if not avail.available:
        pytest.skip(f"{avail.reason} ({avail.install})")
    spec = CellSpec(peer.name, role, kind, None, "ecdsa-p256")
    assert spec in peer.cells()
    ctx = CellContext(spec, Deadline(CELL_TIMEOUT), Identities())
    try:
        outcome = peer.run(ctx)
    finally:
        ctx.cleanup()
    failed = [c for c in outcome.checks if c.status is not CheckStatus.PASS]
    assert outcome.checks, "no check was made"
    assert not failed, f"{failed}; ours {outcome.ours}; theirs {outcome.theirs}; {outcome.log}"


@pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER], ids=["aiortc_client", "aiortc_server"])
@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_browser_data_channel_and_audio_both_ways(browser: str, role: Role) -> None:
    run_cell(browser, role, CellKind.DATA_AND_AUDIO)


@pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER], ids=["aiortc_client", "aiortc_server"])
@pytest.mark.parametrize("browser", ["chromium", "firefox"])
def test_browser_wrong_fingerprint_fails_closed(browser: str, role: Role) -> None:
    run_cell(browser, role, CellKind.WRONG_FINGERPRINT)
