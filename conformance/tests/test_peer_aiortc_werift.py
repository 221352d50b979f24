"""The aiortc and werift peers: every cell passes where the peer is installed."""

from __future__ import annotations

import io

import pytest

from dtls_ossl_conformance import Status, run_matrix
from dtls_ossl_conformance._peer import Peer
from dtls_ossl_conformance.peer_aiortc import AiortcPeer
from dtls_ossl_conformance.peer_werift import WeriftPeer


@pytest.mark.parametrize("peer", [AiortcPeer(), WeriftPeer()], ids=lambda p: p.name)
def test_peer_cells_pass(peer: Peer) -> None:
    avail = peer.availability()
    if not avail.available:
        pytest.skip(f"{peer.name}: {avail.reason}")
    report = run_matrix([peer], out=io.StringIO())
    failed = [(r.spec.id, r.reason) for r in report.results if r.status is not Status.PASSED]
    assert not failed
    names = {c.name for r in report.results for c in r.checks}
    assert {"keying_material", "app_data", "fail_closed"} <= names
    if peer.name == "aiortc":
        assert "srtp_both_ways" in names
