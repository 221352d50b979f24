from __future__ import annotations

import array
import hashlib
import io
import time
from pathlib import Path

import pytest
from helpers import (
    FakeClock,
    cached_cert,
    completed,
    current_state,
    drain_events,
    event_types,
    expect_event,
    handshake,
    make_pair,
    openssl_error_queue_is_empty,
    received_data,
    ssl_ctx_of_configuration,
    ssl_ctx_of_connection,
    transfer,
)

from dtls_ossl import (
    ConfigurationError,
    ConnectionState,
    DtlsConfiguration,
    DtlsConnection,
    DtlsError,
    Fingerprint,
    FingerprintMismatchError,
    HandshakeError,
    InvalidStateError,
    PayloadSizeError,
    Role,
    SrtpKeys,
    SrtpProfile,
    events,
    setup_role,
)

# --------------------------------------------------------------------------- handshake


def test_connection_handshake_exact_events() -> None:
    client, server = make_pair()
    handshake(client, server)
    c_events = drain_events(client)
    s_events = drain_events(server)
    assert [type(e) for e in c_events] == [events.HandshakeCompleted]
    assert [type(e) for e in s_events] == [events.HandshakeCompleted]
    c_done = expect_event(c_events, events.HandshakeCompleted)
    s_done = expect_event(s_events, events.HandshakeCompleted)
    assert c_done.protocol_version == s_done.protocol_version == "DTLSv1.2"
    assert c_done.cipher == s_done.cipher == "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert c_done.peer_certificate == cached_cert("server")
    assert s_done.peer_certificate == cached_cert("client")
    assert c_done.peer_fingerprint == cached_cert("server").fingerprint()
    assert s_done.peer_fingerprint == cached_cert("client").fingerprint()
    assert client.state is server.state is ConnectionState.ESTABLISHED
    assert client.get_timer() is None and server.get_timer() is None
    assert client.handshake_info is c_done


@pytest.mark.parametrize("profile", list(SrtpProfile), ids=lambda p: p.name)
def test_connection_every_srtp_profile_mirrors_keys(profile: SrtpProfile) -> None:
    client, server = make_pair({"srtp_profiles": [profile]}, {"srtp_profiles": [profile]})
    handshake(client, server)
    c_done, s_done = completed(client), completed(server)
    assert c_done.srtp_profile is s_done.srtp_profile is profile
    ck, sk = client.srtp_keys(), server.srtp_keys()
    assert ck == c_done.srtp_keys and sk == s_done.srtp_keys
    assert ck.mirrors(sk)
    assert len(ck.local_key) == profile.key_length
    assert len(ck.local_salt) == profile.salt_length
    # RFC 5764 §4.2: client key | server key | client salt | server salt.
    material = client.export_keying_material("EXTRACTOR-dtls_srtp", profile.keying_material_length)
    assert material == server.export_keying_material(
        "EXTRACTOR-dtls_srtp", profile.keying_material_length
    )
    k, s = profile.key_length, profile.salt_length
    assert ck.local_key == material[:k] and ck.remote_key == material[k : 2 * k]
    assert ck.local_salt == material[2 * k : 2 * k + s]
    assert ck.remote_salt == material[2 * k + s :]


def test_connection_server_preference_decides_srtp_profile() -> None:
    offer = [SrtpProfile.AES128_CM_SHA1_80, SrtpProfile.AEAD_AES_256_GCM]
    client, server = make_pair(
        {"srtp_profiles": offer},
        {"srtp_profiles": [SrtpProfile.AEAD_AES_256_GCM, SrtpProfile.AES128_CM_SHA1_80]},
    )
    handshake(client, server)
    assert completed(client).srtp_profile is SrtpProfile.AEAD_AES_256_GCM


def test_connection_no_common_srtp_profile_gives_none() -> None:
    client, server = make_pair(
        {"srtp_profiles": [SrtpProfile.AES128_CM_SHA1_32]},
        {"srtp_profiles": [SrtpProfile.AEAD_AES_128_GCM]},
    )
    handshake(client, server)
    done = completed(client)
    assert done.srtp_profile is None and done.srtp_keys is None
    with pytest.raises(InvalidStateError, match="no SRTP profile"):
        client.srtp_keys()


def test_connection_without_srtp_is_plain_dtls() -> None:
    client, server = make_pair({"srtp_profiles": ()}, {"srtp_profiles": ()})
    handshake(client, server)
    assert completed(server).srtp_profile is None


@pytest.mark.parametrize(
    ("client_key", "server_key", "cipher"),
    [
        ("rsa-2048", "rsa-2048", "ECDHE-RSA-AES128-GCM-SHA256"),
        ("ecdsa-p256", "rsa-2048", "ECDHE-RSA-AES128-GCM-SHA256"),
        ("rsa-2048", "ecdsa-p256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
        ("ecdsa-p384", "ecdsa-p384", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ],
)
def test_connection_certificate_types(client_key: str, server_key: str, cipher: str) -> None:
    client, server = make_pair(
        client_cert=cached_cert("client", client_key),
        server_cert=cached_cert("server", server_key),
    )
    handshake(client, server)
    assert completed(client).cipher == cipher
    assert isinstance(drain_events(server)[0], events.HandshakeCompleted)


def test_connection_roles_from_sdp_setup() -> None:
    # The offerer says actpass, the answerer picks active: the answerer is the DTLS client.
    assert setup_role("active", "actpass") is Role.CLIENT
    offerer_role = setup_role("actpass", "active")
    assert offerer_role is Role.SERVER
    client, server = make_pair()
    assert server.role is offerer_role
    handshake(client, server)
    assert server.state is ConnectionState.ESTABLISHED


def test_connection_data_both_ways_and_batches() -> None:
    client, server = make_pair()
    now = time.monotonic()
    handshake(client, server, now)
    drain_events(client), drain_events(server)
    client.send(b"ping", now)
    transfer(client, server, now)
    server.send(b"pong", now)
    transfer(server, client, now)
    assert drain_events(server) == [events.DataReceived(b"ping")]
    assert drain_events(client) == [events.DataReceived(b"pong")]
    payloads = [bytes([i]) * (i * 7 + 1) for i in range(100)]
    client.send_many(payloads, now)
    datagrams = client.datagrams_to_send(now)
    # Small records are packed several to a datagram, never above the MTU.
    assert 1 < len(datagrams) < 100
    assert all(len(d) <= 1200 for d in datagrams)
    server.receive_datagrams(datagrams, now)
    assert received_data(server) == payloads


def test_connection_bytes_like_inputs_on_every_data_path() -> None:
    client, server = make_pair()
    now = time.monotonic()
    handshake(client, server, now)
    drain_events(client), drain_events(server)
    client.send(bytearray(b"ba"), now)
    client.send(memoryview(b"xxmvxx")[2:4], now)
    for d in client.datagrams_to_send(now):
        server.receive_datagram(bytearray(d), now)
    client.send_many([b"one", bytearray(b"two"), memoryview(b"three")], now)
    server.receive_datagrams([memoryview(d) for d in client.datagrams_to_send(now)], now)
    got = drain_events(server)
    assert got == [events.DataReceived(p) for p in (b"ba", b"mv", b"one", b"two", b"three")]
    assert all(type(expect_event([e], events.DataReceived).data) is bytes for e in got)
    # A buffer that is not contiguous bytes is the caller's error, reported as such.
    with pytest.raises((TypeError, BufferError)):
        client.send(memoryview(b"abcdef")[::2], now)
    with pytest.raises(TypeError):
        server.receive_datagram("text", now)  # type: ignore[arg-type]
    assert client.datagrams_to_send(now) == []
    # A bad item in a batch is reported before any datagram of the batch is processed.
    client.send_many([b"1", b"2"], now)
    good = client.datagrams_to_send(now)
    with pytest.raises(TypeError):
        server.receive_datagrams([*good, "text"], now)  # type: ignore[list-item]
    assert server.next_event() is None
    with pytest.raises(TypeError):
        client.send_many([b"ok", "text"], now)  # type: ignore[list-item]
    assert client.datagrams_to_send(now) == []
    server.receive_datagrams(good, now)
    assert received_data(server) == [b"1", b"2"]
    client.send(b"still fine", now)
    transfer(client, server, now)
    assert drain_events(server) == [events.DataReceived(b"still fine")]


class _Liar(list[bytes]):
    """A list whose len() is larger than what it holds (a broken Sequence)."""

    def __len__(self) -> int:
        return super().__len__() + 5


def test_connection_send_many_checks_every_size_first() -> None:
    client, server = make_pair({"mtu": 500}, {"mtu": 500})
    now = time.monotonic()
    handshake(client, server, now)
    limit = client.max_payload_size
    for bad in (b"", b"a" * (limit + 1)):
        with pytest.raises(PayloadSizeError, match="nothing was sent"):
            client.send_many([b"ok", b"ok", bad, b"ok"], now)
        assert client.datagrams_to_send(now) == []
    client.send_many([], now)
    assert client.datagrams_to_send(now) == []
    # Sizes are in bytes, also for a memoryview of wider items (len() counts the items).
    wide = memoryview(array.array("i", [0] * (limit // 4 + 1)))
    assert len(wide) < limit < wide.nbytes
    with pytest.raises(PayloadSizeError, match=f"a {wide.nbytes}-byte payload"):
        client.send_many([wide], now)
    with pytest.raises(PayloadSizeError, match=f"{wide.nbytes} bytes does not fit"):
        client.send(wide, now)
    assert client.datagrams_to_send(now) == []
    # A sequence whose len() promises more than it holds ends the batch, it does not spin.
    client.send_many(_Liar([b"p", b"q"]), now)
    datagrams = client.datagrams_to_send(now)
    server.receive_datagrams(_Liar(datagrams), now)
    assert [e.data for e in drain_events(server) if isinstance(e, events.DataReceived)] == [
        b"p",
        b"q",
    ]
    client.send_many([b"a" * limit] * 3, now)
    datagrams = client.datagrams_to_send(now)
    assert len(datagrams) == 3 and all(len(d) <= 500 for d in datagrams)
    server.receive_datagrams(datagrams, now)
    assert [e for e in drain_events(server) if isinstance(e, events.DataReceived)] == [
        events.DataReceived(b"a" * limit)
    ] * 3


def test_connection_batches_larger_than_one_c_buffer() -> None:
    """Thousands of records per call: the C loop hands over its buffers and goes on."""
    client, server = make_pair({"mtu": 1500}, {"mtu": 1500})
    now = time.monotonic()
    handshake(client, server, now)
    drain_events(server)
    payloads = [i.to_bytes(4, "big") * 300 for i in range(3000)]  # 1200 B each
    client.send_many(payloads, now)
    datagrams = client.datagrams_to_send(now)
    assert len(datagrams) == 3000
    assert client.stats.datagrams_sent >= 3000
    server.receive_datagrams(datagrams, now)
    assert received_data(server) == payloads
    assert server.stats.datagrams_received >= 3000


def test_connection_batch_receive_stops_at_close_notify() -> None:
    """Records after the peer's close_notify in the same batch are dropped, not delivered."""
    client, server = make_pair()
    now = time.monotonic()
    handshake(client, server, now)
    drain_events(client), drain_events(server)
    client.send_many([b"a", b"b"], now)
    first = client.datagrams_to_send(now)
    client.close(now)
    closing = client.datagrams_to_send(now)
    # A forged record after the close cannot be decrypted anyway; what matters is that the
    # batch stops at the close and counts the rest as dropped.
    before = server.stats.datagrams_dropped
    server.receive_datagrams([*first, *closing, b"\x17\xfe\xfd" + bytes(40)], now)
    got = drain_events(server)
    assert [type(e) for e in got] == [
        *[events.DataReceived] * len([e for e in got if isinstance(e, events.DataReceived)]),
        events.AlertReceived,
        events.AlertSent,
        events.ConnectionTerminated,
    ]
    assert [e.data for e in got if isinstance(e, events.DataReceived)] == [b"a", b"b"]
    assert server.state is ConnectionState.CLOSED
    assert server.stats.datagrams_dropped == before + 1
    assert len(server.datagrams_to_send(now)) == 1  # our close_notify


def test_connection_fast_paths_from_another_thread() -> None:
    """The per-record paths bind the calling thread's buffers on first use from a new thread."""
    import threading

    client, server = make_pair()
    now = time.monotonic()
    handshake(client, server, now)
    drain_events(client), drain_events(server)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            client.send(b"from a thread", now)
            server.receive_datagrams(client.datagrams_to_send(now), now)
            client.send_many([b"x", b"y"], now)
            for d in client.datagrams_to_send(now):
                server.receive_datagram(d, now)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=work)
    t.start()
    t.join(10)
    assert not t.is_alive() and errors == []
    client.send(b"back home", now)
    transfer(client, server, now)
    assert received_data(server) == [b"from a thread", b"x", b"y", b"back home"]


def test_connection_max_payload_and_misuse() -> None:
    client, server = make_pair({"mtu": 500}, {"mtu": 500})
    now = time.monotonic()
    with pytest.raises(InvalidStateError):
        client.send(b"x", now)
    with pytest.raises(InvalidStateError):
        server.connect(now)
    with pytest.raises(InvalidStateError):
        client.export_keying_material("EXTRACTOR-dtls_srtp", 60)
    with pytest.raises(InvalidStateError):
        client.srtp_keys()
    handshake(client, server, now)
    with pytest.raises(InvalidStateError):
        client.connect(now)
    limit = client.max_payload_size
    assert 400 < limit < 500
    client.send(b"a" * limit, now)
    assert all(len(d) <= 500 for d in client.datagrams_to_send(now))
    with pytest.raises(PayloadSizeError):
        client.send(b"a" * (limit + 1), now)
    with pytest.raises(PayloadSizeError):
        client.send(b"", now)
    with pytest.raises(ConfigurationError):
        client.export_keying_material("x", 0)


def test_connection_export_with_context() -> None:
    client, server = make_pair()
    handshake(client, server)
    a = client.export_keying_material("EXPORTER-test", 32, b"ctx")
    assert a == server.export_keying_material("EXPORTER-test", 32, b"ctx")
    assert a != client.export_keying_material("EXPORTER-test", 32)


# --------------------------------------------------------------------------- close


def test_connection_close_notify_exact_events() -> None:
    client, server = make_pair()
    now = time.monotonic()
    handshake(client, server, now)
    drain_events(client), drain_events(server)
    client.close(now)
    transfer(client, server, now)
    assert drain_events(client) == [
        events.AlertSent(1, 0),
        events.ConnectionTerminated(error=None, by_peer=False),
    ]
    # The peer answers close_notify with its own (RFC 5246 §7.2.1).
    assert drain_events(server) == [
        events.AlertReceived(1, 0),
        events.AlertSent(1, 0),
        events.ConnectionTerminated(error=None, by_peer=True),
    ]
    assert client.state is server.state is ConnectionState.CLOSED
    client.close(now)  # idempotent
    assert client.next_event() is None
    with pytest.raises(InvalidStateError):
        client.send(b"late", now)
    with pytest.raises(InvalidStateError):
        client.export_keying_material("EXTRACTOR-dtls_srtp", 60)
    # Keys negotiated before the close stay available for SRTP teardown logic.
    assert isinstance(client.srtp_keys(), SrtpKeys)
    # Anything arriving after the end is dropped and counted.
    before = server.stats.datagrams_dropped
    server.receive_datagram(b"\x17\xfe\xfd" + bytes(20), now)
    assert server.stats.datagrams_dropped == before + 1
    assert server.next_event() is None


def test_connection_close_during_handshake() -> None:
    client, _server = make_pair()
    now = time.monotonic()
    client.connect(now)
    client.close(now)
    assert event_types(client) == [events.ConnectionTerminated]
    assert client.get_timer() is None


# --------------------------------------------------------------------------- fingerprints


def _assert_failed_closed(
    conn: DtlsConnection, error_type: type[DtlsError], by_peer: bool = False
) -> list[events.DtlsEvent]:
    evs = drain_events(conn)
    assert not any(isinstance(e, (events.HandshakeCompleted, events.DataReceived)) for e in evs)
    assert isinstance(evs[-1], events.ConnectionTerminated), evs
    assert isinstance(evs[-1].error, error_type), evs[-1]
    assert evs[-1].by_peer is by_peer
    assert conn.state is ConnectionState.FAILED
    with pytest.raises(InvalidStateError):
        conn.srtp_keys()
    return evs


def test_connection_fingerprint_mismatch_client_fails_closed() -> None:
    wrong = cached_cert("other").fingerprint()
    client, server = make_pair(client_expects=[wrong])
    handshake(client, server)
    evs = _assert_failed_closed(client, FingerprintMismatchError)
    assert evs[0] == events.AlertSent(2, 42)  # bad_certificate goes to the peer
    err = expect_event(evs, events.ConnectionTerminated).error
    assert isinstance(err, FingerprintMismatchError)
    assert err.expected == (str(wrong),)
    assert err.actual == (str(cached_cert("server").fingerprint()),)
    evs = _assert_failed_closed(server, HandshakeError, by_peer=True)
    assert events.AlertReceived(2, 42) in evs


def test_connection_fingerprint_mismatch_server_fails_closed() -> None:
    client, server = make_pair(server_expects=[cached_cert("other").fingerprint()])
    handshake(client, server)
    _assert_failed_closed(server, FingerprintMismatchError)
    _assert_failed_closed(client, HandshakeError, by_peer=True)
    assert client.datagrams_to_send(0) == [] and server.datagrams_to_send(0) == []


@pytest.mark.parametrize("algorithm", ["sha-1", "sha-224", "sha-256", "sha-384", "sha-512"])
def test_connection_each_hash_algorithm(algorithm: str) -> None:
    client, server = make_pair(
        client_expects=[cached_cert("server").fingerprint(algorithm)],
        server_expects=[str(cached_cert("client").fingerprint(algorithm)).lower()],
    )
    handshake(client, server)
    done = completed(client)
    assert done.peer_fingerprint is not None
    assert done.peer_fingerprint.algorithm == algorithm
    digest = hashlib.new(algorithm.replace("-", ""), cached_cert("server").der).digest()
    assert done.peer_fingerprint.value == digest
    assert isinstance(drain_events(server)[0], events.HandshakeCompleted)


def test_connection_several_fingerprints_one_matches() -> None:
    good = cached_cert("server").fingerprint("sha-384")
    client, server = make_pair(
        client_expects=[cached_cert("other").fingerprint(), good],
    )
    handshake(client, server)
    assert completed(client).peer_fingerprint == good


def test_connection_fingerprint_required_or_explicit_opt_out() -> None:
    cfg = DtlsConfiguration(certificate=cached_cert("client"))
    # remote_fingerprints defaults to None: "not known yet" (held flight), never "accept any".
    assert DtlsConnection(cfg, role=Role.CLIENT).remote_fingerprints is None
    with pytest.raises(ConfigurationError):
        DtlsConnection(cfg, role=Role.CLIENT, remote_fingerprints=[])
    with pytest.raises(ConfigurationError):
        DtlsConnection(
            cfg,
            role=Role.CLIENT,
            remote_fingerprints=[cached_cert("server").fingerprint()],
            insecure_skip_fingerprint_check=True,
        )
    client = DtlsConnection(
        cfg, role=Role.CLIENT, remote_fingerprints=None, insecure_skip_fingerprint_check=True
    )
    _, server = make_pair()
    handshake(client, server)
    done = completed(client)
    assert done.peer_fingerprint is None
    assert done.peer_certificate == cached_cert("server")


def test_connection_fingerprints_given_late_to_server() -> None:
    client, server = make_pair(server_expects=None)
    now = time.monotonic()
    handshake(client, server, now)
    # The server answered the ClientHello but holds the client's certificate flight.
    assert event_types(server) == [events.DatagramsHeld]
    assert server.state is ConnectionState.HANDSHAKING
    assert client.state is ConnectionState.HANDSHAKING
    assert server.stats.datagrams_held >= 1
    server.set_remote_fingerprints([str(cached_cert("client").fingerprint())], now)
    transfer(server, client, now)
    assert event_types(server) == [events.HandshakeCompleted]
    assert event_types(client) == [events.HandshakeCompleted]
    with pytest.raises(InvalidStateError):
        server.set_remote_fingerprints([cached_cert("client").fingerprint()], now)


def test_connection_remote_fingerprints_default_is_held_flight() -> None:
    cfg = DtlsConfiguration(certificate=cached_cert("client"))
    client = DtlsConnection(cfg, role=Role.CLIENT)
    _, server = make_pair()
    now = time.monotonic()
    handshake(client, server, now)
    assert event_types(client) == [events.DatagramsHeld]
    assert client.state is ConnectionState.HANDSHAKING
    assert client.handshake_info is None
    client.set_remote_fingerprints([cached_cert("server").fingerprint()], now)
    while transfer(client, server, now) + transfer(server, client, now):
        pass
    assert event_types(client) == [events.HandshakeCompleted]
    assert current_state(client) is ConnectionState.ESTABLISHED


def test_connection_fingerprints_given_late_to_client() -> None:
    client, server = make_pair(client_expects=None)
    now = time.monotonic()
    handshake(client, server, now)
    assert event_types(client) == [events.DatagramsHeld]
    client.set_remote_fingerprints([cached_cert("server").fingerprint()], now)
    handshake_rounds = 0
    while transfer(client, server, now) + transfer(server, client, now):
        handshake_rounds += 1
    assert event_types(client) == [events.HandshakeCompleted]
    assert event_types(server) == [events.HandshakeCompleted]
    assert client.srtp_keys().mirrors(server.srtp_keys())


def test_connection_late_wrong_fingerprint_fails_closed() -> None:
    client, server = make_pair(server_expects=None)
    now = time.monotonic()
    handshake(client, server, now)
    drain_events(server)
    server.set_remote_fingerprints([cached_cert("other").fingerprint()], now)
    _assert_failed_closed(server, FingerprintMismatchError)


def test_connection_held_datagrams_are_bounded() -> None:
    client, server = make_pair(server_expects=None, server_kwargs={"max_held_datagrams": 2})
    now = time.monotonic()
    client.connect(now)
    transfer(client, server, now)
    transfer(server, client, now)
    flight = client.datagrams_to_send(now)
    fake = [
        bytes([22, 0xFE, 0xFD, 0, 1]) + bytes(6) + bytes([0, 20]) + bytes([i]) * 20
        for i in range(5)
    ]
    for d in [*flight, *fake]:
        server.receive_datagram(d, now)
    assert server.stats.datagrams_held == 2
    assert server.stats.datagrams_dropped >= 1


def test_connection_fingerprint_parse_errors_are_configuration_errors() -> None:
    cfg = DtlsConfiguration(certificate=cached_cert("client"))
    with pytest.raises(ConfigurationError):
        DtlsConnection(cfg, role=Role.CLIENT, remote_fingerprints=["sha-256 zz"])
    with pytest.raises(ConfigurationError):
        DtlsConnection(cfg, role=Role.CLIENT, remote_fingerprints=[42])  # type: ignore[list-item]


# --------------------------------------------------------------------------- timers


def test_connection_timer_is_absolute_and_early_handle_is_harmless() -> None:
    clock = FakeClock()
    client, _ = make_pair({"initial_retransmit_timeout": 0.5, "handshake_timeout": 20.0})
    client.connect(clock.now)
    assert len(client.datagrams_to_send(clock.now)) == 1
    deadline = client.get_timer()
    assert deadline is not None
    assert clock.now + 0.4 < deadline <= clock.now + 0.5
    client.handle_timer(clock.now + 0.1)  # early: nothing happens
    assert client.datagrams_to_send(clock.now) == []
    assert client.next_event() is None


def test_connection_handshake_deadline_on_fake_clock() -> None:
    clock = FakeClock()
    client, _ = make_pair(
        {
            "initial_retransmit_timeout": 5.0,
            "handshake_timeout": 2.0,
            "max_retransmit_timeout": 10.0,
        }
    )
    client.connect(clock.now)
    assert client.get_timer() == pytest.approx(clock.now + 2.0)
    client.handle_timer(clock.advance(2.0))
    evs = drain_events(client)
    assert [type(e) for e in evs] == [events.ConnectionTerminated]
    assert "within 2 s" in str(expect_event(evs, events.ConnectionTerminated).error)
    assert client.state is ConnectionState.FAILED
    assert client.get_timer() is None


def test_connection_retransmits_on_real_timer() -> None:
    client, _ = make_pair({"initial_retransmit_timeout": 0.05, "max_retransmit_timeout": 0.1})
    now = time.monotonic()
    client.connect(now)
    first = client.datagrams_to_send(now)
    time.sleep(0.08)
    client.handle_timer(time.monotonic())
    again = client.datagrams_to_send(time.monotonic())
    assert len(again) == len(first) == 1
    # The same ClientHello record, byte for byte except the record sequence number.
    assert again[0][:5] == first[0][:5] and again[0][11:] == first[0][11:]
    evs = drain_events(client)
    retransmitted = expect_event(evs, events.FlightRetransmitted, 0)
    assert len(evs) == 1 and retransmitted.count == 1
    assert retransmitted.next_timeout == pytest.approx(0.1, abs=0.02)
    assert client.stats.retransmissions == 1


# --------------------------------------------------------------------------- callbacks


def test_connection_key_log_lines(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    lines: list[str] = []
    stream = io.StringIO()
    client, server = make_pair({"key_log": str(path)}, {"key_log": lines.append})
    handshake(client, server)
    text = path.read_text()
    assert text.startswith("CLIENT_RANDOM ") and text.endswith("\n")
    assert lines and lines[0].split()[0] == "CLIENT_RANDOM"
    assert lines[0] == text.strip()  # both sides log the same master secret
    c2, s2 = make_pair({"key_log": stream}, {})
    handshake(c2, s2)
    assert stream.getvalue().startswith("CLIENT_RANDOM ")


def test_connection_key_log_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(path))
    client, server = make_pair()
    handshake(client, server)
    assert path.read_text().startswith("CLIENT_RANDOM ")


class KeyLogBoom(Exception):
    pass


def test_connection_raising_callback_propagates_and_fails() -> None:
    def boom(line: str) -> None:
        raise KeyLogBoom(line[:13])

    client, server = make_pair({"key_log": boom})
    now = time.monotonic()
    client.connect(now)
    transfer(client, server, now)
    with pytest.raises(KeyLogBoom, match="CLIENT_RANDOM"):
        transfer(server, client, now)
    assert client.state is ConnectionState.FAILED
    evs = drain_events(client)
    assert isinstance(evs[-1], events.ConnectionTerminated)
    assert openssl_error_queue_is_empty()  # nothing left behind for the next connection
    # The process and other connections carry on.
    c2, s2 = make_pair()
    handshake(c2, s2)
    assert c2.state is ConnectionState.ESTABLISHED


# --------------------------------------------------------------------------- robustness


def test_connection_garbage_dropped_and_counted() -> None:
    client, server = make_pair()
    now = time.monotonic()
    client.connect(now)
    server.receive_datagram(b"", now)  # NEW server: not a ClientHello
    server.receive_datagram(b"\x00\x01garbage", now)
    assert server.state is ConnectionState.NEW
    assert server.stats.datagrams_dropped == 2
    transfer(client, server, now)
    server.receive_datagram(b"\x16\xfe\xfd" + bytes(8) + b"\x00\x64" + bytes(5), now)  # truncated
    assert server.stats.datagrams_dropped == 3
    for _ in range(10):
        if transfer(server, client, now) + transfer(client, server, now) == 0:
            break
    assert current_state(client) is current_state(server) is ConnectionState.ESTABLISHED
    server.receive_datagram(bytearray(b"\x17\xfe\xfd\x00\x01" + bytes(8) + b"junk"), now)
    assert server.next_event() is not None  # HandshakeCompleted, then nothing from junk
    assert server.next_event() is None


def test_connection_many_connections_share_one_context() -> None:
    cfg = DtlsConfiguration(certificate=cached_cert("client"))
    ctx = ssl_ctx_of_configuration(cfg)
    conns = [
        DtlsConnection(cfg, role=Role.CLIENT, remote_fingerprints=[Fingerprint.from_der(b"x")])
        for _ in range(50)
    ]
    assert ssl_ctx_of_configuration(cfg) is ctx
    for c in conns:
        assert ssl_ctx_of_connection(c) == ctx
