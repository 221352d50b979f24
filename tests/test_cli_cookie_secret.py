"""``dtls-ossl server --cookie-secret-file`` / ``$DTLS_OSSL_COOKIE_SECRET``: a shared secret.

Servers behind one address share the secret, so a cookie one mints is accepted by another:
:func:`handshake_across` takes the HelloVerifyRequest from one server and finishes the
handshake with another from the same client socket (the cookie binds the client's address).
test_loadbalancer.py does the same between hosts in network namespaces.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from helpers import cached_cert, make_config
from test_cli_net import Server, assert_one_line_error, dtls_ossl

from dtls_ossl import DtlsConfiguration, DtlsConnection, Role
from dtls_ossl.events import HandshakeCompleted

pytestmark = pytest.mark.timeout(40)

SECRET = "5f" * 32

_HELLO_VERIFY_REQUEST = 3
_SERVER_HELLO = 2


def _handshake_type(datagram: bytes) -> int:
    """The type of the first handshake message of a datagram's first record (or -1)."""
    return datagram[13] if len(datagram) > 13 and datagram[0] == 22 else -1


def handshake_across(
    sock: socket.socket,
    first: tuple[str, int],
    second: tuple[str, int],
    timeout: float = 5.0,
    configuration: DtlsConfiguration | None = None,
) -> tuple[int, HandshakeCompleted | None]:
    """Send a ClientHello to ``first``, its cookie retry to ``second``; drive ``second`` on.

    Returns the handshake type ``second`` answered the retry with (2: ServerHello, the cookie
    was accepted; 3: another HelloVerifyRequest) and, if it was accepted, the completed
    handshake's event. Every wait is bounded by ``timeout``.
    """
    config = configuration or make_config(cached_cert("client"))
    conn = DtlsConnection(config, role=Role.CLIENT, insecure_skip_fingerprint_check=True)
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    conn.connect(time.monotonic())
    for d in conn.datagrams_to_send(time.monotonic()):
        sock.sendto(d, first)
    reply, src = sock.recvfrom(4096)
    assert src == first and _handshake_type(reply) == _HELLO_VERIFY_REQUEST, reply[:16]
    conn.receive_datagram(reply, time.monotonic())
    answer = -1
    while time.monotonic() < deadline:
        for d in conn.datagrams_to_send(time.monotonic()):
            sock.sendto(d, second)
        while (event := conn.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                return answer, event
        sock.settimeout(max(0.01, min(0.2, deadline - time.monotonic())))
        try:
            data, src = sock.recvfrom(4096)
        except TimeoutError:
            conn.handle_timer(time.monotonic())
            continue
        assert src == second, src
        if answer == -1:
            answer = _handshake_type(data)
            if answer != _SERVER_HELLO:
                return answer, None
        conn.receive_datagram(data, time.monotonic())
    return answer, None


def _server(*extra: str) -> Server:
    return Server("--insecure-no-fingerprint-check", *extra)


def test_servers_sharing_a_secret_file_accept_each_others_cookies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "cookie.secret"
    secret.write_text(SECRET + "\n")
    monkeypatch.delenv("DTLS_OSSL_COOKIE_SECRET", raising=False)
    a = _server("--cookie-secret-file", str(secret))
    # The other reads the same secret from its environment (hex, whitespace ignored).
    monkeypatch.setenv("DTLS_OSSL_COOKIE_SECRET", " ".join([SECRET[:32], SECRET[32:]]))
    b = _server("--workers", "2")
    try:
        assert "cookies on, shared secret" in a.lines[1]
        assert "cookies on, shared secret" in b.lines[1]
        for pid in (a.proc.pid, b.proc.pid):  # never on the command line, where ps shows it
            assert SECRET.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            answer, done = handshake_across(sock, ("127.0.0.1", a.port), ("127.0.0.1", b.port))
        assert answer == _SERVER_HELLO
        assert done is not None
        b.wait_for(r"handshake done", 5)
    finally:
        a.stop()
        b.stop()


def test_servers_without_a_shared_secret_reject_each_others_cookies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DTLS_OSSL_COOKIE_SECRET", raising=False)
    a, b = _server(), _server()
    try:
        assert "cookies on," in a.lines[1] and "shared" not in a.lines[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            answer, done = handshake_across(sock, ("127.0.0.1", a.port), ("127.0.0.1", b.port))
        assert (answer, done) == (_HELLO_VERIFY_REQUEST, None)
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not hex at all", "is not hex"),
        ("ab" * 15, "has 15 bytes; at least 16 are needed"),
    ],
)
def test_a_bad_secret_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, message: str
) -> None:
    monkeypatch.delenv("DTLS_OSSL_COOKIE_SECRET", raising=False)
    path = tmp_path / "secret"
    path.write_text(content)
    proc = dtls_ossl("server", "--insecure-no-fingerprint-check", "--cookie-secret-file", str(path))
    assert message in assert_one_line_error(proc)
    monkeypatch.setenv("DTLS_OSSL_COOKIE_SECRET", content)
    proc = dtls_ossl("server", "--insecure-no-fingerprint-check")
    line = assert_one_line_error(proc)
    assert "$DTLS_OSSL_COOKIE_SECRET" in line and message in line


def test_a_missing_secret_file_and_no_cookies_conflict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DTLS_OSSL_COOKIE_SECRET", raising=False)
    missing = str(tmp_path / "nope")
    proc = dtls_ossl("server", "--insecure-no-fingerprint-check", "--cookie-secret-file", missing)
    assert "cannot read the cookie secret" in assert_one_line_error(proc)
    proc = dtls_ossl(
        "server", "--insecure-no-fingerprint-check", "--no-cookies", "--cookie-secret-file", missing
    )
    assert "exclude each other" in proc.stderr and proc.returncode == 2
    # An ambient secret in the environment is simply unused when cookies are off.
    monkeypatch.setenv("DTLS_OSSL_COOKIE_SECRET", SECRET)
    srv = _server("--no-cookies")
    try:
        assert "cookies off" in srv.lines[1]
    finally:
        srv.stop()
    assert os.environ["DTLS_OSSL_COOKIE_SECRET"] == SECRET
