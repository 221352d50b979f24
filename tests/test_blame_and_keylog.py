"""Who is to blame (exceptions.py) and a configuration that does no I/O (key logging)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from helpers import (
    drain_events,
    handshake,
    make_config,
    make_pair,
    reword_openssl_errors,
    transfer,
)

from dtls_ossl import (
    CallbackError,
    ConnectionState,
    DtlsConnection,
    DtlsError,
    HandshakeError,
    HandshakeTimeoutError,
    OpenSSLErrorInfo,
    Role,
    events,
)
from dtls_ossl._cliargs import CliError
from dtls_ossl._netcli import NetError
from dtls_ossl.cli import main

# NSS key-log format for DTLS 1.2: label, 32-byte client random, 48-byte master secret (hex).
NSS_LINE = re.compile(r"CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}")


def _fds_on(path: Path) -> list[str]:
    """The descriptors of this process open on ``path`` (Linux /proc)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                out.append(fd)
        except OSError:  # closed while listing (the listing's own descriptor)
            pass
    return out


# ----------------------------------------------------------------------------- key log


def test_configuration_and_replace_open_no_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    before = len(os.listdir("/proc/self/fd"))
    cfg = make_config(key_log=str(path))
    copies = [cfg.replace(mtu=1000 + i) for i in range(20)]
    assert len(os.listdir("/proc/self/fd")) == before
    assert not path.exists()  # nothing was even created
    assert all(c.key_log == str(path) and c.key_log_writer is not None for c in copies)


def test_configuration_honours_sslkeylogfile_without_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(path))
    cfg = make_config()
    cfg.replace(mtu=1000)
    assert not path.exists()
    assert cfg.key_log_writer is not None


def test_key_log_path_lines_written_and_file_closed(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    client, server = make_pair({"key_log": path}, {"key_log": str(path)})
    handshake(client, server)
    lines = path.read_text(encoding="ascii").splitlines()
    # Both sides log the same master secret, one NSS line each.
    assert len(lines) == 2 and lines[0] == lines[1]
    assert NSS_LINE.fullmatch(lines[0])
    assert _fds_on(path) == []  # nothing held open while established
    client.close(time.monotonic())
    transfer(client, server, time.monotonic())
    assert client.state is ConnectionState.CLOSED
    assert server.state is ConnectionState.CLOSED
    assert _fds_on(path) == []


# ------------------------------------------------------------------------------- blame


class KeyLogBoom(Exception):
    pass


def test_key_log_callback_raising_is_the_users_error() -> None:
    raised = KeyLogBoom("disk full")

    def boom(line: str) -> None:
        raise raised

    client, server = make_pair({"key_log": boom})
    now = time.monotonic()
    client.connect(now)
    transfer(client, server, now)
    with pytest.raises(KeyLogBoom) as info:
        transfer(server, client, now)
    assert info.value is raised  # unchanged, not wrapped
    assert client.state is ConnectionState.FAILED
    end = drain_events(client)[-1]
    assert isinstance(end, events.ConnectionTerminated)
    assert type(end.error) is CallbackError
    assert not isinstance(end.error, HandshakeError)
    assert end.error.__cause__ is raised
    assert end.by_peer is False
    assert str(end.error) == "a callback raised KeyLogBoom"


def test_openssl_error_info_codes() -> None:
    info = OpenSSLErrorInfo(code=(20 << 23) | 312, library="SSL routines", reason="x")
    assert (info.library_code, info.reason_code) == (20, 312)
    system = OpenSSLErrorInfo(code=0x80000000 | 111, library="system library", reason="y")
    assert (system.library_code, system.reason_code) == (2, 111)


def _run_until_openssl_gives_up(conn: DtlsConnection) -> None:
    """Drive a client with nobody answering until OpenSSL's 12 expiries end it (< 1 s)."""
    conn.connect(time.monotonic())
    deadline = time.monotonic() + 5.0
    while conn.state is not ConnectionState.FAILED:
        assert time.monotonic() < deadline, "OpenSSL never gave up"
        conn.datagrams_to_send(time.monotonic())
        timer = conn.get_timer()
        assert timer is not None
        time.sleep(max(0.0, timer - time.monotonic()))
        conn.handle_timer(time.monotonic())


@pytest.mark.parametrize("reason_text", [None, "read timeout expired, but worded otherwise"])
def test_handshake_timeout_recognised_by_reason_code(
    monkeypatch: pytest.MonkeyPatch, reason_text: str | None
) -> None:
    if reason_text is not None:
        # Another OpenSSL build may word (or not load) its reason strings differently: only
        # the code may decide.
        reword_openssl_errors(monkeypatch, reason_text)
    cfg = make_config(
        handshake_timeout=None, initial_retransmit_timeout=0.02, max_retransmit_timeout=0.02
    )
    client = DtlsConnection(cfg, role=Role.CLIENT, insecure_skip_fingerprint_check=True)
    _run_until_openssl_gives_up(client)
    end = drain_events(client)[-1]
    assert isinstance(end, events.ConnectionTerminated)
    assert type(end.error) is HandshakeTimeoutError
    assert [(e.library_code, e.reason_code) for e in end.error.errors] == [(20, 312)]


def test_cli_errors_are_not_library_errors() -> None:
    assert issubclass(NetError, CliError)
    assert not issubclass(NetError, DtlsError)
    assert not issubclass(CliError, DtlsError)


def test_cli_net_error_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    # Nobody listens on the discard port of 127.0.0.1: the kernel's ICMP answer becomes the
    # CLI's NetError, printed by main() as one line with exit status 1.
    fingerprint = "sha-256 " + ":".join(["AB"] * 32)
    status = main(["client", "127.0.0.1", "9", "--fingerprint", fingerprint, "--timeout", "2"])
    err = capsys.readouterr().err
    assert status == 1
    assert re.fullmatch(
        r"dtls-ossl: error: 127\.0\.0\.1:9 refused the connection after \d+\.\d s "
        r"\(ICMP port unreachable: is a server listening there\?\)\n",
        err,
    )


def test_key_log_path_that_cannot_be_opened_fails_at_first_line(tmp_path: Path) -> None:
    # Validation opens nothing, so a bad path surfaces where the first line is written: the
    # OSError propagates unchanged and the connection ends with CallbackError.
    path = tmp_path / "no-such-directory" / "keys.log"
    client, server = make_pair({"key_log": path})
    now = time.monotonic()
    client.connect(now)
    transfer(client, server, now)
    with pytest.raises(FileNotFoundError) as info:
        transfer(server, client, now)
    assert info.value.filename == str(path)
    end = drain_events(client)[-1]
    assert isinstance(end, events.ConnectionTerminated)
    assert type(end.error) is CallbackError and end.error.__cause__ is info.value
