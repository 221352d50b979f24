"""Interop with a DTLS 1.2 peer built on pyOpenSSL, over UDP on 127.0.0.1.

pyOpenSSL's wheel carries its own OpenSSL build, so this is a second implementation (another
OpenSSL version, another binding, another I/O loop). The peer runs in its own thread with its
own socket: an ``SSL.Connection`` on memory BIOs (``SSL.DTLS_METHOD``, ``OP_NO_QUERY_MTU``,
``set_ciphertext_mtu``, ``set_tlsext_use_srtp``), driven with ``DTLSv1_get_timeout`` and
``DTLSv1_handle_timeout``. What OpenSSL writes into the memory BIO is split on DTLS record
headers here (RFC 6347 §4.1) and packed into datagrams of at most the MTU. Our connection is
driven in the test's thread by :class:`UdpDriver`.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dtls_ossl import (
    Certificate,
    DtlsConfiguration,
    DtlsConnection,
    Fingerprint,
    FingerprintMismatchError,
    Role,
    SrtpProfile,
    events,
)
from dtls_ossl.configuration import CBC_CIPHERS, DEFAULT_CIPHERS

from .udp_driver import (
    LOCALHOST,
    Certificates,
    UdpDriver,
    data_received,
    has_event,
    terminated,
)

SSL = pytest.importorskip("OpenSSL.SSL", reason="pyOpenSSL is not installed")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")

LABEL = "EXTRACTOR-dtls_srtp"
MTU = 1200
STEP = 5.0
DTLS1_2_VERSION = 0xFEFD  # pyOpenSSL exports no DTLS version constants

# Master key and salt lengths in bytes from RFC 5764 §4.1.2 and RFC 7714 §12, written out here
# rather than taken from dtls_ossl.webrtc.srtp.
SRTP_LENGTHS = {
    b"SRTP_AES128_CM_SHA1_80": (16, 14),
    b"SRTP_AES128_CM_SHA1_32": (16, 14),
    b"SRTP_AEAD_AES_128_GCM": (16, 12),
    b"SRTP_AEAD_AES_256_GCM": (32, 12),
}


def split_records(blob: bytes) -> list[bytes]:
    """Split concatenated DTLS records on their 13-byte headers (length in bytes 11-12)."""
    records = []
    at = 0
    while at < len(blob):
        assert len(blob) - at >= 13, f"truncated record header at {at}"
        end = at + 13 + int.from_bytes(blob[at + 11 : at + 13], "big")
        assert end <= len(blob), f"truncated record at {at}"
        records.append(blob[at:end])
        at = end
    return records


def pack_datagrams(records: list[bytes], mtu: int) -> list[bytes]:
    """Pack whole records into datagrams of at most ``mtu`` bytes, in order."""
    datagrams: list[bytes] = []
    current = b""
    for record in records:
        if current and len(current) + len(record) > mtu:
            datagrams.append(current)
            current = b""
        current += record
    if current:
        datagrams.append(current)
    return datagrams


@dataclass(frozen=True)
class PeerInfo:
    """What the pyOpenSSL peer reports once its handshake completed."""

    version: str
    cipher: str | None
    srtp_profile: bytes
    material: bytes
    peer_der: bytes
    cleartext_mtu: int


class PyOpenSSLPeer:
    """A pyOpenSSL DTLS 1.2 endpoint running in its own thread on its own UDP socket.

    Everything the thread learns is published through thread-safe attributes: the events
    ``handshake_done``, ``peer_closed`` and ``finished``, the ``received`` queue, and ``info``
    (filled before ``handshake_done`` is set).
    """

    def __init__(
        self,
        role: Role,
        cert: Certificate,
        *,
        profiles: bytes | None = b"SRTP_AES128_CM_SHA1_80",
        mtu: int = MTU,
        cookie_exchange: bool = False,
        export_length: int = 60,
        greeting: bytes | None = None,
        ciphers: bytes | None = None,
        lifetime: float = 3 * STEP,
    ) -> None:
        self.role = role
        self.greeting = greeting
        self.mtu = mtu
        self.export_length = export_length
        self.lifetime = lifetime
        _, key_pem = cert.to_pem()
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_min_proto_version(DTLS1_2_VERSION)
        ctx.set_max_proto_version(DTLS1_2_VERSION)
        ctx.set_options(SSL.OP_NO_QUERY_MTU)
        if ciphers is not None:
            ctx.set_cipher_list(ciphers)
        ctx.use_certificate(cert.x509)
        ctx.use_privatekey(serialization.load_pem_private_key(key_pem, None))
        ctx.check_privatekey()
        # Self-signed WebRTC certificates: accept any here, compare the DER afterwards.
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
        if profiles is not None:
            ctx.set_tlsext_use_srtp(profiles)
        self.cookies_issued: list[bytes] = []
        if cookie_exchange:
            ctx.set_options(SSL.OP_COOKIE_EXCHANGE)
            ctx.set_cookie_generate_callback(self._make_cookie)
            ctx.set_cookie_verify_callback(lambda conn, cookie: cookie in self.cookies_issued)
        self.conn = SSL.Connection(ctx, None)  # memory BIOs
        self.conn.set_ciphertext_mtu(mtu)
        if role is Role.CLIENT:
            self.conn.set_connect_state()
        else:
            self.conn.set_accept_state()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCALHOST, 0))
        self.sock.setblocking(False)
        self.remote: tuple[str, int] | None = None

        self.handshake_done = threading.Event()
        self.peer_closed = threading.Event()  # close_notify received
        self.finished = threading.Event()  # the thread has ended
        self.received: queue.Queue[bytes] = queue.Queue()
        self._info: PeerInfo | None = None
        self.failure: Exception | None = None  # an SSL.Error: the handshake or a read failed
        self.crash: BaseException | None = None  # a bug in this peer or the deadline passed
        self.sent: list[bytes] = []
        self.got: list[bytes] = []
        self._commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pyopenssl-peer", daemon=True)

    # ------------------------------------------------------------------- main-thread API

    @property
    def info(self) -> PeerInfo:
        """What the peer negotiated; only after ``handshake_done``."""
        assert self._info is not None, "the pyOpenSSL peer has not completed its handshake"
        return self._info

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return host, port

    def start(self, remote: tuple[str, int] | None = None) -> None:
        """Start the thread; a client connects to ``remote`` and sends its ClientHello."""
        if remote is not None:
            self.remote = remote
            self.sock.connect(remote)
        self._thread.start()

    def send(self, data: bytes) -> None:
        self._commands.put(("send", data))

    def close(self) -> None:
        """Send close_notify."""
        self._commands.put(("close", b""))

    def send_then_close(self, *payloads: bytes) -> None:
        """Send records and close_notify with no flush between them: one datagram."""
        self._commands.put(("send-close", b"\0".join(payloads)))

    def check(self) -> None:
        """Raise if the peer thread crashed."""
        if self.crash is not None:
            raise AssertionError(f"pyOpenSSL peer crashed: {self.crash!r}") from self.crash

    def wait(self, flag: threading.Event, timeout: float = STEP) -> None:
        deadline = time.monotonic() + timeout
        while not flag.wait(0.01):
            self.check()
            if time.monotonic() >= deadline or self.finished.is_set():
                if flag.is_set():
                    return
                raise AssertionError(
                    f"pyOpenSSL peer: timed out (failure={self.failure!r}, info={self._info})"
                )

    def next_data(self, timeout: float = STEP) -> bytes:
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            self.check()
            raise AssertionError(
                f"pyOpenSSL peer received nothing (failure={self.failure!r})"
            ) from None

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self.sock.close()

    # --------------------------------------------------------------------- the thread

    def _make_cookie(self, conn: object) -> bytes:
        cookie = f"cookie-{len(self.cookies_issued)}".encode()
        self.cookies_issued.append(cookie)
        return cookie

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported to the test thread by check()
            self.crash = exc
        finally:
            self.finished.set()

    def _loop(self) -> None:
        deadline = time.monotonic() + self.lifetime
        if self.role is Role.CLIENT:
            self._advance()
            self._flush()
        while not self._stop.is_set():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"pyOpenSSL peer still running after {self.lifetime:g} s")
            if self.failure is not None:
                return
            self._run_commands()
            wait = 0.01
            timeout = self.conn.DTLSv1_get_timeout()
            if timeout is not None:
                wait = max(0.0, min(wait, timeout))
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                self._read_all()
            timeout = self.conn.DTLSv1_get_timeout()
            if timeout is not None and timeout <= 0:
                self.conn.DTLSv1_handle_timeout()
            self._flush()

    def _read_all(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if self.remote is None:
                self.remote = addr
                self.sock.connect(addr)
            self.got.append(data)
            self.conn.bio_write(data)  # one datagram at a time, then let OpenSSL read it
            self._advance()
            self._flush()

    def _advance(self) -> None:
        if not self.handshake_done.is_set():
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                return
            except SSL.Error as exc:
                self.failure = exc
                return
            self._record_handshake()
        while True:
            try:
                data = self.conn.recv(65535)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                self.peer_closed.set()
                return
            except SSL.Error as exc:
                self.failure = exc
                return
            self.received.put(data)

    def _record_handshake(self) -> None:
        c = self.conn
        peer_cert = c.get_peer_certificate(as_cryptography=True)
        assert peer_cert is not None
        self._info = PeerInfo(
            version=c.get_protocol_version_name(),
            cipher=c.get_cipher_name(),
            srtp_profile=c.get_selected_srtp_profile(),
            material=c.export_keying_material(LABEL.encode(), self.export_length),
            peer_der=peer_cert.public_bytes(serialization.Encoding.DER),
            cleartext_mtu=c.get_cleartext_mtu(),
        )
        if self.greeting is not None:
            c.send(self.greeting)  # flushed with the last flight: same datagram as Finished
        self.handshake_done.set()

    def _run_commands(self) -> None:
        while True:
            try:
                command, data = self._commands.get_nowait()
            except queue.Empty:
                return
            if command == "send":
                self.conn.send(data)
            elif command == "close":
                self.conn.shutdown()
            elif command == "send-close":
                for payload in data.split(b"\0"):
                    self.conn.send(payload)
                self.conn.shutdown()
            self._flush()

    def _flush(self) -> None:
        out = b""
        while True:
            try:
                out += self.conn.bio_read(65536)
            except SSL.WantReadError:
                break
        if not out:
            return
        assert self.remote is not None, "the peer produced output before knowing where to send"
        for datagram in pack_datagrams(split_records(out), self.mtu):
            self.sent.append(datagram)
            with contextlib.suppress(ConnectionRefusedError):  # we already closed
                self.sock.send(datagram)


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture
def peers() -> Iterator[Callable[..., PyOpenSSLPeer]]:
    """Make PyOpenSSLPeers; every thread is stopped and socket closed at teardown."""
    made: list[PyOpenSSLPeer] = []

    def make(*args: Any, **kwargs: Any) -> PyOpenSSLPeer:
        peer = PyOpenSSLPeer(*args, **kwargs)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.stop()


@pytest.fixture
def drivers() -> Iterator[list[UdpDriver]]:
    made: list[UdpDriver] = []
    yield made
    for d in made:
        d.close()


def make_conn(
    cert: Certificate,
    role: Role,
    expected: Fingerprint,
    *,
    mtu: int = MTU,
    ciphers: str = DEFAULT_CIPHERS,
) -> DtlsConnection:
    cfg = DtlsConfiguration(
        certificate=cert,
        mtu=mtu,
        initial_retransmit_timeout=0.2,
        handshake_timeout=STEP,
        ciphers=ciphers,
    )
    return DtlsConnection(cfg, role=role, remote_fingerprints=[expected])


def pair(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    our_role: Role,
    ours: Certificate,
    theirs: Certificate,
    expected: Fingerprint | None = None,
    *,
    mtu: int = MTU,
    our_ciphers: str = DEFAULT_CIPHERS,
    **peer_kwargs: object,
) -> tuple[UdpDriver, PyOpenSSLPeer]:
    """Our connection in ``our_role`` and a started pyOpenSSL peer in the other role."""
    conn = make_conn(ours, our_role, expected or theirs.fingerprint(), mtu=mtu, ciphers=our_ciphers)
    if our_role is Role.CLIENT:
        peer = peers(Role.SERVER, theirs, mtu=mtu, **peer_kwargs)
        peer.start()
        driver = UdpDriver(conn, peer.address)
        drivers.append(driver)
        driver.connect()
    else:
        driver = UdpDriver(conn)
        drivers.append(driver)
        peer = peers(Role.CLIENT, theirs, mtu=mtu, **peer_kwargs)
        peer.start(driver.address)
    return driver, peer


def handshake(driver: UdpDriver, peer: PyOpenSSLPeer) -> events.HandshakeCompleted:
    """Run both sides until both completed the handshake; return our HandshakeCompleted."""

    def done(seen: list[events.DtlsEvent]) -> bool:
        peer.check()
        return has_event(events.HandshakeCompleted)(seen) and peer.handshake_done.is_set()

    seen = driver.run_until(done, STEP)
    (hs,) = [e for e in seen if isinstance(e, events.HandshakeCompleted)]
    assert isinstance(hs, events.HandshakeCompleted)
    return hs


def check_srtp_layout(
    material: bytes, profile: bytes, hs: events.HandshakeCompleted, role: Role
) -> None:
    """RFC 5764 §4.2: client_key | server_key | client_salt | server_salt."""
    k, s = SRTP_LENGTHS[profile]
    assert len(material) == 2 * (k + s)
    client = (material[:k], material[2 * k : 2 * k + s])
    server = (material[k : 2 * k], material[2 * k + s :])
    keys = hs.srtp_keys
    assert keys is not None
    local, remote = (client, server) if role is Role.CLIENT else (server, client)
    assert (keys.local_key, keys.local_salt) == local
    assert (keys.remote_key, keys.remote_salt) == remote


ROLES = pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER], ids=["client", "server"])


# ---------------------------------------------------------------------------------- tests


@ROLES
def test_pyopenssl_handshake_keys_and_data(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    our_certificate: Certificate,
    peer_certificate: Certificate,
    role: Role,
) -> None:
    driver, peer = pair(peers, drivers, role, our_certificate, peer_certificate)
    hs = handshake(driver, peer)
    info = peer.info

    assert hs.protocol_version == info.version == "DTLSv1.2"
    assert hs.cipher == info.cipher
    assert info.srtp_profile == b"SRTP_AES128_CM_SHA1_80"
    assert hs.srtp_profile is SrtpProfile.AES128_CM_SHA1_80
    assert hs.peer_certificate == peer_certificate
    assert hs.peer_fingerprint == peer_certificate.fingerprint("sha-256")
    assert info.peer_der == our_certificate.der
    material = info.material
    assert driver.conn.export_keying_material(LABEL, 60) == material
    check_srtp_layout(material, b"SRTP_AES128_CM_SHA1_80", hs, role)

    # Data both ways, including a payload of the largest size that fits one datagram.
    driver.send(b"hello from dtls_ossl")
    assert peer.next_data() == b"hello from dtls_ossl"
    big = bytes(range(256)) * (driver.conn.max_payload_size // 256 + 1)
    big = big[: driver.conn.max_payload_size]
    driver.send(big)
    assert peer.next_data() == big
    peer.send(b"hello from pyOpenSSL")
    driver.run_until(data_received(1), STEP)
    peer.send(big[: info.cleartext_mtu])
    driver.run_until(data_received(2), STEP)
    assert [e for e in driver.events if isinstance(e, events.DataReceived)] == [
        events.DataReceived(b"hello from pyOpenSSL"),
        events.DataReceived(big[: info.cleartext_mtu]),
    ]
    assert max(map(len, driver.sent)) <= MTU
    assert max(map(len, driver.received)) <= MTU


@ROLES
def test_pyopenssl_close_notify_both_ways(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
) -> None:
    ours, theirs = certificates["ecdsa-p256"]
    # We close: the peer reads close_notify.
    driver, peer = pair(peers, drivers, role, ours, theirs)
    handshake(driver, peer)
    driver.shutdown()
    peer.wait(peer.peer_closed)
    assert driver.events[1:] == [
        events.AlertSent(1, 0),
        events.ConnectionTerminated(error=None, by_peer=False),
    ]
    # The peer closes: we report a clean close by the peer.
    driver, peer = pair(peers, drivers, role, ours, theirs)
    handshake(driver, peer)
    peer.close()
    driver.run_until(terminated, STEP)
    assert driver.events[1:] == [
        events.AlertReceived(1, 0),
        events.AlertSent(1, 0),
        events.ConnectionTerminated(error=None, by_peer=True),
    ]


@ROLES
@pytest.mark.parametrize("profile", list(SRTP_LENGTHS), ids=lambda p: p.decode())
def test_pyopenssl_each_srtp_profile(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
    profile: bytes,
) -> None:
    ours, theirs = certificates["ecdsa-p256"]
    k, s = SRTP_LENGTHS[profile]
    n = 2 * (k + s)
    driver, peer = pair(peers, drivers, role, ours, theirs, profiles=profile, export_length=n)
    hs = handshake(driver, peer)
    assert peer.info.srtp_profile == profile
    assert hs.srtp_profile is SrtpProfile.from_openssl_name(profile.decode())
    assert driver.conn.export_keying_material(LABEL, n) == peer.info.material
    check_srtp_layout(peer.info.material, profile, hs, role)


CIPHERS = [
    ("ecdsa-p256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("ecdsa-p256", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("ecdsa-p256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("ecdsa-p256", "ECDHE-ECDSA-AES128-SHA"),
    ("ecdsa-p256", "ECDHE-ECDSA-AES256-SHA"),
    ("rsa-2048", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("rsa-2048", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("rsa-2048", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("rsa-2048", "ECDHE-RSA-AES128-SHA"),
    ("rsa-2048", "ECDHE-RSA-AES256-SHA"),
]


@ROLES
@pytest.mark.parametrize(("key_type", "cipher"), CIPHERS, ids=[c for _, c in CIPHERS])
def test_pyopenssl_each_default_cipher(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
    key_type: str,
    cipher: str,
) -> None:
    """Each suite of our default list (and of CBC_CIPHERS, asked for), forced on the peer,
    carries full-size records."""
    ours, theirs = certificates[key_type]
    assert (cipher in DEFAULT_CIPHERS.split(":")) != (cipher in CBC_CIPHERS.split(":"))
    mine = DEFAULT_CIPHERS + ":" + CBC_CIPHERS
    driver, peer = pair(
        peers, drivers, role, ours, theirs, our_ciphers=mine, ciphers=cipher.encode()
    )
    hs = handshake(driver, peer)
    assert hs.cipher == peer.info.cipher == cipher
    assert driver.conn.export_keying_material(LABEL, 60) == peer.info.material
    size = driver.conn.max_payload_size
    assert 0 < size < MTU
    payload = bytes(i % 251 for i in range(size))
    driver.send(payload)
    assert peer.next_data() == payload
    assert max(map(len, driver.sent)) <= MTU
    peer.send(payload[::-1])
    driver.run_until(data_received(1), STEP)
    assert driver.events[-1] == events.DataReceived(payload[::-1])


def test_pyopenssl_client_gets_server_preferred_profile(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
) -> None:
    """Our server picks the first of its profiles (default order) that the client offers."""
    ours, theirs = certificates["ecdsa-p256"]
    offered = b"SRTP_AES128_CM_SHA1_32:SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_128_GCM"
    driver, peer = pair(peers, drivers, Role.SERVER, ours, theirs, profiles=offered)
    hs = handshake(driver, peer)
    assert hs.srtp_profile is SrtpProfile.AEAD_AES_128_GCM  # first of DEFAULT_SRTP_PROFILES
    assert peer.info.srtp_profile == b"SRTP_AEAD_AES_128_GCM"


def test_pyopenssl_server_cookie_exchange(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
) -> None:
    """A pyOpenSSL server with OP_COOKIE_EXCHANGE sends HelloVerifyRequest first."""
    ours, theirs = certificates["ecdsa-p256"]
    driver, peer = pair(peers, drivers, Role.CLIENT, ours, theirs, cookie_exchange=True)
    handshake(driver, peer)
    assert peer.cookies_issued == [b"cookie-0"]
    hvr = driver.received[0]
    assert hvr[0] == 22 and hvr[13] == 3  # handshake record, HelloVerifyRequest
    assert b"cookie-0" in hvr
    assert b"cookie-0" not in driver.sent[0]
    assert b"cookie-0" in driver.sent[1]  # the second ClientHello echoes it
    driver.send(b"after cookies")
    assert peer.next_data() == b"after cookies"


def test_pyopenssl_server_data_in_the_datagram_of_its_finished(
    peers: Callable[..., PyOpenSSLPeer], drivers: list[UdpDriver], certificates: Certificates
) -> None:
    """Application data packed after the server's ChangeCipherSpec and Finished, in one
    datagram, is reported right after HandshakeCompleted."""
    ours, theirs = certificates["ecdsa-p256"]
    driver, peer = pair(peers, drivers, Role.CLIENT, ours, theirs, greeting=b"first words")
    hs = handshake(driver, peer)
    driver.run_until(data_received(1), STEP)
    # ChangeCipherSpec, Finished (handshake, epoch 1), application_data: one datagram.
    assert [r[0] for r in split_records(driver.received[-1])] == [20, 22, 23]
    assert driver.events == [hs, events.DataReceived(b"first words")]


@ROLES
def test_pyopenssl_rsa_flights_fragmented_at_small_mtu(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
) -> None:
    mtu = 576
    ours, theirs = certificates["rsa-2048"]
    driver, peer = pair(peers, drivers, role, ours, theirs, mtu=mtu)
    hs = handshake(driver, peer)
    assert len(theirs.der) > mtu and len(ours.der) > mtu
    assert driver.conn.export_keying_material(LABEL, 60) == peer.info.material
    assert hs.peer_certificate == theirs
    assert max(map(len, driver.sent)) <= mtu
    assert max(map(len, driver.received)) <= mtu
    assert max(map(len, peer.sent)) <= mtu


@ROLES
@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_pyopenssl_many_records_in_order(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
    batched: bool,
) -> None:
    """50 records each way; batched uses send_many() and receive_datagrams()."""
    ours, theirs = certificates["ecdsa-p256"]
    driver, peer = pair(peers, drivers, role, ours, theirs)
    handshake(driver, peer)
    driver.batch = batched
    n = 50
    mine = [f"ours {i}".encode() for i in range(n)]
    for i in range(n):
        peer.send(f"theirs {i}".encode())
    if batched:
        driver.conn.send_many(mine, time.monotonic())
        driver.flush()
    else:
        for payload in mine:
            driver.send(payload)
    driver.run_until(data_received(n), STEP)
    assert [e.data for e in driver.events if isinstance(e, events.DataReceived)] == [
        f"theirs {i}".encode() for i in range(n)
    ]
    assert [peer.next_data() for _ in range(n)] == mine


def summary(seen: list[events.DtlsEvent]) -> list[str]:
    """Short names of events, so that an ordering failure reads at a glance."""
    out = []
    for e in seen:
        if isinstance(e, events.DataReceived):
            out.append(f"Data({e.data.decode()})")
        elif isinstance(e, (events.AlertReceived, events.AlertSent)):
            out.append(f"{type(e).__name__}({e.name})")
        elif isinstance(e, events.ConnectionTerminated):
            out.append(f"Terminated(error={e.error!r}, by_peer={e.by_peer})")
        else:
            out.append(type(e).__name__)
    return out


def expected_close_after(n: int) -> list[str]:
    return [
        "HandshakeCompleted",
        *(f"Data(record {i})" for i in range(n)),
        "AlertReceived(close_notify)",  # the peer's close_notify comes after its data
        "AlertSent(close_notify)",
        "Terminated(error=None, by_peer=True)",
    ]


@ROLES
def test_pyopenssl_data_then_close_notify_one_by_one(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
) -> None:
    """Records, then close_notify, each in its own datagram, fed with receive_datagram()."""
    ours, theirs = certificates["ecdsa-p256"]
    driver, peer = pair(peers, drivers, role, ours, theirs)
    handshake(driver, peer)
    for i in range(10):
        peer.send(f"record {i}".encode())
    peer.close()
    driver.run_until(terminated, STEP)
    assert len(driver.received) >= 11
    assert summary(driver.events) == expected_close_after(10)


@ROLES
def test_pyopenssl_data_then_close_notify_batched(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
) -> None:
    """The same datagrams fed with receive_datagrams(), which is documented as equivalent to
    receive_datagram() for each one, in order: data must still come before the alert."""
    ours, theirs = certificates["ecdsa-p256"]
    driver, peer = pair(peers, drivers, role, ours, theirs)
    handshake(driver, peer)
    driver.batch = True
    before = len(peer.sent)
    for i in range(10):
        peer.send(f"record {i}".encode())
    peer.close()
    # Let all 11 datagrams reach our socket first, so that one receive_datagrams() call gets
    # them all.
    deadline = time.monotonic() + STEP
    while len(peer.sent) < before + 11 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    driver.run_until(terminated, STEP)
    assert driver.batches == [11]
    assert summary(driver.events) == expected_close_after(10)


@ROLES
def test_pyopenssl_data_and_close_notify_in_one_datagram(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    certificates: Certificates,
    role: Role,
) -> None:
    """Three application_data records and close_notify packed in one datagram."""
    ours, theirs = certificates["ecdsa-p256"]
    driver, peer = pair(peers, drivers, role, ours, theirs)
    handshake(driver, peer)
    peer.send_then_close(*(f"record {i}".encode() for i in range(3)))
    driver.run_until(terminated, STEP)
    assert [r[0] for r in split_records(driver.received[-1])] == [23, 23, 23, 21]
    assert summary(driver.events) == expected_close_after(3)


def test_pyopenssl_server_gets_our_lost_final_client_flight_again(
    peers: Callable[..., PyOpenSSLPeer], drivers: list[UdpDriver], certificates: Certificates
) -> None:
    """Our client's Certificate ... Finished flight is lost once: our 0.2 s timer resends it."""
    ours, theirs = certificates["ecdsa-p256"]
    conn = make_conn(ours, Role.CLIENT, theirs.fingerprint())
    peer = peers(Role.SERVER, theirs)
    peer.start()
    driver = UdpDriver(conn, peer.address)
    drivers.append(driver)
    driver.drop_sent = lambda index, datagram: index == 1  # ClientHello, then flight 5
    driver.connect()
    hs = handshake(driver, peer)
    assert driver.dropped_sent == 1
    # The same flight again (Certificate first), in new records: only sequence numbers differ.
    assert driver.sent[1][13] == driver.sent[2][13] == 11
    assert len(driver.sent[1]) == len(driver.sent[2])
    retransmitted, completed = driver.events
    assert isinstance(retransmitted, events.FlightRetransmitted)
    assert retransmitted.count == 1
    assert retransmitted.next_timeout == pytest.approx(0.4, abs=0.01)
    assert completed == hs
    assert conn.export_keying_material(LABEL, 60) == peer.info.material


@pytest.mark.slow
def test_pyopenssl_client_recovers_our_lost_final_server_flight(
    peers: Callable[..., PyOpenSSLPeer], drivers: list[UdpDriver], certificates: Certificates
) -> None:
    """Our server's ChangeCipherSpec + Finished is lost once after we are established: the
    client's retransmitted flight (its 1 s timer) must make us send ours again."""
    ours, theirs = certificates["ecdsa-p256"]
    conn = make_conn(ours, Role.SERVER, theirs.fingerprint())
    driver = UdpDriver(conn)
    drivers.append(driver)
    driver.drop_sent = lambda index, datagram: datagram[0] == 20 and driver.dropped_sent == 0
    peer = peers(Role.CLIENT, theirs)
    peer.start(driver.address)
    hs = handshake(driver, peer)
    assert driver.dropped_sent == 1
    assert driver.events == [hs]  # established before the loss; nothing else to report
    assert sum(d[0] == 20 for d in driver.sent) == 2  # our final flight went out twice
    assert conn.export_keying_material(LABEL, 60) == peer.info.material
    peer.send(b"after recovery")
    driver.run_until(data_received(1), STEP)
    driver.send(b"after recovery too")
    assert peer.next_data() == b"after recovery too"


@ROLES
def test_pyopenssl_wrong_fingerprint_fails_closed(
    peers: Callable[..., PyOpenSSLPeer],
    drivers: list[UdpDriver],
    our_certificate: Certificate,
    peer_certificate: Certificate,
    role: Role,
) -> None:
    wrong = Certificate.generate().fingerprint("sha-256")
    driver, peer = pair(peers, drivers, role, our_certificate, peer_certificate, expected=wrong)
    seen = driver.run_until(terminated, STEP)
    end = seen[-1]
    assert isinstance(end, events.ConnectionTerminated)
    assert isinstance(end.error, FingerprintMismatchError)
    assert end.by_peer is False
    assert seen == [events.AlertSent(2, 42), end]  # bad_certificate, nothing else
    # The peer reads our fatal alert: its handshake fails and no data ever flows.
    peer.wait(peer.finished)
    peer.check()
    assert peer.failure is not None
    assert "bad certificate" in str(peer.failure)
    assert not peer.handshake_done.is_set()
    assert peer.received.empty()
