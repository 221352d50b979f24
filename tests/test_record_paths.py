"""The per-record paths of an established connection (_cffi_src/fastpath.c, driver.c).

They skip three things the other calls do, each for a reason tested here:

- the look at OpenSSL's error queue before each call: an entry another library left in it must
  still never turn a forged datagram, a close_notify or a record into a failure, and a genuine
  failure must still end the connection;
- the read of OpenSSL's retransmission timer once it is off on an established DTLS 1.2
  connection: nothing the peer sends (a repeated Finished, a renegotiation attempt) starts it;
- new bytes and DataReceived objects: those made before are filled again in place once the
  caller has let go of them, and never while anything holds them.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import hmac
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from helpers import (
    cached_cert,
    current_state,
    drain_events,
    drain_openssl_error_queue,
    handshake,
    make_pair,
    openssl_error_queue_is_empty,
    openssl_timer_running,
    push_foreign_openssl_error,
)

from dtls_ossl import (
    ConnectionState,
    DtlsConfiguration,
    DtlsConnection,
    ProtocolError,
    Role,
    events,
)

pytestmark = pytest.mark.timeout(120)

NOW = 1000.0
GCM = "ECDHE-ECDSA-AES128-GCM-SHA256"


def _record(content_type: int, epoch: int, seq: int, body: bytes) -> bytes:
    """A DTLS 1.2 record: type, version, epoch, 48-bit sequence number, length, body."""
    return (
        bytes([content_type, 0xFE, 0xFD])
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + len(body).to_bytes(2, "big")
        + body
    )


def _established(**client_kwargs: object) -> tuple[DtlsConnection, DtlsConnection]:
    client, server = make_pair(dict(client_kwargs))
    handshake(client, server, NOW)
    drain_events(client)
    drain_events(server)
    assert client.state is server.state is ConnectionState.ESTABLISHED
    return client, server


def _deliver(src: DtlsConnection, dst: DtlsConnection, batch: bool) -> None:
    out = src.datagrams_to_send(NOW)
    if batch:
        dst.receive_datagrams(out, NOW)
    else:
        for d in out:
            dst.receive_datagram(d, NOW)


# --- a foreign entry in OpenSSL's error queue ------------------------------------------------


@pytest.mark.parametrize("library", ["USER", "SYS"])
@pytest.mark.parametrize("batch", [False, True])
def test_foreign_error_does_not_fail_a_forged_datagram(library: str, batch: bool) -> None:
    """A forged protected record fails OpenSSL's MAC check and is dropped (want-read); an entry
    another library left in the queue (SYS makes SSL_get_error say SYSCALL) changes nothing.
    OpenSSL 3.x's SSL_get_error reads any entry in the queue as the call's failure: the entry is
    found foreign and emptied. OpenSSL 4.0's does not read it there: the entry is left as it
    was. Either way nothing of the forged record's is left behind."""
    client, server = _established(ciphers=GCM)
    forged = _record(23, 1, 5000, bytes(range(48)))
    for victim in (server, client):
        foreign = push_foreign_openssl_error(library)
        if batch:
            victim.receive_datagrams([forged, forged], NOW)
        else:
            victim.receive_datagram(forged, NOW)
        assert drain_events(victim) == []
        assert victim.datagrams_to_send(NOW) == []
        assert victim.state is ConnectionState.ESTABLISHED
        assert drain_openssl_error_queue() in ([], [foreign])
    client.send(b"still", NOW)
    _deliver(client, server, batch)
    assert drain_events(server) == [events.DataReceived(b"still")]


@pytest.mark.parametrize("batch", [False, True])
def test_foreign_error_leaves_records_and_sends_alone(batch: bool) -> None:
    client, server = _established()
    for n in range(3):
        push_foreign_openssl_error()
        if batch:
            client.send_many([b"a%d" % n, b"b%d" % n], NOW)
        else:
            client.send(b"a%d" % n, NOW)
            client.send(b"b%d" % n, NOW)
        push_foreign_openssl_error()
        _deliver(client, server, batch)
        assert drain_events(server) == [
            events.DataReceived(b"a%d" % n),
            events.DataReceived(b"b%d" % n),
        ]
    assert client.state is server.state is ConnectionState.ESTABLISHED
    while not openssl_error_queue_is_empty():  # nothing failed: nothing looked at the entries
        pass


@pytest.mark.parametrize("batch", [False, True])
def test_foreign_error_does_not_turn_close_notify_into_a_failure(batch: bool) -> None:
    client, server = _established()
    client.close(NOW)
    push_foreign_openssl_error()
    _deliver(client, server, batch)
    evs = drain_events(server)
    assert evs[-1] == events.ConnectionTerminated(error=None, by_peer=True)
    assert server.state is ConnectionState.CLOSED


def _prf_sha256(secret: bytes, label: bytes, seed: bytes, n: int) -> bytes:
    """TLS 1.2's PRF with SHA-256 (RFC 5246 section 5)."""
    seed = label + seed
    out, a = b"", seed
    while len(out) < n:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + seed, hashlib.sha256).digest()
    return out[:n]


def _established_with_client_keys() -> tuple[DtlsConnection, DtlsConnection, bytes, bytes]:
    """An established AES-128-GCM pair and the client's write key and salt (RFC 5288), from the
    client's key log and the ServerHello's random."""
    lines: list[str] = []
    client, server = make_pair({"ciphers": GCM, "key_log": lines.append})
    client.connect(NOW)
    for d in client.datagrams_to_send(NOW):
        server.receive_datagram(d, NOW)
    flight2 = server.datagrams_to_send(NOW)
    server_random = flight2[0][13 + 12 + 2 : 13 + 12 + 2 + 32]
    for d in flight2:
        client.receive_datagram(d, NOW)
    handshake_rest = client.datagrams_to_send(NOW)
    for d in handshake_rest:
        server.receive_datagram(d, NOW)
    for d in server.datagrams_to_send(NOW):
        client.receive_datagram(d, NOW)
    drain_events(client)
    drain_events(server)
    assert client.state is server.state is ConnectionState.ESTABLISHED
    (line,) = [x for x in lines if x.startswith("CLIENT_RANDOM ")]
    _, client_random, master = line.split()
    keys = _prf_sha256(
        bytes.fromhex(master), b"key expansion", server_random + bytes.fromhex(client_random), 40
    )
    return client, server, keys[0:16], keys[32:36]


def _protect(key: bytes, salt: bytes, content_type: int, seq: int, plaintext: bytes) -> bytes:
    nonce = (1).to_bytes(2, "big") + seq.to_bytes(6, "big")  # epoch 1
    aad = nonce + bytes([content_type, 0xFE, 0xFD]) + len(plaintext).to_bytes(2, "big")
    return _record(content_type, 1, seq, nonce + AESGCM(key).encrypt(salt + nonce, plaintext, aad))


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("foreign", [False, True])
def test_genuine_failure_still_ends_the_connection(batch: bool, foreign: bool) -> None:
    """A correctly protected heartbeat record is a genuine failure (unexpected_message): it ends
    the connection with or without a foreign entry in the queue, which then shows among the
    reasons (the queue is not emptied before each record)."""
    _, server, key, salt = _established_with_client_keys()
    bad = _protect(key, salt, 24, 1000, b"x")
    if foreign:
        push_foreign_openssl_error()
    if batch:
        server.receive_datagrams([bad], NOW)
    else:
        server.receive_datagram(bad, NOW)
    evs = drain_events(server)
    assert evs[-2:-1] == [events.AlertSent(2, 10)]
    term = evs[-1]
    assert isinstance(term, events.ConnectionTerminated)
    assert isinstance(term.error, ProtocolError)
    assert "unexpected record" in str(term.error)
    assert term.by_peer is False
    assert server.state is ConnectionState.FAILED
    assert openssl_error_queue_is_empty()


def test_genuine_fatal_alert_with_a_foreign_error_in_the_queue() -> None:
    _, server, key, salt = _established_with_client_keys()
    push_foreign_openssl_error()
    server.receive_datagram(_protect(key, salt, 21, 1000, bytes([2, 40])), NOW)
    term = drain_events(server)[-1]
    assert isinstance(term, events.ConnectionTerminated)
    assert term.by_peer is True
    assert isinstance(term.error, ProtocolError)
    assert term.error.alert == 40


# --- OpenSSL's retransmission timer once established ----------------------------------------


def test_a_repeated_finished_is_answered_without_starting_the_timer() -> None:
    """The server's last flight is lost, so the client resends its own (a retransmission, with
    new record numbers): the established server answers each time from OpenSSL's buffer of its
    last flight, and no timer starts on it. Real time: OpenSSL keeps its own clock."""
    client, server = make_pair({"initial_retransmit_timeout": 0.05})
    client.connect(time.monotonic())
    for src, dst in ((client, server), (server, client), (client, server)):
        now = time.monotonic()
        for d in src.datagrams_to_send(now):
            dst.receive_datagram(d, now)
    assert server.state is ConnectionState.ESTABLISHED
    assert server.datagrams_to_send(time.monotonic())  # the last flight, lost
    assert current_state(client) is not ConnectionState.ESTABLISHED
    for attempt in range(3):
        at = client.get_timer()
        assert at is not None
        time.sleep(max(0.0, at - time.monotonic()) + 0.01)
        now = time.monotonic()
        client.handle_timer(now)
        resent = client.datagrams_to_send(now)
        assert resent, "the client did not retransmit"
        for d in resent:
            server.receive_datagram(d, now)
        again = server.datagrams_to_send(now)
        assert again, "the server did not answer the repeated Finished"
        assert server.get_timer() is None
        assert not openssl_timer_running(server)
        if attempt == 2:
            for d in again:
                client.receive_datagram(d, now)
    assert current_state(client) is ConnectionState.ESTABLISHED
    assert client.get_timer() is None
    assert not openssl_timer_running(client)
    client.send(b"after", time.monotonic())
    for d in client.datagrams_to_send(time.monotonic()):
        server.receive_datagram(d, time.monotonic())
    assert drain_events(server)[-1] == events.DataReceived(b"after")


def test_timer_stays_off_through_records_both_ways() -> None:
    client, server = _established()
    for n in range(20):
        client.send(b"c%d" % n, NOW)
        _deliver(client, server, n % 2 == 0)
        server.send_many([b"s%d" % n], NOW)
        _deliver(server, client, n % 2 == 1)
    for conn in (client, server):
        assert conn.get_timer() is None
        assert not openssl_timer_running(conn)
    assert len(drain_events(server)) == len(drain_events(client)) == 20


def _ssl() -> Any:
    return pytest.importorskip("OpenSSL.SSL", reason="pyOpenSSL is not installed")


def _split_records(blob: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(blob):
        end = at + 13 + int.from_bytes(blob[at + 11 : at + 13], "big")
        out.append(blob[at:end])
        at = end
    return out


class _PyOpenSSLPeer:
    """A pyOpenSSL DTLS 1.2 endpoint on memory BIOs, driven in memory: it can renegotiate,
    which dtls_ossl refuses (SSL_OP_NO_RENEGOTIATION)."""

    def __init__(self, server: bool) -> None:
        from cryptography.hazmat.primitives import serialization

        from dtls_ossl import Certificate

        SSL = self.SSL = _ssl()
        cert = Certificate.generate()
        _, key_pem = cert.to_pem()
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_min_proto_version(0xFEFD)
        ctx.set_max_proto_version(0xFEFD)
        ctx.set_options(SSL.OP_NO_QUERY_MTU)
        ctx.use_certificate(cert.x509)
        ctx.use_privatekey(serialization.load_pem_private_key(key_pem, None))
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: True)
        self.fingerprint = cert.fingerprint()
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_ciphertext_mtu(1200)
        if server:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()

    def step(self) -> None:
        with contextlib.suppress(self.SSL.WantReadError):
            self.conn.do_handshake()

    def output(self) -> list[bytes]:
        out: list[bytes] = []
        while True:
            try:
                out += _split_records(self.conn.bio_read(65536))
            except self.SSL.WantReadError:
                return out

    def feed(self, datagrams: list[bytes]) -> None:
        for d in datagrams:
            self.conn.bio_write(d)
            with contextlib.suppress(self.SSL.WantReadError, self.SSL.Error):
                self.conn.recv(65536)


@pytest.mark.parametrize("ours", ["server", "client"])
def test_peer_renegotiation_is_refused_without_starting_the_timer(ours: str) -> None:
    """A pyOpenSSL peer renegotiates (its ClientHello, or its HelloRequest, in epoch 1): we
    answer with a no_renegotiation warning and stay established, with no timer."""
    peer = _PyOpenSSLPeer(server=ours == "client")
    cert = cached_cert("server" if ours == "server" else "client")
    conn = DtlsConnection(
        DtlsConfiguration(certificate=cert),
        role=Role.SERVER if ours == "server" else Role.CLIENT,
        remote_fingerprints=[peer.fingerprint],
    )
    if ours == "client":
        conn.connect(NOW)
    else:
        peer.step()
    for _ in range(8):
        for d in peer.output():
            conn.receive_datagram(d, NOW)
        peer.feed(conn.datagrams_to_send(NOW))
        peer.step()
    assert conn.state is ConnectionState.ESTABLISHED
    drain_events(conn)
    assert not openssl_timer_running(conn)
    assert peer.conn.renegotiate()
    peer.step()
    attempt = peer.output()
    assert attempt, "pyOpenSSL sent no renegotiation message"
    for d in attempt:
        conn.receive_datagram(d, NOW)
    assert drain_events(conn) == [events.AlertSent(1, 100)]  # no_renegotiation, a warning
    assert conn.state is ConnectionState.ESTABLISHED
    assert conn.get_timer() is None
    assert not openssl_timer_running(conn)
    conn.send(b"still here", NOW)
    assert len(conn.datagrams_to_send(NOW)) == 2  # the alert, then the record


# --- reused bytes and events -----------------------------------------------------------------


@pytest.mark.parametrize("batch", [False, True])
def test_objects_held_by_the_caller_are_never_reused(batch: bool) -> None:
    """Every datagram and record kept stays as it was while many more go by (1200 bytes: the
    size the pools take), whether the caller keeps the bytes or the event."""
    client, server = _established(mtu=1500)
    kept_wire: list[bytes] = []
    kept_events: list[events.DataReceived] = []
    kept_data: list[bytes] = []
    expected: list[bytes] = []
    for n in range(300):
        payload = n.to_bytes(4, "big") * 300
        if batch:
            client.send_many([payload], NOW)
        else:
            client.send(payload, NOW)
        out = client.datagrams_to_send(NOW)
        if n % 3 == 0:
            kept_wire.append(out[0])
            expected.append(bytes(out[0]))
        _deliver_list(out, server, batch)
        ev = server.next_event()
        assert isinstance(ev, events.DataReceived)
        assert ev.data == payload
        assert hash(ev.data) == hash(bytes(bytearray(payload)))
        if n % 5 == 0:
            kept_events.append(ev)
        elif n % 5 == 1:
            kept_data.append(ev.data)
        del ev
    assert [bytes(b) for b in kept_wire] == expected
    assert [e.data for e in kept_events] == [
        n.to_bytes(4, "big") * 300 for n in range(300) if n % 5 == 0
    ]
    assert kept_data == [n.to_bytes(4, "big") * 300 for n in range(300) if n % 5 == 1]


def _deliver_list(out: list[bytes], dst: DtlsConnection, batch: bool) -> None:
    if batch:
        dst.receive_datagrams(out, NOW)
    else:
        for d in out:
            dst.receive_datagram(d, NOW)


def test_a_view_keeps_its_bytes() -> None:
    client, server = _established(mtu=1500)
    client.send(b"A" * 1200, NOW)
    for d in client.datagrams_to_send(NOW):
        server.receive_datagram(d, NOW)
    ev = server.next_event()
    assert isinstance(ev, events.DataReceived)
    view = memoryview(ev.data)
    del ev
    for n in range(20):
        client.send(bytes([n]) * 1200, NOW)
        for d in client.datagrams_to_send(NOW):
            server.receive_datagram(d, NOW)
        drain_events(server)
    assert view.tobytes() == b"A" * 1200


def test_an_event_whose_slot_was_replaced_is_not_reused() -> None:
    """object.__setattr__ gets round the frozen event: the bytes put in its place, smaller than
    the pool's, are never written to, and the event is not handed out again."""
    client, server = _established(mtu=1500)
    client.send(b"B" * 1200, NOW)
    for d in client.datagrams_to_send(NOW):
        server.receive_datagram(d, NOW)
    ev = server.next_event()
    assert isinstance(ev, events.DataReceived)
    small = bytes(bytearray(b"tiny"))
    object.__setattr__(ev, "data", small)
    replaced = id(ev)
    del ev
    gc.collect()
    for n in range(20):
        client.send(bytes([n]) * 1200, NOW)
        for d in client.datagrams_to_send(NOW):
            server.receive_datagram(d, NOW)
        got = server.next_event()
        assert isinstance(got, events.DataReceived)
        assert got.data == bytes([n]) * 1200
        assert id(got) != replaced or got.data is not small
        del got
    assert small == b"tiny"


def test_one_byte_records_leave_the_shared_single_bytes_alone() -> None:
    """CPython shares one object per single-byte value; a pooled record of one byte must be a
    fresh object, or refilling it would change that byte for the whole interpreter."""
    client, server = _established()
    for n in range(256):
        client.send(bytes([n]), NOW)
        for d in client.datagrams_to_send(NOW):
            server.receive_datagram(d, NOW)
        ev = server.next_event()
        assert isinstance(ev, events.DataReceived)
        assert ev.data == bytes([n])
        del ev
    assert [bytes([n])[0] for n in range(256)] == list(range(256))
    assert [b"%c" % n for n in range(256)] == [bytes([n]) for n in range(256)]
