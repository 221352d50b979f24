"""Tests of the conformance runner itself: cells, live lines, reports, skips, exit codes."""

from __future__ import annotations

import io
import json
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dtls_ossl._roles import Role
from dtls_ossl.cli import main
from dtls_ossl.webrtc.srtp import SrtpProfile
from dtls_ossl_conformance import Availability, CellKind, CheckStatus, Status, run_matrix
from dtls_ossl_conformance._cell import CellContext, CellOutcome
from dtls_ossl_conformance._model import CellFailure, CellSpec
from dtls_ossl_conformance._names import CACHE_ENV
from dtls_ossl_conformance._peer import Peer
from dtls_ossl_conformance.peer_gnutls import gnutls_cipher_to_openssl
from dtls_ossl_conformance.peer_openssl import OpenSSLPeer
from dtls_ossl_conformance.report import RunReport

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")


class SmallOpenSSL(OpenSSLPeer):
    """The openssl peer with one profile and one key type: 2 handshakes + 2 wrong fingerprints."""

    profiles = (SrtpProfile.AES128_CM_SHA1_80,)
    key_types = ("ecdsa-p256",)
    lossy_roles: tuple[Role, ...] = ()


class Missing(Peer):
    name = "missing"
    profiles = (SrtpProfile.AES128_CM_SHA1_80,)
    key_types = ("ecdsa-p256",)
    install = "apt-get install -y missing-peer"

    def availability(self) -> Availability:
        return Availability(False, reason="missing-peer is not installed", install=self.install)

    def run(self, ctx: CellContext) -> CellOutcome:
        raise AssertionError("a skipped peer must not run")


class Broken(Peer):
    """Fails in three ways: a failed check, a CellFailure, and a bug (an exception)."""

    name = "broken"
    profiles = (SrtpProfile.AES128_CM_SHA1_80, SrtpProfile.AES128_CM_SHA1_32)
    key_types = ("ecdsa-p256",)

    def availability(self) -> Availability:
        return Availability(True, version="broken 1.0")

    def run(self, ctx: CellContext) -> CellOutcome:
        spec = ctx.spec
        if spec.kind is CellKind.WRONG_FINGERPRINT:
            raise RuntimeError("harness bug")
        if spec.profile is SrtpProfile.AES128_CM_SHA1_32:
            raise CellFailure("peer exited early")
        out = CellOutcome()
        out.add("handshake", True)
        out.add("keying_material", False, "60 bytes DIFFER")
        return out


class Hanging(Peer):
    """Starts a program that never prints what the cell waits for."""

    name = "hanging"
    profiles = (SrtpProfile.AES128_CM_SHA1_80,)
    key_types = ("ecdsa-p256",)
    roles = OpenSSLPeer.roles[:1]
    started: ClassVar[list[Any]] = []

    def availability(self) -> Availability:
        return Availability(True, version="sleep")

    def cells(self) -> list[CellSpec]:
        return super().cells()[:1]

    def run(self, ctx: CellContext) -> CellOutcome:
        proc = ctx.spawn(["sleep", "60"])
        self.started.append(proc)
        proc.wait_for("never printed", ctx.deadline, "the peer to listen")
        raise AssertionError("unreachable")


def run(
    peers: Sequence[Peer], tmp_path: Path, timeout: float = 10.0
) -> tuple[RunReport, str, Any, ET.Element]:
    out = io.StringIO()
    report = run_matrix(peers, timeout=timeout, out=out, report_dir=str(tmp_path))
    doc = json.loads((tmp_path / "report.json").read_text())
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    return report, out.getvalue(), doc, junit


@pytest.mark.interop
@pytest.mark.timeout(60)
@needs_openssl
def test_openssl_cells_pass_and_reports_have_their_shape(tmp_path: Path) -> None:
    report, text, doc, junit = run([SmallOpenSSL()], tmp_path)
    assert report.exit_status == 0
    lines = [line for line in text.splitlines() if line.startswith("[")]
    assert len(lines) == 4
    assert lines[0].startswith("[1/4] openssl   client SRTP_AES128_CM_SHA1_80  ecdsa-p256  PASS")
    assert lines[0].endswith(" s")
    assert "wrong-fingerprint" in lines[2]
    assert "4 passed, 0 failed, 0 skipped" in text

    assert doc["summary"] == {"total": 4, "passed": 4, "failed": 0, "skipped": 0}
    assert doc["peers"][0]["name"] == "openssl" and doc["peers"][0]["available"] is True
    cell = doc["cells"][0]
    assert cell["id"] == "openssl/client/SRTP_AES128_CM_SHA1_80/ecdsa-p256"
    assert cell["status"] == "passed"
    checks = {c["name"]: c["status"] for c in cell["checks"]}
    assert checks == {
        "handshake": "pass",
        "version": "pass",
        "cipher": "pass",
        "srtp_profile": "pass",
        "keying_material": "pass",
        "fingerprint": "pass",
        "peer_saw_our_certificate": "pass",
        "app_data": "pass",
    }
    ours, peer = cell["negotiated"]["ours"], cell["negotiated"]["peer"]
    assert ours["keying_material"] == peer["keying_material"]
    assert len(bytes.fromhex(ours["keying_material"])) == 60
    assert ours["version"] == peer["version"] == "DTLSv1.2"
    assert 0 < cell["handshake_s"] < cell["duration_s"]
    wrong = {c["name"]: c["status"] for c in doc["cells"][2]["checks"]}
    assert wrong == {
        "fail_closed": "pass",
        "bad_certificate_alert": "pass",
        "no_keys": "pass",
        "peer_did_not_complete": "pass",
    }

    assert junit.tag == "testsuites"
    assert junit.get("tests") == "4" and junit.get("failures") == "0"
    (suite,) = junit.findall("testsuite")
    assert suite.get("name") == "conformance.openssl"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "client SRTP_AES128_CM_SHA1_80 ecdsa-p256",
        "server SRTP_AES128_CM_SHA1_80 ecdsa-p256",
        "client wrong-fingerprint ecdsa-p256",
        "server wrong-fingerprint ecdsa-p256",
    ]
    assert all(c.find("failure") is None and c.find("skipped") is None for c in cases)


def test_missing_peer_is_skipped_with_reason_and_install_command(tmp_path: Path) -> None:
    report, text, doc, junit = run([Missing()], tmp_path)
    assert report.exit_status == 0
    assert [r.status for r in report.results] == [Status.SKIPPED] * 4
    assert "SKIP" in text
    assert "missing-peer is not installed" in text
    assert "install: apt-get install -y missing-peer" in text
    assert doc["summary"] == {"total": 4, "passed": 0, "failed": 0, "skipped": 4}
    assert doc["peers"] == [
        {
            "name": "missing",
            "available": False,
            "version": "",
            "reason": "missing-peer is not installed",
            "install": "apt-get install -y missing-peer",
        }
    ]
    assert {c["install"] for c in doc["cells"]} == {"apt-get install -y missing-peer"}
    skipped = junit.findall("testsuite/testcase/skipped")
    assert len(skipped) == 4
    assert "install: apt-get install -y missing-peer" in skipped[0].get("message", "")


def test_failures_are_reported_and_exit_non_zero(tmp_path: Path) -> None:
    report, text, doc, junit = run([Broken()], tmp_path)
    assert report.exit_status == 1
    statuses = [c["status"] for c in doc["cells"]]
    assert statuses == ["failed"] * len(statuses)
    first = report.results[0]
    assert [c.status for c in first.checks] == [CheckStatus.PASS, CheckStatus.FAIL]
    assert "keying_material: 60 bytes DIFFER" in text
    assert "peer exited early" in text
    assert "RuntimeError: harness bug" in text
    failures = junit.findall("testsuite/testcase/failure")
    assert len(failures) == len(statuses)
    assert failures[0].get("message") == "keying_material: 60 bytes DIFFER"
    assert "Failed cells:" in text


def test_cell_is_bounded_in_time_and_its_process_stopped(tmp_path: Path) -> None:
    Hanging.started = []
    start = time.monotonic()
    report, _text, _doc, _ = run([Hanging()], tmp_path, timeout=0.5)
    assert time.monotonic() - start < 5
    (result,) = report.results
    assert result.status is Status.FAILED
    assert "cell timeout (0.5 s)" in result.reason
    (proc,) = Hanging.started
    assert proc.proc.poll() is not None  # stopped by the cell's cleanup


def test_cli_skipped_only_peers_exit_zero_and_write_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the library's alias, with an empty peer cache.
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert main(["conformance", "--peers", "werift", "--report", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["summary"]["skipped"] == doc["summary"]["total"] > 0
    assert all("is not installed" in c["reason"] for c in doc["cells"])
    assert "install: dtls-ossl-conformance install-peers werift" in capsys.readouterr().out


def test_cli_rejects_unknown_peer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--peers", "nosuchstack"]) == 2
    assert "unknown peer nosuchstack" in capsys.readouterr().err


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("openssl")
    assert "werift" in out


@pytest.mark.parametrize(
    ("description", "name"),
    [
        (
            "(DTLS1.2-X.509)-(ECDHE-SECP256R1)-(ECDSA-SHA256)-(AES-256-GCM)",
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (
            "(DTLS1.2-X.509)-(ECDHE-X25519)-(RSA-PSS-RSAE-SHA256)-(AES-128-GCM)",
            "ECDHE-RSA-AES128-GCM-SHA256",
        ),
        (
            "(DTLS1.2-X.509)-(ECDHE-X25519)-(ECDSA-SHA256)-(AES-128-CBC)-(SHA1)",
            "ECDHE-ECDSA-AES128-SHA",
        ),
        ("(DTLS1.2-X.509)-(RSA)-(AES-128-GCM)", None),
    ],
)
def test_gnutls_description_maps_to_openssl_names(description: str, name: str | None) -> None:
    assert gnutls_cipher_to_openssl(description) == name
