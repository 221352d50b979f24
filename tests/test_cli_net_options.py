"""``server``/``client`` over real UDP on 127.0.0.1: rejected peers, byte-exact echo, --mtu,
--profile and --export-srtp (subprocesses, every wait bounded; see test_cli_net.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_net import (
    CLIENT_TIMEOUT,
    ROOT,
    CliCerts,
    Server,
    _env,
    assert_one_line_error,
    certs,  # noqa: F401 - a module-scoped fixture
    dtls_ossl,
)

from dtls_ossl.cli import main

pytestmark = pytest.mark.timeout(40)


def dtls_ossl_bytes(*argv: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m dtls_ossl ...`` with binary stdin/stdout (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "dtls_ossl", *argv],
        input=stdin,
        capture_output=True,
        timeout=CLIENT_TIMEOUT,
        env=_env(),
        cwd=ROOT,
        check=False,
    )


def _client(port: int, certs: CliCerts, *extra: str) -> list[str]:  # noqa: F811
    cert, key, _ = certs["client"]
    return [
        "client", "127.0.0.1", str(port), "--fingerprint", certs["server"][2],
        "--cert", cert, "--key", key, *extra,
    ]  # fmt: skip


@pytest.fixture
def server(certs: CliCerts) -> Iterator[Server]:  # noqa: F811
    cert, key, _ = certs["server"]
    srv = Server(
        "--cert", cert, "--key", key, "--fingerprint", certs["client"][2],
        "--profile", "SRTP_AES128_CM_SHA1_32,SRTP_AES128_CM_SHA1_80",
        "--profile", "SRTP_AEAD_AES_256_GCM", "--export-srtp",
    )  # fmt: skip
    yield srv
    srv.stop()


def test_server_prints_every_rejected_peer_without_verbose(
    server: Server,
    certs: CliCerts,  # noqa: F811
    tmp_path: Path,
) -> None:
    stranger_cert, stranger_key = tmp_path / "s.pem", tmp_path / "s.key"
    made = dtls_ossl("cert", "--out-cert", str(stranger_cert), "--out-key", str(stranger_key))
    stranger_fp = made.stdout.strip().removeprefix("a=fingerprint:")
    for _ in range(2):
        proc = dtls_ossl(
            "client", "127.0.0.1", str(server.port), "--fingerprint", certs["server"][2],
            "--cert", str(stranger_cert), "--key", str(stranger_key),
        )  # fmt: skip
        assert "bad_certificate" in assert_one_line_error(proc)
    expected_fp = certs["client"][2].removeprefix("a=fingerprint:")
    pattern = (
        r"^127\.0\.0\.1:\d+: rejected: fingerprint mismatch: peer certificate "
        + re.escape(f"{stranger_fp}, expected {expected_fp}; alert bad_certificate (42)")
        + "$"
    )
    server.wait_for(pattern, 5)
    deadline = time.monotonic() + 5
    while sum(bool(re.match(pattern, ln)) for ln in server.lines) < 2:
        assert time.monotonic() < deadline, server.lines
        time.sleep(0.05)
    assert sum(bool(re.match(pattern, ln)) for ln in server.lines) == 2


def test_echo_is_byte_exact(server: Server, certs: CliCerts) -> None:  # noqa: F811
    lines = [b"\xff\xfe\x80 not utf-8 \xc3", b"caf\xe9", b"\x00\x01\x02 nul", "ünï".encode()]
    proc = dtls_ossl_bytes(*_client(server.port, certs), stdin=b"\n".join(lines) + b"\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"".join(line + b"\n" for line in lines)


def test_profile_and_export_srtp_on_both_sides(server: Server, certs: CliCerts) -> None:  # noqa: F811
    proc = dtls_ossl(*_client(server.port, certs, "--profile", "SRTP_AES128_CM_SHA1_80",
                              "--export-srtp"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    client_keys = json.loads(proc.stdout)
    assert client_keys["role"] == "client"
    assert client_keys["profile"] == "SRTP_AES128_CM_SHA1_80"
    line = server.wait_for(r'^\{"peer": "127\.0\.0\.1:\d+", "role": "server"', 5)
    server_keys = json.loads(line)
    assert server_keys["profile"] == "SRTP_AES128_CM_SHA1_80"
    assert server_keys["local_key"] == client_keys["remote_key"]
    assert server_keys["remote_key"] == client_keys["local_key"]
    assert server_keys["local_salt"] == client_keys["remote_salt"]
    assert re.fullmatch("[0-9a-f]{32}", server_keys["local_key"])
    # The server's first choice wins when the client offers it too (RFC 5764 §4.1.1).
    both = "SRTP_AES128_CM_SHA1_80,SRTP_AES128_CM_SHA1_32"
    proc = dtls_ossl(*_client(server.port, certs, "--profile", both, "--export-srtp"))
    assert json.loads(proc.stdout)["profile"] == "SRTP_AES128_CM_SHA1_32"


def test_mtu_bounds_the_record_size(server: Server, certs: CliCerts) -> None:  # noqa: F811
    big = b"x" * 700 + b"\n"
    proc = dtls_ossl_bytes(*_client(server.port, certs, "--mtu", "600"), stdin=big)
    assert proc.returncode == 1
    err = proc.stderr.decode().splitlines()[-1]
    m = re.fullmatch(
        r"dtls-ossl: error: stdin line 1 is 700 bytes; at most (\d+) fit one datagram", err
    )
    assert m, err
    assert 500 < int(m.group(1)) < 600
    proc = dtls_ossl_bytes(*_client(server.port, certs, "--mtu", "1200"), stdin=big)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == big


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["client", "127.0.0.1", "4444", "--fingerprint", "{fp}", "--profile", "nope"],
            "--profile",
        ),
        (["client", "127.0.0.1", "4444", "--fingerprint", "{fp}", "--profile", ","], "--profile"),
        (["server", "--insecure-no-fingerprint-check", "--mtu", "10"], "--mtu"),
        (["server", "--insecure-no-fingerprint-check", "--profile", "SRTP_X"], "--profile"),
    ],
)
def test_bad_new_options_are_one_line_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fp = "sha-256 " + ":".join(["AB"] * 32)
    rc = main([a.replace("{fp}", fp) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dtls-ossl: error: ") and needle in lines[0]
