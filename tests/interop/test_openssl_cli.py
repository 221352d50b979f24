"""Interop with the ``openssl s_server`` / ``openssl s_client`` programs over UDP on 127.0.0.1.

The CLI is an independent DTLS 1.2 peer: it negotiates ``use_srtp``, prints the RFC 5705
keying material for ``-keymatexport EXTRACTOR-dtls_srtp``, its cipher and the certificate it
received, and relays stdin/stdout as application data. We compare all of that byte for byte
with what our side reports. s_server always uses the cookie exchange for DTLS
(``SSL_OP_COOKIE_EXCHANGE``, or ``DTLSv1_listen`` with ``-listen``), so our client must go
through HelloVerifyRequest. Lines written to the CLI's stdin start with a digit because s_server
and s_client treat some leading letters (Q, q, R, k, ...) as commands.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

import pytest

from dtls_ossl import (
    Certificate,
    ConnectionState,
    DtlsConfiguration,
    DtlsConnection,
    Fingerprint,
    FingerprintMismatchError,
    HandshakeError,
    InvalidStateError,
    ProtocolError,
    Role,
    SrtpProfile,
    events,
)
from dtls_ossl.configuration import DEFAULT_SRTP_PROFILES

from .udp_driver import (
    LOCALHOST,
    Certificates,
    UdpDriver,
    data_received,
    free_udp_port,
    has_event,
    terminated,
)

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(
    OPENSSL is None, reason="the openssl command-line tool is not installed"
)

LABEL = "EXTRACTOR-dtls_srtp"
MTU = 1200
STEP = 5.0  # seconds allowed for any one step (a handshake, a line of data, an exit)

# Master key and salt lengths in bytes, written out from RFC 5764 §4.1.2 and RFC 7714 §12
# rather than taken from dtls_ossl.webrtc.srtp.
SRTP_LENGTHS = {
    "SRTP_AES128_CM_SHA1_80": (16, 14),
    "SRTP_AES128_CM_SHA1_32": (16, 14),
    "SRTP_AEAD_AES_128_GCM": (16, 12),
    "SRTP_AEAD_AES_256_GCM": (32, 12),
}


# ------------------------------------------------------------------------------- the CLI peer


class CliPeer:
    """An ``openssl`` subprocess whose stdout and stderr are collected by reader threads."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.args = args
        self._chunks: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            args, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._readers = [
            threading.Thread(target=self._read, args=(stream, tag), daemon=True)
            for stream, tag in ((self.proc.stdout, "out"), (self.proc.stderr, "err"))
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: IO[bytes], tag: str) -> None:
        with contextlib.suppress(ValueError):  # stop() gave up waiting and closed the pipe
            for line in iter(stream.readline, b""):
                with self._lock:
                    self._chunks.append((tag, line))

    def text(self, tag: str | None = None) -> str:
        """Everything printed so far (stdout and stderr interleaved, or just one of them)."""
        with self._lock:
            chunks = [c for t, c in self._chunks if tag is None or t == tag]
        return b"".join(chunks).decode("utf-8", "replace")

    def describe(self) -> str:
        return f"$ {' '.join(self.args[:2])} ... (rc={self.proc.poll()})\n{self.text()}"

    def wait_for(
        self, pattern: str, timeout: float = STEP, tag: str | None = None
    ) -> re.Match[str]:
        """Wait until ``pattern`` (a multi-line regex) appears in the output, and return it."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.text(tag), re.MULTILINE)
            if m is not None:
                return m
            if time.monotonic() >= deadline or self.proc.poll() is not None:
                # One last look: the readers may still be catching up with an exited process.
                for t in self._readers:
                    t.join(0.5)
                m = re.search(pattern, self.text(tag), re.MULTILINE)
                if m is not None:
                    return m
                raise AssertionError(f"{pattern!r} not seen in the output of\n{self.describe()}")
            time.sleep(0.01)

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait_exit(self, timeout: float = STEP) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"did not exit in {timeout:g} s:\n{self.describe()}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(2)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):  # broken pipe on an exited process
                self.proc.stdin.close()
        # The process has exited, so the readers reach EOF; closing a pipe under a reader
        # that is still in readline() fails in that thread instead.
        for t in self._readers:
            t.join(2)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., CliPeer]]:
    """Start ``openssl`` subprocesses in tmp_path; every one is stopped at teardown."""
    peers: list[CliPeer] = []

    def start(*args: str) -> CliPeer:
        assert OPENSSL is not None
        peer = CliPeer([OPENSSL, *args], tmp_path)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.stop()


@pytest.fixture
def drivers() -> Iterator[list[UdpDriver]]:
    """Register UdpDrivers here to have their sockets closed at teardown."""
    made: list[UdpDriver] = []
    yield made
    for d in made:
        d.close()


# ------------------------------------------------------------------------------------ helpers


def write_identity(directory: Path, name: str, cert: Certificate) -> tuple[str, str]:
    cert_pem, key_pem = cert.to_pem()
    (directory / f"{name}.crt").write_bytes(cert_pem)
    (directory / f"{name}.key").write_bytes(key_pem)
    return f"{name}.crt", f"{name}.key"


def cli_fingerprint(directory: Path, cert_file: str, digest: str = "sha256") -> Fingerprint:
    """The certificate fingerprint as ``openssl x509 -fingerprint`` computes it."""
    assert OPENSSL is not None
    out = subprocess.run(
        [OPENSSL, "x509", "-noout", "-fingerprint", f"-{digest}", "-in", cert_file],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
        timeout=STEP,
    ).stdout
    m = re.fullmatch(r"(?i)(sha\d+) Fingerprint=([0-9A-F:]+)\s*", out)
    assert m is not None, out
    algorithm = m.group(1).lower().replace("sha", "sha-")
    return Fingerprint.parse(f"{algorithm} {m.group(2)}")


def cli_session_text(directory: Path, peer: CliPeer) -> str:
    """Decode the SSL session s_server printed with ``openssl sess_id -text``."""
    assert OPENSSL is not None
    m = peer.wait_for(
        r"-----BEGIN SSL SESSION PARAMETERS-----\n[^-]+-----END SSL SESSION PARAMETERS-----\n",
        tag="out",
    )
    return subprocess.run(
        [OPENSSL, "sess_id", "-noout", "-text"],
        cwd=directory,
        input=m.group(0),
        capture_output=True,
        text=True,
        check=True,
        timeout=STEP,
    ).stdout


def cli_keying_material(peer: CliPeer, length: int) -> bytes:
    m = peer.wait_for(
        rf"Label: '{LABEL}'\n\s+Length: {length} bytes\n\s+Keying material: ([0-9A-F]+)$",
        tag="out",
    )
    return bytes.fromhex(m.group(1))


def cli_received_certificate(peer: CliPeer, heading: str) -> Certificate:
    m = peer.wait_for(
        rf"^{heading}\n(-----BEGIN CERTIFICATE-----\n[^-]+-----END CERTIFICATE-----\n)", tag="out"
    )
    return Certificate.from_pem(m.group(1))


def material_length(profile: str) -> int:
    key, salt = SRTP_LENGTHS[profile]
    return 2 * (key + salt)


def check_srtp_layout(
    material: bytes, profile: str, handshake: events.HandshakeCompleted, role: Role
) -> None:
    """RFC 5764 §4.2: client_key | server_key | client_salt | server_salt."""
    k, s = SRTP_LENGTHS[profile]
    client_key, server_key = material[:k], material[k : 2 * k]
    client_salt, server_salt = material[2 * k : 2 * k + s], material[2 * k + s :]
    assert len(server_salt) == s
    keys = handshake.srtp_keys
    assert keys is not None
    assert keys.profile is SrtpProfile.from_openssl_name(profile)
    if role is Role.CLIENT:
        local, remote = (client_key, client_salt), (server_key, server_salt)
    else:
        local, remote = (server_key, server_salt), (client_key, client_salt)
    assert (keys.local_key, keys.local_salt) == local
    assert (keys.remote_key, keys.remote_salt) == remote


E = TypeVar("E", bound=events.DtlsEvent)


def only(seen: list[events.DtlsEvent], kind: type[E]) -> list[E]:
    return [e for e in seen if isinstance(e, kind)]


def handshake_type(datagram: bytes) -> int | None:
    """The handshake message type of the first record if it is an epoch-0 handshake record."""
    if len(datagram) > 25 and datagram[0] == 22 and datagram[3:5] == b"\x00\x00":
        return datagram[13]
    return None


def client_hello_cookie(datagram: bytes) -> bytes:
    """The cookie of an unfragmented ClientHello (RFC 6347 §4.2.1)."""
    assert handshake_type(datagram) == 1
    body = datagram[25:]  # 13-byte record header, 12-byte handshake header
    sid_len = body[34]  # after client_version (2) and random (32)
    at = 35 + sid_len
    return body[at + 1 : at + 1 + body[at]]


def hello_verify_cookie(datagram: bytes) -> bytes:
    assert handshake_type(datagram) == 3
    body = datagram[25:]  # server_version (2), then the cookie with a one-byte length
    return body[3 : 3 + body[2]]


def make_conn(
    cert: Certificate,
    role: Role,
    expected: Fingerprint | None,
    *,
    profiles: tuple[SrtpProfile, ...] | None = None,
    mtu: int = MTU,
) -> DtlsConnection:
    cfg = DtlsConfiguration(
        certificate=cert,
        mtu=mtu,
        initial_retransmit_timeout=0.2,
        handshake_timeout=STEP,
        srtp_profiles=DEFAULT_SRTP_PROFILES if profiles is None else profiles,
    )
    return DtlsConnection(cfg, role=role, remote_fingerprints=[expected] if expected else None)


def s_server_args(
    port: int, cert: str, key: str, profile: str | None, *extra: str, mtu: int = MTU
) -> list[str]:
    args = ["s_server", "-dtls1_2", "-accept", f"{LOCALHOST}:{port}", "-naccept", "1"]
    args += ["-cert", cert, "-key", key, "-mtu", str(mtu), "-verify", "1"]
    if profile is not None:
        args += ["-use_srtp", profile, "-keymatexport", LABEL]
        args += ["-keymatexportlen", str(material_length(profile))]
    return [*args, *extra]


def s_client_args(
    port: int,
    cert: str | None,
    key: str | None,
    profile: str | None,
    *,
    mtu: int = MTU,
    keymat_len: int | None = None,
) -> list[str]:
    args = ["s_client", "-dtls1_2", "-connect", f"{LOCALHOST}:{port}", "-mtu", str(mtu)]
    if cert is not None and key is not None:
        args += ["-cert", cert, "-key", key]
    if profile is not None:
        args += ["-use_srtp", profile, "-keymatexport", LABEL]
        n = keymat_len or material_length(profile)
        args += ["-keymatexportlen", str(n)]
    return args


def start_s_server(spawn: Callable[..., CliPeer], args: list[str]) -> CliPeer:
    server = spawn(*args)
    server.wait_for(r"^ACCEPT$", tag="out")
    return server


def assert_datagrams_fit(driver: UdpDriver, mtu: int) -> None:
    assert driver.sent and driver.received
    assert max(map(len, driver.sent)) <= mtu
    assert max(map(len, driver.received)) <= mtu


# ------------------------------------------------------------------ our client vs s_server


@pytest.mark.parametrize("listen", [False, True], ids=["cookie-exchange", "dtlsv1-listen"])
def test_client_against_s_server_handshake_keys_and_data(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    our_certificate: Certificate,
    peer_certificate: Certificate,
    listen: bool,
) -> None:
    profile = "SRTP_AES128_CM_SHA1_80"
    cert_file, key_file = write_identity(tmp_path, "server", peer_certificate)
    expected = cli_fingerprint(tmp_path, cert_file)
    assert expected == peer_certificate.fingerprint("sha-256")
    port = free_udp_port()
    extra = ("-listen",) if listen else ()
    server = start_s_server(spawn, s_server_args(port, cert_file, key_file, profile, *extra))

    conn = make_conn(our_certificate, Role.CLIENT, expected)
    driver = UdpDriver(conn, (LOCALHOST, port))
    drivers.append(driver)
    driver.connect()
    seen = driver.run_until(has_event(events.HandshakeCompleted), STEP)

    # The cookie exchange: ClientHello, HelloVerifyRequest, ClientHello echoing the cookie.
    cookie = hello_verify_cookie(driver.received[0])
    assert cookie
    assert client_hello_cookie(driver.sent[0]) == b""
    assert client_hello_cookie(driver.sent[1]) == cookie

    assert len(seen) == 1
    hs = seen[0]
    assert isinstance(hs, events.HandshakeCompleted)
    cipher = server.wait_for(r"^CIPHER is (\S+)$", tag="out").group(1)
    session = cli_session_text(tmp_path, server)
    assert re.search(r"^\s+Protocol\s+: DTLSv1\.2$", session, re.MULTILINE), session
    assert re.search(rf"^\s+Cipher\s+: {re.escape(cipher)}$", session, re.MULTILINE), session
    assert hs.protocol_version == "DTLSv1.2"
    assert hs.cipher == cipher
    server.wait_for(rf"^SRTP Extension negotiated, profile={profile}$", tag="out")
    assert hs.srtp_profile is SrtpProfile.AES128_CM_SHA1_80
    assert hs.peer_certificate == peer_certificate
    assert hs.peer_fingerprint == expected
    assert cli_received_certificate(server, "Client certificate") == our_certificate

    material = cli_keying_material(server, 60)
    assert conn.export_keying_material(LABEL, 60) == material
    check_srtp_layout(material, profile, hs, Role.CLIENT)
    assert conn.srtp_keys() == hs.srtp_keys

    # Application data both ways: our record is printed by s_server, its stdin line reaches us.
    driver.send(b"0123 from dtls_ossl\n")
    server.wait_for(r"^0123 from dtls_ossl$", tag="out")
    server.write(b"4567 from s_server\n")
    driver.run_until(data_received(1), STEP)

    # Our close_notify ends s_server's session (SSL_ERROR_ZERO_RETURN prints DONE).
    driver.shutdown()
    server.wait_for(r"^DONE$", tag="out")
    assert server.wait_exit() == 0
    assert driver.events == [
        hs,
        events.DataReceived(b"4567 from s_server\n"),
        events.AlertSent(1, 0),  # our close_notify
        events.ConnectionTerminated(error=None, by_peer=False),
    ]
    assert_datagrams_fit(driver, MTU)


@pytest.mark.parametrize("profile", list(SRTP_LENGTHS))
def test_client_against_s_server_each_srtp_profile(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    profile: str,
) -> None:
    ours, theirs = certificates["ecdsa-p256"]
    cert_file, key_file = write_identity(tmp_path, "server", theirs)
    port = free_udp_port()
    server = start_s_server(spawn, s_server_args(port, cert_file, key_file, profile))
    conn = make_conn(ours, Role.CLIENT, theirs.fingerprint())  # offers all four profiles
    driver = UdpDriver(conn, (LOCALHOST, port))
    drivers.append(driver)
    driver.connect()
    (hs,) = driver.run_until(has_event(events.HandshakeCompleted), STEP)
    assert isinstance(hs, events.HandshakeCompleted)
    n = material_length(profile)
    server.wait_for(rf"^SRTP Extension negotiated, profile={profile}$", tag="out")
    material = cli_keying_material(server, n)
    assert conn.export_keying_material(LABEL, n) == material
    assert hs.srtp_profile is SrtpProfile.from_openssl_name(profile)
    check_srtp_layout(material, profile, hs, Role.CLIENT)


def test_client_against_s_server_without_srtp(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
) -> None:
    ours, theirs = certificates["ecdsa-p256"]
    cert_file, key_file = write_identity(tmp_path, "server", theirs)
    port = free_udp_port()
    server = start_s_server(spawn, s_server_args(port, cert_file, key_file, None))
    conn = make_conn(ours, Role.CLIENT, theirs.fingerprint())
    driver = UdpDriver(conn, (LOCALHOST, port))
    drivers.append(driver)
    driver.connect()
    (hs,) = driver.run_until(has_event(events.HandshakeCompleted), STEP)
    assert isinstance(hs, events.HandshakeCompleted)
    assert hs.srtp_profile is None
    assert hs.srtp_keys is None
    with pytest.raises(InvalidStateError):
        conn.srtp_keys()
    server.wait_for(r"^CIPHER is ", tag="out")
    assert "SRTP Extension negotiated" not in server.text()


def test_client_against_s_server_wrong_fingerprint_fails_closed(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    our_certificate: Certificate,
    peer_certificate: Certificate,
) -> None:
    cert_file, key_file = write_identity(tmp_path, "server", peer_certificate)
    port = free_udp_port()
    server = start_s_server(
        spawn, s_server_args(port, cert_file, key_file, "SRTP_AES128_CM_SHA1_80")
    )
    wrong = Certificate.generate().fingerprint("sha-256")
    conn = make_conn(our_certificate, Role.CLIENT, wrong)
    driver = UdpDriver(conn, (LOCALHOST, port))
    drivers.append(driver)
    driver.connect()
    seen = driver.run_until(terminated, STEP)

    assert not only(seen, events.HandshakeCompleted)
    assert not only(seen, events.DataReceived)
    end = seen[-1]
    assert isinstance(end, events.ConnectionTerminated)
    assert isinstance(end.error, FingerprintMismatchError)
    assert end.by_peer is False
    assert seen == [events.AlertSent(2, 42), end]  # bad_certificate (RFC 5246 §7.2)
    with pytest.raises(InvalidStateError):
        conn.export_keying_material(LABEL, 60)
    # s_server receives our fatal alert and never completes its side of the handshake.
    server.wait_for(r"SSL alert number 42$")
    assert "Keying material:" not in server.text()
    server.wait_exit()


def test_client_retransmits_when_hello_verify_request_is_lost(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
) -> None:
    """Our 0.2 s timer resends the first ClientHello; s_server answers with a new cookie."""
    ours, theirs = certificates["ecdsa-p256"]
    cert_file, key_file = write_identity(tmp_path, "server", theirs)
    port = free_udp_port()
    server = start_s_server(
        spawn, s_server_args(port, cert_file, key_file, "SRTP_AES128_CM_SHA1_80")
    )
    conn = make_conn(ours, Role.CLIENT, theirs.fingerprint())
    driver = UdpDriver(conn, (LOCALHOST, port))
    drivers.append(driver)
    driver.drop_received = lambda index, datagram: index == 0
    started = time.monotonic()
    driver.connect()
    seen = driver.run_until(has_event(events.HandshakeCompleted), STEP)
    assert time.monotonic() - started >= 0.2
    assert [type(e) for e in seen] == [events.FlightRetransmitted, events.HandshakeCompleted]
    retransmitted = seen[0]
    assert isinstance(retransmitted, events.FlightRetransmitted)
    assert retransmitted.count == 1
    assert retransmitted.next_timeout == pytest.approx(0.4, abs=0.01)
    assert driver.dropped == 1
    assert client_hello_cookie(driver.sent[0]) == client_hello_cookie(driver.sent[1]) == b""
    assert client_hello_cookie(driver.sent[2]) == hello_verify_cookie(driver.received[0])
    assert conn.export_keying_material(LABEL, 60) == cli_keying_material(server, 60)


@pytest.mark.slow
def test_client_recovers_when_s_server_flight_is_lost(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
) -> None:
    """s_server resends only on its own 1 s timer, then in smaller fragments; we reassemble."""
    ours, theirs = certificates["ecdsa-p256"]
    cert_file, key_file = write_identity(tmp_path, "server", theirs)
    port = free_udp_port()
    server = start_s_server(
        spawn, s_server_args(port, cert_file, key_file, "SRTP_AES128_CM_SHA1_80")
    )
    conn = make_conn(ours, Role.CLIENT, theirs.fingerprint())
    driver = UdpDriver(conn, (LOCALHOST, port))
    drivers.append(driver)
    # Lose the first ServerHello ... ServerHelloDone flight after the cookie exchange.
    driver.drop_received = lambda index, datagram: handshake_type(datagram) == 2 and index < 2
    driver.connect()
    seen = driver.run_until(has_event(events.HandshakeCompleted), STEP)
    assert driver.dropped == 1
    assert isinstance(seen[-1], events.HandshakeCompleted)
    retransmits = only(seen, events.FlightRetransmitted)
    assert retransmits
    assert seen[:-1] == retransmits
    assert [e.count for e in retransmits] == list(range(1, len(retransmits) + 1))
    assert conn.export_keying_material(LABEL, 60) == cli_keying_material(server, 60)


# ------------------------------------------------------------------ s_client vs our server


def test_server_against_s_client_handshake_keys_and_data(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    our_certificate: Certificate,
    peer_certificate: Certificate,
) -> None:
    profile = "SRTP_AES128_CM_SHA1_80"
    cert_file, key_file = write_identity(tmp_path, "client", peer_certificate)
    expected = cli_fingerprint(tmp_path, cert_file)
    conn = make_conn(our_certificate, Role.SERVER, expected)
    driver = UdpDriver(conn)
    drivers.append(driver)
    client = spawn(*s_client_args(driver.address[1], cert_file, key_file, profile))
    seen = driver.run_until(has_event(events.HandshakeCompleted), STEP)

    assert len(seen) == 1
    hs = seen[0]
    assert isinstance(hs, events.HandshakeCompleted)
    client.wait_for(r"^\s+Protocol\s+: DTLSv1\.2$", tag="out")
    cipher = client.wait_for(r"^\s+Cipher\s+: (\S+)$", tag="out").group(1)
    assert hs.protocol_version == "DTLSv1.2"
    assert hs.cipher == cipher
    client.wait_for(rf"^SRTP Extension negotiated, profile={profile}$", tag="out")
    assert hs.srtp_profile is SrtpProfile.AES128_CM_SHA1_80
    assert hs.peer_certificate == peer_certificate
    assert hs.peer_fingerprint == expected
    assert cli_received_certificate(client, "Server certificate") == our_certificate

    material = cli_keying_material(client, 60)
    assert conn.export_keying_material(LABEL, 60) == material
    check_srtp_layout(material, profile, hs, Role.SERVER)

    driver.send(b"0123 from dtls_ossl\n")
    client.wait_for(r"^0123 from dtls_ossl$", tag="out")
    client.write(b"4567 from s_client\n")
    driver.run_until(data_received(1), STEP)

    # EOF on s_client's stdin: it sends close_notify and exits.
    client.close_stdin()
    driver.run_until(terminated, STEP)
    assert client.wait_exit() == 0
    assert driver.events == [
        hs,
        events.DataReceived(b"4567 from s_client\n"),
        events.AlertReceived(1, 0),  # s_client's close_notify
        events.AlertSent(1, 0),  # ours in reply
        events.ConnectionTerminated(error=None, by_peer=True),
    ]
    assert_datagrams_fit(driver, MTU)


def test_server_close_notify_reaches_s_client(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
) -> None:
    ours, theirs = certificates["ecdsa-p256"]
    cert_file, key_file = write_identity(tmp_path, "client", theirs)
    conn = make_conn(ours, Role.SERVER, theirs.fingerprint())
    driver = UdpDriver(conn)
    drivers.append(driver)
    client = spawn(*s_client_args(driver.address[1], cert_file, key_file, None))
    driver.run_until(has_event(events.HandshakeCompleted), STEP)
    client.wait_for(r"^\s+Verify return code: ", tag="out")  # s_client printed its summary
    driver.shutdown()
    client.wait_for(r"^closed$", tag="out")  # SSL_ERROR_ZERO_RETURN
    assert client.wait_exit() == 0


@pytest.mark.parametrize("profile", list(SRTP_LENGTHS))
def test_server_against_s_client_each_srtp_profile(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    profile: str,
) -> None:
    ours, theirs = certificates["ecdsa-p256"]
    cert_file, key_file = write_identity(tmp_path, "client", theirs)
    conn = make_conn(ours, Role.SERVER, theirs.fingerprint())
    driver = UdpDriver(conn)
    drivers.append(driver)
    client = spawn(*s_client_args(driver.address[1], cert_file, key_file, profile))
    (hs,) = driver.run_until(has_event(events.HandshakeCompleted), STEP)
    assert isinstance(hs, events.HandshakeCompleted)
    n = material_length(profile)
    client.wait_for(rf"^SRTP Extension negotiated, profile={profile}$", tag="out")
    material = cli_keying_material(client, n)
    assert conn.export_keying_material(LABEL, n) == material
    assert hs.srtp_profile is SrtpProfile.from_openssl_name(profile)
    check_srtp_layout(material, profile, hs, Role.SERVER)


def test_server_picks_its_preferred_srtp_profile(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
) -> None:
    """As a server, the first of our profiles that the client also offers wins."""
    ours, theirs = certificates["ecdsa-p256"]
    cert_file, key_file = write_identity(tmp_path, "client", theirs)
    mine = (SrtpProfile.AEAD_AES_128_GCM, SrtpProfile.AES128_CM_SHA1_80)
    conn = make_conn(ours, Role.SERVER, theirs.fingerprint(), profiles=mine)
    driver = UdpDriver(conn)
    drivers.append(driver)
    offered = "SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_128_GCM"
    n = material_length("SRTP_AEAD_AES_128_GCM")
    client = spawn(*s_client_args(driver.address[1], cert_file, key_file, offered, keymat_len=n))
    (hs,) = driver.run_until(has_event(events.HandshakeCompleted), STEP)
    assert isinstance(hs, events.HandshakeCompleted)
    assert hs.srtp_profile is SrtpProfile.AEAD_AES_128_GCM
    client.wait_for(r"^SRTP Extension negotiated, profile=SRTP_AEAD_AES_128_GCM$", tag="out")
    material = cli_keying_material(client, n)
    check_srtp_layout(material, "SRTP_AEAD_AES_128_GCM", hs, Role.SERVER)


def test_server_against_s_client_wrong_fingerprint_fails_closed(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    our_certificate: Certificate,
    peer_certificate: Certificate,
) -> None:
    cert_file, key_file = write_identity(tmp_path, "client", peer_certificate)
    wrong = Certificate.generate().fingerprint("sha-256")
    conn = make_conn(our_certificate, Role.SERVER, wrong)
    driver = UdpDriver(conn)
    drivers.append(driver)
    client = spawn(*s_client_args(driver.address[1], cert_file, key_file, "SRTP_AES128_CM_SHA1_80"))
    seen = driver.run_until(terminated, STEP)

    assert not only(seen, events.HandshakeCompleted)
    assert not only(seen, events.DataReceived)
    end = seen[-1]
    assert isinstance(end, events.ConnectionTerminated)
    assert isinstance(end.error, FingerprintMismatchError)
    assert end.error.actual and peer_certificate.fingerprint().hex in " ".join(end.error.actual)
    assert seen == [events.AlertSent(2, 42), end]  # bad_certificate (RFC 5246 §7.2)
    # s_client prints its session summary even after a failed handshake, so only its error
    # line and exit status tell that it failed.
    client.wait_for(r"SSL alert number 42$")
    assert client.wait_exit() != 0


def test_server_rejects_s_client_without_certificate(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
) -> None:
    ours, theirs = certificates["ecdsa-p256"]
    conn = make_conn(ours, Role.SERVER, theirs.fingerprint())
    driver = UdpDriver(conn)
    drivers.append(driver)
    client = spawn(*s_client_args(driver.address[1], None, None, "SRTP_AES128_CM_SHA1_80"))
    seen = driver.run_until(terminated, STEP)
    assert not only(seen, events.HandshakeCompleted)
    end = seen[-1]
    assert isinstance(end, events.ConnectionTerminated)
    assert isinstance(end.error, HandshakeError)
    assert end.by_peer is False
    assert seen == [events.AlertSent(2, 40), end]  # handshake_failure
    client.wait_for(r"SSL alert number 40$")
    assert client.wait_exit() != 0


# ------------------------------------------------------------------------- both roles


def start_pair(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    role: Role,
    ours: Certificate,
    theirs: Certificate,
    expected: list[Fingerprint] | None,
    profile: str | None = "SRTP_AES128_CM_SHA1_80",
    mtu: int = MTU,
) -> tuple[UdpDriver, CliPeer]:
    """Our connection in ``role`` against s_server (we are the client) or s_client."""
    name = "server" if role is Role.CLIENT else "client"
    cert_file, key_file = write_identity(tmp_path, name, theirs)
    cfg = DtlsConfiguration(
        certificate=ours, mtu=mtu, initial_retransmit_timeout=0.2, handshake_timeout=STEP
    )
    conn = DtlsConnection(cfg, role=role, remote_fingerprints=expected)
    if role is Role.CLIENT:
        port = free_udp_port()
        peer = start_s_server(spawn, s_server_args(port, cert_file, key_file, profile, mtu=mtu))
        driver = UdpDriver(conn, (LOCALHOST, port))
        drivers.append(driver)
        driver.connect()
    else:
        driver = UdpDriver(conn)
        drivers.append(driver)
        peer = spawn(*s_client_args(driver.address[1], cert_file, key_file, profile, mtu=mtu))
    return driver, peer


ROLES = pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER], ids=["client", "server"])


@ROLES
def test_fingerprints_given_after_the_peer_flight_arrived(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
) -> None:
    """WebRTC: the answer (with the peer's fingerprint) may come after its first flight."""
    ours, theirs = certificates["ecdsa-p256"]
    driver, peer = start_pair(tmp_path, spawn, drivers, role, ours, theirs, None)
    held = driver.run_until(has_event(events.DatagramsHeld), STEP)
    assert held == [events.DatagramsHeld(count=1)]
    assert "Keying material:" not in peer.text()  # the CLI cannot finish without us
    name = "server" if role is Role.CLIENT else "client"
    fingerprint = cli_fingerprint(tmp_path, f"{name}.crt")
    driver.set_remote_fingerprints([fingerprint])
    seen = driver.run_until(has_event(events.HandshakeCompleted), STEP)
    hs = seen[-1]
    assert isinstance(hs, events.HandshakeCompleted)
    assert hs.peer_fingerprint == fingerprint
    assert [type(e) for e in seen if not isinstance(e, events.FlightRetransmitted)] == [
        events.DatagramsHeld,
        events.HandshakeCompleted,
    ]
    assert conn_material(driver) == cli_keying_material(peer, 60)


def conn_material(driver: UdpDriver) -> bytes:
    return driver.conn.export_keying_material(LABEL, 60)


@ROLES
def test_one_of_several_fingerprints_matches(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
) -> None:
    """RFC 8122 §5: several a=fingerprint lines; the one matching (here sha-512) is reported."""
    ours, theirs = certificates["rsa-2048"]
    name = "server" if role is Role.CLIENT else "client"
    cert_file, _ = write_identity(tmp_path, name, theirs)
    right = cli_fingerprint(tmp_path, cert_file, "sha512")
    assert right.algorithm == "sha-512"
    wrong = Certificate.generate().fingerprint("sha-256")
    driver, peer = start_pair(tmp_path, spawn, drivers, role, ours, theirs, [wrong, right])
    (hs,) = driver.run_until(has_event(events.HandshakeCompleted), STEP)
    assert isinstance(hs, events.HandshakeCompleted)
    assert hs.peer_fingerprint == right
    assert conn_material(driver) == cli_keying_material(peer, 60)


@ROLES
def test_renegotiation_is_refused(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
) -> None:
    """s_server's "r" sends HelloRequest, s_client's "R" a new ClientHello; we refuse with a
    no_renegotiation warning, the CLI answers with a fatal handshake_failure."""
    ours, theirs = certificates["ecdsa-p256"]
    driver, peer = start_pair(tmp_path, spawn, drivers, role, ours, theirs, [theirs.fingerprint()])
    (hs,) = driver.run_until(has_event(events.HandshakeCompleted), STEP)
    cli_keying_material(peer, 60)  # the CLI has printed its summary: it reads stdin now
    peer.write(b"r\n" if role is Role.CLIENT else b"R\n")
    seen = driver.run_until(terminated, STEP)
    end = seen[-1]
    assert isinstance(end, events.ConnectionTerminated)
    assert isinstance(end.error, ProtocolError)
    assert end.error.alert == 40
    assert end.by_peer is True
    assert seen == [
        hs,
        events.AlertSent(1, 100),  # no_renegotiation (RFC 5246 §7.2.2)
        events.AlertReceived(2, 40),
        end,
    ]
    peer.wait_for(r"no renegotiation")


# ------------------------------------------------------------- fragmentation, both roles


@pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER], ids=["client", "server"])
def test_rsa_flights_fragmented_at_small_mtu(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
) -> None:
    """RSA-2048 flights exceed 576 bytes: handshake messages are fragmented both ways."""
    mtu = 576
    ours, theirs = certificates["rsa-2048"]
    profile = "SRTP_AES128_CM_SHA1_80"
    name = "server" if role is Role.CLIENT else "client"
    cert_file, key_file = write_identity(tmp_path, name, theirs)
    conn = make_conn(ours, role, theirs.fingerprint(), mtu=mtu)
    if role is Role.CLIENT:
        port = free_udp_port()
        peer = start_s_server(spawn, s_server_args(port, cert_file, key_file, profile, mtu=mtu))
        driver = UdpDriver(conn, (LOCALHOST, port))
        drivers.append(driver)
        driver.connect()
    else:
        driver = UdpDriver(conn)
        drivers.append(driver)
        peer = spawn(*s_client_args(driver.address[1], cert_file, key_file, profile, mtu=mtu))
    (hs,) = driver.run_until(has_event(events.HandshakeCompleted), STEP)
    assert isinstance(hs, events.HandshakeCompleted)
    assert conn.export_keying_material(LABEL, 60) == cli_keying_material(peer, 60)
    assert_datagrams_fit(driver, mtu)
    # The peer's certificate alone is larger than one datagram.
    assert len(theirs.der) > mtu
    payload = b"7" * (conn.max_payload_size - 1) + b"\n"
    driver.send(payload)
    peer.wait_for(rf"^{payload[:-1].decode()}$", tag="out")
    assert max(map(len, driver.sent)) <= mtu


# ------------------------------------------- a late flight after our timer expired (issue 9)


def _records(datagram: bytes) -> list[tuple[int, int, int]]:
    """(content type, epoch, first body byte) of every record in a datagram."""
    out = []
    at = 0
    while at + 13 <= len(datagram):
        end = at + 13 + int.from_bytes(datagram[at + 11 : at + 13], "big")
        out.append(
            (datagram[at], int.from_bytes(datagram[at + 3 : at + 5], "big"), datagram[at + 13])
        )
        at = end
    return out


def test_client_late_flight_after_expired_timer_completes_at_s_server(
    tmp_path: Path,
    spawn: Callable[..., CliPeer],
    our_certificate: Certificate,
    peer_certificate: Certificate,
) -> None:
    """s_server's flight 2 reaches us after our 50 ms timer expired and before handle_timer()
    ran: OpenSSL retransmits our ClientHello inline, then writes flight 3. s_server drops the
    rest of a datagram that starts with a stale ClientHello, so the two must travel apart for
    the handshake to finish now rather than after s_server's 1 s retransmission."""
    cert_file, key_file = write_identity(tmp_path, "server", peer_certificate)
    port = free_udp_port()
    server = start_s_server(spawn, s_server_args(port, cert_file, key_file, None))
    cfg = DtlsConfiguration(
        certificate=our_certificate,
        mtu=MTU,
        initial_retransmit_timeout=0.05,
        handshake_timeout=STEP,
    )
    conn = DtlsConnection(
        cfg, role=Role.CLIENT, remote_fingerprints=[peer_certificate.fingerprint()]
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((LOCALHOST, port))
        sock.settimeout(STEP)
        conn.connect(time.monotonic())
        for d in conn.datagrams_to_send(time.monotonic()):
            sock.send(d)
        hvr = sock.recv(65536)
        assert handshake_type(hvr) == 3
        conn.receive_datagram(hvr, time.monotonic())
        for d in conn.datagrams_to_send(time.monotonic()):  # the ClientHello with the cookie
            sock.send(d)
        sent_at = time.monotonic()
        flight2: list[bytes] = []
        while not any(r == (22, 0, 14) for d in flight2 for r in _records(d)):  # ServerHelloDone
            flight2.append(sock.recv(65536))
        time.sleep(max(0.0, sent_at + 0.08 - time.monotonic()))  # our 50 ms timer has expired
        now = time.monotonic()
        for d in flight2:
            conn.receive_datagram(d, now)  # handle_timer() is never called in this test
        flight3 = conn.datagrams_to_send(now)
        assert _records(flight3[0]) == [(22, 0, 1)]  # the inline retransmission, alone
        for d in flight3:
            sock.send(d)
        start = time.monotonic()
        sock.settimeout(0.8)  # under s_server's 1 s retransmission timer
        while conn.state is not ConnectionState.ESTABLISHED:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(
                    f"flight 3 was lost: no flight 4 within 0.8 s\n{server.describe()}"
                ) from None
            conn.receive_datagram(data, time.monotonic())
            for d in conn.datagrams_to_send(time.monotonic()):
                sock.send(d)
        assert time.monotonic() - start < 0.8
        assert conn.stats.retransmissions == 0
