"""The programs under examples/ run to completion, fail when they should, and type-check.

Each example runs as a user runs it (``python examples/x.py`` in a subprocess, real UDP on
127.0.0.1) and the test checks the lines it prints and its exit status. mypy --strict and ruff
run over the directory in subprocesses too.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys
from types import ModuleType

import pytest

from dtls_ossl import Certificate

pytestmark = pytest.mark.timeout(180)

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PROFILE = "AES128_CM_SHA1_80"
FP = r"sha-256 (?:[0-9A-F]{2}:){31}[0-9A-F]{2}"


def run_example(name: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    return proc.stdout.splitlines()


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == [
        "asyncio_echo.py",
        "sansio_udp.py",
        "sfu_endpoint.py",
    ]


def test_sansio_udp_example() -> None:
    lines = run_example("sansio_udp.py")
    assert lines[:2] == [
        "alice: a=setup:actpass, peer a=setup:active -> DTLS server",
        "bob: a=setup:active, peer a=setup:actpass -> DTLS client",
    ]
    peers = {}
    for name in ("alice", "bob"):
        pattern = (
            rf"{name}: handshake complete: DTLSv1\.2 ECDHE-ECDSA-\S+, SRTP {PROFILE}, peer ({FP})"
        )
        (peers[name],) = [m[1] for m in (re.fullmatch(pattern, x) for x in lines) if m]
    assert peers["alice"] != peers["bob"]  # each printed the other's certificate fingerprint
    assert "bob: SRTP packet unprotected, payload b'hello from alice'" in lines
    assert "alice: SRTP packet unprotected, payload b'hello from bob'" in lines
    assert lines[-3:] == [
        "bob: closed cleanly by us",
        "alice: closed cleanly by peer",
        "OK: handshake, SRTP both ways, close_notify",
    ]


def test_sansio_udp_example_fails_closed_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An answer carrying another certificate's fingerprint: alice refuses bob, exit 1."""
    sansio = load("sansio_udp")
    mallory = Certificate.generate()
    real = sansio.local_description
    monkeypatch.setattr(
        sansio,
        "local_description",
        lambda cert, setup: real(mallory if setup == "active" else cert, setup),
    )
    assert sansio.main() == 1
    out, err = capsys.readouterr()
    err_lines = err.splitlines()
    assert err_lines[0].startswith("alice: FAILED: connection failed: FingerprintMismatchError: ")
    assert err_lines[1].startswith("bob: FAILED: connection failed: ")
    assert err_lines[-1] == "FAILED"
    assert "handshake complete" not in out and "SRTP packet" not in out


def test_asyncio_echo_example() -> None:
    lines = run_example("asyncio_echo.py")
    assert re.fullmatch(r"server: listening on 127\.0\.0\.1:\d+", lines[0])
    assert re.fullmatch(r"client: connected, DTLSv1\.2 ECDHE-ECDSA-\S+", lines[1])
    assert lines[2:] == [
        "client: sent b'hello', echoed b'hello'",
        "client: sent b'over', echoed b'over'",
        "client: sent b'DTLS', echoed b'DTLS'",
        "server: the peer closed cleanly (close_notify)",
        "server: handshakes completed 1",
        "OK",
    ]


def test_sfu_endpoint_example() -> None:
    lines = run_example("sfu_endpoint.py")
    port = re.fullmatch(
        r"sfu: listening on 127\.0\.0\.1:(\d+) \(STUN, DTLS and RTP on one socket\)", lines[0]
    )
    assert port is not None
    for name, ssrc in (("alice", "0x1111"), ("bob", "0x2222")):
        pattern = rf"sfu: STUN binding request from {name} at (\S+)"
        (address,) = [m[1] for m in (re.fullmatch(pattern, x) for x in lines) if m]
        assert f"{name}: STUN binding success, mapped {address}" in lines
        assert f"sfu: DTLS handshake with {name}: DTLSv1.2, SRTP AEAD_AES_128_GCM" in lines
        assert f"sfu: DTLS record from {name}: b'hello from {name}'" in lines
        assert f"{name}: DTLS record from sfu: b'welcome {name}'" in lines
        assert f"sfu: RTP from {name}: ssrc {ssrc}, seq 1, DTLS established" in lines
    assert lines[-2:] == ["sfu: routed 2 STUN, 2 DTLS handshakes, 2 RTP; dropped 0", "OK"]
    assert len(lines) == 15


def test_examples_pass_mypy_strict() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Success: no issues found in 3 source files")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_examples_pass_ruff(command: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
