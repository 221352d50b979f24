"""``dtls-ossl-conformance target`` against endpoints started here, and the rest of its command.

Targets: ``dtls-ossl server`` and ``openssl s_server`` started per scenario (--server-cmd), a
running ``dtls-ossl server`` (--server HOST:PORT), ``dtls-ossl client`` (--client-cmd), and a
deliberately faulty server (one that accepts any client certificate) that the
wrong-certificate scenario must catch.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dtls_ossl.cli import main as dtls_ossl_main
from dtls_ossl_conformance._names import CACHE_ENV
from dtls_ossl_conformance.cli import main

pytestmark = pytest.mark.timeout(120)

PY = shlex.quote(sys.executable)
OUR_SERVER = f"exec {PY} -m dtls_ossl server --port {{port}} --cert {{cert}} --key {{key}}"


def report(directory: Path) -> dict[str, dict[str, object]]:
    """The cells of report.json by id; junit.xml is there and well formed."""
    doc = json.loads((directory / "report.json").read_text())
    ET.parse(directory / "junit.xml")
    return {c["id"]: c for c in doc["cells"]}


def checks(cell: dict[str, object]) -> dict[str, str]:
    found = cell["checks"]
    assert isinstance(found, list)
    return {c["name"]: c["status"] for c in found}


def test_server_cmd_dtls_ossl_server(tmp_path: Path) -> None:
    cmd = f"{OUR_SERVER} --fingerprint {{fingerprint}}"
    args = ["target", "--server-cmd", cmd, "--echo", "--report", str(tmp_path)]
    scenarios = "SRTP_AEAD_AES_128_GCM,lossy,wrong-certificate"
    assert main([*args, "--scenarios", scenarios]) == 0
    cells = report(tmp_path)
    assert sorted(cells) == [
        "target/client/SRTP_AEAD_AES_128_GCM/ecdsa-p256",
        "target/client/SRTP_AEAD_AES_128_GCM/rsa-2048",
        "target/client/lossy/rsa-2048",
        "target/client/wrong-certificate/ecdsa-p256",
    ]
    assert all(c["status"] == "passed" for c in cells.values())
    assert checks(cells["target/client/SRTP_AEAD_AES_128_GCM/ecdsa-p256"])["app_data"] == "pass"
    assert checks(cells["target/client/wrong-certificate/ecdsa-p256"]) == {
        "refused": "pass",
        "fatal_alert": "pass",
        "no_app_data": "pass",
    }


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_server_cmd_openssl_s_server_keying_material(tmp_path: Path) -> None:
    cmd = (
        "exec openssl s_server -dtls1_2 -accept {host}:{port} -naccept 1 -cert {cert} "
        "-key {key} -verify 1 -use_srtp {profiles} -keymatexport EXTRACTOR-dtls_srtp "
        "-keymatexportlen {keymatlen}"
    )
    args = ["target", "--server-cmd", cmd, "--report", str(tmp_path)]
    assert main([*args, "--scenarios", "handshake"]) == 0
    cells = report(tmp_path)
    assert len(cells) == 8  # 4 SRTP profiles x 2 certificate types
    for cell in cells.values():
        assert checks(cell)["keying_material"] == "pass", cell


def test_server_address_with_fingerprint(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dtls_ossl",
            "server",
            "--port",
            "0",
            "--insecure-no-fingerprint-check",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        fingerprint = server.stdout.readline().strip().removeprefix("a=fingerprint:")
        address = re.search(r"udp (\S+:\d+)", server.stdout.readline())
        assert address is not None
        args = ["target", "--server", address.group(1), "--fingerprint", fingerprint]
        args += ["--echo", "--report", str(tmp_path), "--scenarios", "SRTP_AES128_CM_SHA1_80"]
        assert main(args) == 0
        cells = report(tmp_path)
        assert len(cells) == 2
        assert all(checks(c)["fingerprint"] == "pass" for c in cells.values())
        # No fingerprint given: the certificate is accepted unchecked, and said so.
        args = ["target", "--server", address.group(1), "--scenarios", "rsa-2048"]
        assert main([*args, "--report", str(tmp_path)]) == 0
        # (drop-each, an rsa-2048 scenario too, checks recovery and no fingerprint)
        cells = report(tmp_path)
        assert {checks(c)["fingerprint"] for c in cells.values() if "drop" not in str(c)} == {"n/a"}
    finally:
        server.terminate()
        server.wait(10)


def test_client_cmd_dtls_ossl_client(tmp_path: Path) -> None:
    cmd = (
        f"exec {PY} -m dtls_ossl client {{host}} {{port}} --fingerprint {{fingerprint}} "
        "--cert {cert} --key {key} --export-srtp"
    )
    args = ["target", "--client-cmd", cmd, "--report", str(tmp_path)]
    scenarios = "SRTP_AES128_CM_SHA1_80,wrong-certificate,close-notify,browser-hello"
    assert main([*args, "--scenarios", scenarios]) == 0
    cells = report(tmp_path)
    assert sorted(cells) == [  # browser-hello is for server targets only
        "target/server/SRTP_AES128_CM_SHA1_80/ecdsa-p256",
        "target/server/SRTP_AES128_CM_SHA1_80/rsa-2048",
        "target/server/close-notify/ecdsa-p256",
        "target/server/wrong-certificate/ecdsa-p256",
    ]
    # The client ends after its handshake: its close_notify is seen.
    assert checks(cells["target/server/close-notify/ecdsa-p256"]) == {
        "target_close_notify": "pass",
        "our_close_notify": "n/a",
    }


def test_faulty_server_accepting_any_certificate_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The template names {fingerprint} (so the scenario runs) but the server ignores it.
    cmd = f": {{fingerprint}}; {OUR_SERVER} --insecure-no-fingerprint-check"
    args = ["target", "--server-cmd", cmd, "--report", str(tmp_path)]
    assert main([*args, "--scenarios", "wrong-certificate"]) == 1
    (cell,) = report(tmp_path).values()
    assert cell["status"] == "failed"
    assert checks(cell)["refused"] == "fail"
    assert "completed the handshake with a certificate it was not told" in capsys.readouterr().out
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    assert junit.find(".//failure") is not None


def test_target_that_never_answers_fails_in_bounded_time(tmp_path: Path) -> None:
    started = time.monotonic()
    args = ["target", "--server-cmd", "exec sleep 60", "--timeout", "1", "--scenarios"]
    assert main([*args, "SRTP_AES128_CM_SHA1_80", "--report", str(tmp_path)]) == 1
    assert all(c["status"] == "failed" for c in report(tmp_path).values())
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--server-cmd", "x", "--fingerprint", "sha-256 00"], "--fingerprint"),
        (["--server", "127.0.0.1:1", "--scenarios", "nope"], "matches no scenario"),
        (["--server", "nohostport"], "HOST:PORT"),
    ],
)
def test_target_argument_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["target", *argv]) == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------- install-peers, the alias


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_install_peers_is_idempotent_and_uses_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("OpenSSL")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env-cache"))
    cache = tmp_path / "cache"
    for _ in range(2):
        assert main(["install-peers", "openssl", "pyopenssl", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"install-peers: peer cache {cache}" in out
    assert "install-peers: openssl: openssl present" in out
    assert out[-1] == "install-peers: done"
    assert cache.is_dir() and not (tmp_path / "env-cache").exists()


def test_install_peers_rejects_unknown_peer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install-peers", "nosuchstack"]) == 2
    assert "unknown peer nosuchstack" in capsys.readouterr().err


def test_alias_without_the_harness_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "dtls_ossl_conformance.cli", None)
    assert dtls_ossl_main(["conformance", "--list"]) == 2
    err = capsys.readouterr().err
    assert "python -m pip install dtls-ossl-conformance" in err


def test_alias_runs_the_harness(capsys: pytest.CaptureFixture[str]) -> None:
    assert dtls_ossl_main(["conformance", "install-peers", "nosuchstack"]) == 2
    assert dtls_ossl_main(["conformance", "--peers", "nosuchstack"]) == 2
    assert "unknown peer nosuchstack" in capsys.readouterr().err


def test_faulty_server_that_never_resends_is_caught(tmp_path: Path) -> None:
    relay = shlex.quote(str(Path(__file__).with_name("no_resend_relay.py")))
    cmd = (
        f"exec {PY} {relay} {{port}} -- {PY} -m dtls_ossl server --port {{{{inner}}}} "
        "--cert {cert} --key {key} --fingerprint {fingerprint}"
    )
    args = ["target", "--server-cmd", cmd, "--timeout", "3", "--report", str(tmp_path)]
    assert main([*args, "--scenarios", "drop-each,retransmit-schedule"]) == 1
    cells = report(tmp_path)
    drop = cells["target/client/drop-each/rsa-2048"]
    schedule = cells["target/client/retransmit-schedule/ecdsa-p256"]
    assert drop["status"] == schedule["status"] == "failed"
    assert "never retransmitted" in str(drop["reason"])
    assert "RFC 6347 §4.2.4" in str(drop["reason"])
    assert checks(schedule)["retransmits"] == "fail"


def test_targets_matrix_compare_is_exact() -> None:
    from dtls_ossl._roles import Role
    from dtls_ossl_conformance._model import CellKind, CellResult, CellSpec, Status
    from dtls_ossl_conformance.targets_matrix import Expected, compare

    def result(kind: CellKind, status: Status, reason: str = "") -> CellResult:
        spec = CellSpec("p", Role.CLIENT, kind, None, "ecdsa-p256")
        return CellResult(spec, status, reason=reason)

    known = {"p/client/drop-each/ecdsa-p256": Expected("why", "never retransmitted")}
    drop_failed = result(CellKind.DROP_EACH, Status.FAILED, "x never retransmitted y")
    assert compare([drop_failed], known) == []
    assert "expected to fail" in compare([result(CellKind.DROP_EACH, Status.PASSED)], known)[0]
    assert "not as expected" in compare([result(CellKind.DROP_EACH, Status.FAILED, "z")], known)[0]
    assert "unexpected" in compare([result(CellKind.LOSSY, Status.FAILED, "z")], known)[0]
    assert "skipped" in compare([result(CellKind.LOSSY, Status.SKIPPED, "gone")], known)[0]


def test_server_cmd_close_notify_browser_hello_dtls10(tmp_path: Path) -> None:
    cmd = f"{OUR_SERVER} --fingerprint {{fingerprint}}"
    args = ["target", "--server-cmd", cmd, "--echo", "--report", str(tmp_path)]
    assert main([*args, "--scenarios", "close-notify,browser-hello,dtls10-refused"]) == 0
    cells = report(tmp_path)
    assert checks(cells["target/client/close-notify/ecdsa-p256"]) == {
        "echo": "pass",
        "target_close_notify": "n/a",  # an echo server does not close by itself
        "answered": "pass",
        "no_data_after": "pass",
    }
    assert checks(cells["target/client/browser-hello/ecdsa-p256"]) == {
        "chromium": "pass",
        "firefox": "pass",
    }
    assert checks(cells["target/client/dtls10-refused/ecdsa-p256"]) == {"refused": "pass"}
