"""The ``server`` and ``client`` subcommands over real UDP on 127.0.0.1.

``cert`` makes a server and a client certificate, ``server`` runs as a subprocess on a free
port (``--port 0``; the port is read from its "listening on" line), ``client`` runs as
subprocesses against it. Every subprocess is stopped by a finaliser (SIGINT, then kill), and
every wait is bounded. Argument errors are checked in-process with ``main()``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dtls_ossl import Certificate, SrtpProfile
from dtls_ossl.cli import main

pytestmark = pytest.mark.timeout(20)

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 10.0  # interpreter start, certificate load, bind (workers: spawn)
CLIENT_TIMEOUT = 10.0
# What the certs fixture made: {"server" | "client": (cert path, key path, fingerprint line)}.
CliCerts = dict[str, tuple[str, str, str]]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONIOENCODING="utf-8", PYTHONPATH=path)


def dtls_ossl(
    *argv: str, stdin: str = "", timeout: float = CLIENT_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dtls_ossl ...`` to completion (bounded) and return the result."""
    return subprocess.run(
        [sys.executable, "-m", "dtls_ossl", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env=_env(),
        cwd=ROOT,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *, status: int = 1) -> str:
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dtls-ossl: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


class Server:
    """A ``dtls-ossl server`` subprocess; its stdout lines are collected by a thread."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dtls_ossl", "server", "--port", "0", *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=_env(),
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        line = self.wait_for(r"^listening on udp ", START_TIMEOUT)
        m = re.search(r"udp 127\.0\.0\.1:(\d+) ", line)
        assert m, line
        self.port = int(m.group(1))
        self.fingerprint_line = self.lines[0]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> str:
        """Return the first stdout line matching ``pattern``; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._cond:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    stderr = self.proc.stderr
                    err = stderr.read() if stderr and self.proc.poll() is not None else ""
                    pytest.fail(f"no line matching {pattern!r}: {self.lines!r} {err}")
                self._cond.wait(min(left, 0.1))

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        """Signal the server, wait (bounded) and return (exit status, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self._reader.join(5)
        return self.proc.returncode, err


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CliCerts:
    """Server and client certificates made with ``dtls-ossl cert``: {name: (cert, key, fp)}."""
    d = tmp_path_factory.mktemp("certs")
    out = {}
    for name in ("server", "client"):
        cert, key = d / f"{name}.pem", d / f"{name}.key"
        proc = dtls_ossl("cert", "--out-cert", str(cert), "--out-key", str(key))
        assert proc.returncode == 0, proc.stderr
        line = proc.stdout.strip()
        assert line.startswith("a=fingerprint:sha-256 ")
        out[name] = (str(cert), str(key), line)
    return out


@pytest.fixture(scope="module")
def server(certs: CliCerts) -> Iterator[Server]:
    """One echo server for the module, accepting only the client certificate."""
    cert, key, _ = certs["server"]
    srv = Server("--cert", cert, "--key", key, "--fingerprint", certs["client"][2])
    yield srv
    srv.stop()


def client_args(server: Server, certs: CliCerts, *extra: str) -> list[str]:
    cert, key, _ = certs["client"]
    fp = certs["server"][2]
    return [
        "client",
        "127.0.0.1",
        str(server.port),
        "--fingerprint",
        fp,
        "--cert",
        cert,
        "--key",
        key,
        *extra,
    ]


# ---------------------------------------------------------------------------- the good path


def test_server_prints_its_fingerprint_and_address(server: Server, certs: CliCerts) -> None:
    assert server.fingerprint_line == certs["server"][2]
    assert "cookies on" in server.lines[1]


def test_client_echoes_stdin_lines_and_server_prints_the_handshake(
    server: Server, certs: CliCerts, tmp_path: Path
) -> None:
    keylog = tmp_path / "keys.log"
    t0 = time.monotonic()
    proc = dtls_ossl(
        *client_args(server, certs, "--keylog", str(keylog)), stdin="hello\n\nworld, again\n"
    )
    assert time.monotonic() - t0 < 8
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello\nworld, again\n"  # the empty line is skipped
    assert "DTLSv1.2" in proc.stderr
    assert "sent 2 lines, received 2 replies" in proc.stderr
    assert "Traceback" not in proc.stderr
    server_fp = certs["server"][2].removeprefix("a=fingerprint:")
    assert f"server certificate matches {server_fp}" in proc.stderr
    # NSS key log: CLIENT_RANDOM <64 hex> <96 hex>
    lines = keylog.read_text().splitlines()
    assert lines and all(
        re.fullmatch(r"CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}", ln) for ln in lines
    )
    # The server reported the handshake (version, cipher, SRTP, the client's fingerprint).
    client_fp = certs["client"][2].removeprefix("a=fingerprint:")
    line = server.wait_for(r"handshake done: .*" + re.escape(client_fp), 5)
    assert re.match(r"127\.0\.0\.1:\d+: handshake done: DTLSv1\.2, ECDHE-ECDSA-", line), line
    assert "SRTP SRTP_AEAD_AES_128_GCM" in line
    server.wait_for(r"closed after 2 records echoed \(close_notify\)", 5)


def test_client_export_srtp_prints_json_keys(server: Server, certs: CliCerts) -> None:
    proc = dtls_ossl(*client_args(server, certs, "--export-srtp"), stdin="not read\n")
    assert proc.returncode == 0, proc.stderr
    keys = json.loads(proc.stdout)
    assert keys["role"] == "client"
    profile = SrtpProfile.from_openssl_name(keys["profile"])
    lengths = {
        "local_key": profile.key_length,
        "local_salt": profile.salt_length,
        "remote_key": profile.key_length,
        "remote_salt": profile.salt_length,
    }
    for name, length in lengths.items():
        assert re.fullmatch(f"[0-9a-f]{{{2 * length}}}", keys[name]), (name, keys[name])
    assert keys["local_key"] != keys["remote_key"]


def test_server_workers_2_echoes(certs: CliCerts) -> None:
    cert, key, fp = certs["server"]
    srv = Server("--cert", cert, "--key", key, "--insecure-no-fingerprint-check", "--workers", "2")
    try:
        assert "2 worker processes" in srv.lines[1]
        proc = dtls_ossl("client", "127.0.0.1", str(srv.port), "--fingerprint", fp, stdin="x\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "x\n"
        line = srv.wait_for(r"handshake done", 5)
        assert re.match(r"\[pid \d+\] 127\.0\.0\.1:\d+: handshake done: ", line), line
        assert line.endswith("(not checked)")
    finally:
        rc, err = srv.stop(signal.SIGTERM)
    assert rc == 0, err
    assert "stopped: 1 handshakes completed" in err


def test_server_stops_cleanly_on_sigint(certs: CliCerts) -> None:
    cert, key, _ = certs["server"]
    srv = Server("--cert", cert, "--key", key, "--insecure-no-fingerprint-check", "--no-cookies")
    try:
        assert "cookies off" in srv.lines[1]
    finally:
        rc, err = srv.stop(signal.SIGINT)
    assert rc == 0, err
    assert "Traceback" not in err
    assert "stopped: 0 handshakes completed" in err


# ------------------------------------------------------------------------------- failures


def test_wrong_fingerprint_is_a_one_line_error(server: Server, certs: CliCerts) -> None:
    cert, key, client_fp = certs["client"]
    proc = dtls_ossl(
        "client", "127.0.0.1", str(server.port), "--fingerprint", client_fp,
        "--cert", cert, "--key", key,
    )  # fmt: skip
    line = assert_one_line_error(proc)
    expected = client_fp.removeprefix("a=fingerprint:")
    got = certs["server"][2].removeprefix("a=fingerprint:")
    assert line == f"dtls-ossl: error: fingerprint mismatch: expected {expected}, got {got}"


def test_server_refuses_an_unknown_client_certificate(server: Server, certs: CliCerts) -> None:
    proc = dtls_ossl("client", "127.0.0.1", str(server.port), "--fingerprint", certs["server"][2])
    line = assert_one_line_error(proc)
    assert "handshake with 127.0.0.1:" in line and "bad_certificate" in line, line


def test_silent_peer_is_a_one_line_error_with_the_time_waited() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never read: no answer, no ICMP either
        port = silent.getsockname()[1]
        fp = Certificate.generate().fingerprint().sdp_attribute()
        t0 = time.monotonic()
        proc = dtls_ossl("client", "127.0.0.1", str(port), "--fingerprint", fp, "--timeout", "1")
        elapsed = time.monotonic() - t0
    line = assert_one_line_error(proc)
    m = re.fullmatch(
        rf"dtls-ossl: error: no answer from 127\.0\.0\.1:{port} after (\d+\.\d) s", line
    )
    assert m, line
    assert 1.0 <= float(m.group(1)) <= elapsed < 6


def test_closed_port_fails_at_the_icmp_error_not_the_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nobody listens there
    fp = Certificate.generate().fingerprint().sdp_attribute()
    t0 = time.monotonic()
    proc = dtls_ossl("client", "127.0.0.1", str(port), "--fingerprint", fp, "--timeout", "30")
    elapsed = time.monotonic() - t0
    line = assert_one_line_error(proc)
    m = re.fullmatch(
        rf"dtls-ossl: error: 127\.0\.0\.1:{port} refused the connection after (\d+\.\d) s "
        r"\(ICMP port unreachable: is a server listening there\?\)",
        line,
    )
    assert m, line
    # The ICMP error comes back at once: far from the 30 s timeout (interpreter start included).
    assert float(m.group(1)) < 2.0
    assert elapsed < 8.0


@pytest.mark.parametrize(
    ("argv", "status", "needle"),
    [
        (["client", "127.0.0.1", "4444"], 2, "--fingerprint"),
        (["client", "127.0.0.1", "70000", "--fingerprint", "sha-256 AA"], 2, "PORT"),
        (["client", "127.0.0.1", "4444", "--fingerprint", "sha-256 zz"], 2, "--fingerprint"),
        (
            ["client", "127.0.0.1", "4444", "--fingerprint", "{fp}", "--timeout", "0"],
            2,
            "--timeout",
        ),
        (
            ["client", "127.0.0.1", "4444", "--fingerprint", "{fp}", "--cert", "{missing}"],
            2,
            "--key",
        ),
        (
            [
                "client",
                "127.0.0.1",
                "4444",
                "--fingerprint",
                "{fp}",
                "--cert",
                "{missing}",
                "--key",
                "{missing}",
            ],
            1,
            "cannot read certificate file",
        ),
        (["server"], 2, "--insecure-no-fingerprint-check"),
        (["server", "--insecure-no-fingerprint-check", "--fingerprint", "{fp}"], 2, "not allowed"),
        (["server", "--insecure-no-fingerprint-check", "--port", "-1"], 2, "--port"),
        (["server", "--insecure-no-fingerprint-check", "--workers", "0"], 2, "--workers"),
        (
            [
                "server",
                "--insecure-no-fingerprint-check",
                "--cert",
                "{missing}",
                "--key",
                "{missing}",
            ],
            1,
            "cannot read certificate file",
        ),
        (
            ["server", "--insecure-no-fingerprint-check", "--host", "192.0.2.1", "--port", "0"],
            1,
            "cannot listen on 192.0.2.1:0",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors(
    argv: list[str], status: int, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fp = "sha-256 " + ":".join(["AB"] * 32)
    missing = str(tmp_path / "missing.pem")
    argv = [a.replace("{fp}", fp).replace("{missing}", missing) for a in argv]
    t0 = time.monotonic()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert time.monotonic() - t0 < 5
    assert rc == status, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dtls-ossl: error: ") and needle in lines[0], err
