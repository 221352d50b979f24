"""Fuzzing ``receive_datagram`` in every state of a connection.

Invariant (as h11's fuzz harness, fuzz/afl-server.py in its repository), checked on every example:

    Whatever bytes arrive, in whatever state,
      1. ``receive_datagram`` returns normally;
      2. only the known event types come out, and ConnectionTerminated is the last one;
      3. the state never goes backwards (NEW < HANDSHAKING < ESTABLISHED < CLOSED/FAILED);
      4. no HandshakeCompleted and no DataReceived is ever produced from garbage;
      5. bytes that are not DTLS framing are dropped, counted in ``stats.datagrams_dropped``,
         change nothing, and the real handshake / data exchange still completes after them.

Garbage is random bytes, and mutations (bit flips, truncation, extension, record header
changes, splices) of real datagrams captured from *another* handshake with the same
certificates, so no mutation can legitimately complete this connection's handshake. Well-formed
epoch-0 handshake records are not authenticated in DTLS 1.2, so a forged one may legitimately
kill a handshake in progress: for those, rule 5's "still completes" is only required where
OpenSSL must ignore them (a NEW client, an established or ended connection).

Profiles: "ci" (200 examples, derandomized) by default; HYPOTHESIS_PROFILE=dev for more.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtls_ossl import (
    Certificate,
    ConnectionState,
    DtlsConfiguration,
    DtlsConnection,
    Role,
    events,
)

pytestmark = pytest.mark.fuzz

settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

KNOWN_EVENTS = (
    events.HandshakeCompleted,
    events.DataReceived,
    events.AlertReceived,
    events.AlertSent,
    events.FlightRetransmitted,
    events.DatagramsHeld,
    events.ConnectionTerminated,
)
ORDER = list(ConnectionState)
ENDED = (ConnectionState.CLOSED, ConnectionState.FAILED)


def rank(state: ConnectionState) -> int:
    return min(ORDER.index(state), ORDER.index(ConnectionState.CLOSED))  # CLOSED ~ FAILED


def is_dtls_framing(data: bytes) -> bool:
    """The library's definition of "looks like DTLS": whole records, type 20..26, 0xfe.."""
    if not 13 <= len(data) <= 65535:
        return False
    off = 0
    while off < len(data):
        if len(data) - off < 13:
            return False
        if not 20 <= data[off] <= 26 or data[off + 1] != 0xFE:
            return False
        off += 13 + int.from_bytes(data[off + 11 : off + 13], "big")
        if off > len(data):
            return False
    return True


def looks_like_client_hello(data: bytes) -> bool:
    """First record: epoch-0 handshake whose first message is a ClientHello (type 1)."""
    return len(data) > 25 and data[0] == 22 and data[3:5] == b"\0\0" and data[13] == 1


# --------------------------------------------------------------------------- fixtures


@dataclass
class Env:
    ccert: Certificate
    scert: Certificate
    ccfg: DtlsConfiguration
    scfg: DtlsConfiguration
    captured: list[bytes] = field(default_factory=list)


def _pump(client: DtlsConnection, server: DtlsConnection, now: float) -> None:
    for _ in range(20):
        moved = False
        for src, dst in ((client, server), (server, client)):
            for d in src.datagrams_to_send(now):
                dst.receive_datagram(d, now)
                moved = True
        if not moved:
            return


def _new_pair(env: Env) -> tuple[DtlsConnection, DtlsConnection]:
    client = DtlsConnection(
        env.ccfg, role=Role.CLIENT, remote_fingerprints=[env.scert.fingerprint()]
    )
    server = DtlsConnection(
        env.scfg, role=Role.SERVER, remote_fingerprints=[env.ccert.fingerprint()]
    )
    return client, server


def _capture(env: Env, mtu: int) -> list[bytes]:
    """Every datagram of a reference handshake, data exchange and close, both directions."""
    ccfg = DtlsConfiguration(certificate=env.ccert, mtu=mtu)
    scfg = DtlsConfiguration(certificate=env.scert, mtu=mtu)
    client = DtlsConnection(ccfg, role=Role.CLIENT, remote_fingerprints=[env.scert.fingerprint()])
    server = DtlsConnection(scfg, role=Role.SERVER, remote_fingerprints=[env.ccert.fingerprint()])
    now = time.monotonic()
    out: list[bytes] = []
    client.connect(now)
    for _ in range(10):
        for src, dst in ((client, server), (server, client)):
            for d in src.datagrams_to_send(now):
                out.append(d)
                dst.receive_datagram(d, now)
    assert server.state is client.state is ConnectionState.ESTABLISHED
    client.send(b"hello from the client", now)
    server.send(b"hello from the server", now)
    client.close(now)
    out += client.datagrams_to_send(now) + server.datagrams_to_send(now)
    return out


@pytest.fixture(scope="module")
def env() -> Env:
    ccert, scert = Certificate.generate(), Certificate.generate()
    e = Env(
        ccert,
        scert,
        DtlsConfiguration(certificate=ccert, handshake_timeout=10.0),
        DtlsConfiguration(certificate=scert, handshake_timeout=10.0),
    )
    e.captured = _capture(e, 1200) + _capture(e, 300)
    return e


# ------------------------------------------------------------------------------ states


@dataclass
class Scenario:
    """A connection (``target``) in some state, and how to complete its story afterwards."""

    client: DtlsConnection
    server: DtlsConnection
    target: DtlsConnection
    finish: Callable[[Scenario, float], None]
    fragile: bool
    "A well-formed forged handshake record may legitimately kill this one."


def _finish_handshake(sc: Scenario, now: float) -> None:
    if sc.client.state is ConnectionState.NEW:
        sc.client.connect(now)
    _pump(sc.client, sc.server, now)
    assert sc.client.state is ConnectionState.ESTABLISHED
    assert sc.server.state is ConnectionState.ESTABLISHED
    _finish_data(sc, now)


def _finish_data(sc: Scenario, now: float) -> None:
    for e in [*iter(sc.client.next_event, None), *iter(sc.server.next_event, None)]:
        assert not isinstance(e, events.ConnectionTerminated)
    sc.client.send(b"ping", now)
    sc.server.send(b"pong", now)
    _pump(sc.client, sc.server, now)
    assert [e for e in iter(sc.server.next_event, None)] == [events.DataReceived(b"ping")]
    assert [e for e in iter(sc.client.next_event, None)] == [events.DataReceived(b"pong")]


def _finish_ended(sc: Scenario, now: float) -> None:
    assert sc.target.state in ENDED
    assert sc.target.datagrams_to_send(now) == []
    assert sc.target.get_timer() is None


def _make(env: Env, state: str, now: float) -> Scenario:
    client, server = _new_pair(env)
    if state == "new-server":
        return Scenario(client, server, server, _finish_handshake, fragile=True)
    if state == "new-client":
        return Scenario(client, server, client, _finish_handshake, fragile=False)
    client.connect(now)
    if state == "client-handshaking":
        # The ClientHello waits in the client's outbox: the client expects a ServerHello.
        return Scenario(client, server, client, _finish_handshake, fragile=True)
    for d in client.datagrams_to_send(now):
        server.receive_datagram(d, now)
    if state == "server-handshaking":
        # The server's first flight waits in its outbox: it expects the client's flight 3.
        return Scenario(client, server, server, _finish_handshake, fragile=True)
    _pump(client, server, now)
    assert client.state is server.state is ConnectionState.ESTABLISHED
    for c in (client, server):
        list(iter(c.next_event, None))
    if state == "established-server":
        return Scenario(client, server, server, _finish_data, fragile=False)
    if state == "established-client":
        return Scenario(client, server, client, _finish_data, fragile=False)
    client.close(now)
    _pump(client, server, now)
    for c in (client, server):
        list(iter(c.next_event, None))
    if state == "closed-locally":
        return Scenario(client, server, client, _finish_ended, fragile=False)
    if state == "closed-by-peer":
        return Scenario(client, server, server, _finish_ended, fragile=False)
    raise AssertionError(state)


STATES = [
    "new-server",
    "new-client",
    "client-handshaking",
    "server-handshaking",
    "established-server",
    "established-client",
    "closed-locally",
    "closed-by-peer",
]


# ------------------------------------------------------------------------ strategies


def _record_offsets(data: bytes | bytearray) -> list[int]:
    """Header offsets, walking leniently (the data may already be mutated)."""
    offs = []
    off = 0
    while off + 13 <= len(data):
        offs.append(off)
        off += 13 + int.from_bytes(data[off + 11 : off + 13], "big")
    return offs or [0]


@st.composite
def mutations(draw: st.DrawFn, pool: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "extend", "header", "splice"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))) :]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=64))
        elif kind == "splice":
            other = draw(st.sampled_from(pool))
            cut = draw(st.integers(0, len(data)))
            data = data[:cut] + other[draw(st.integers(0, len(other))) :]
        elif kind == "header" and len(data) >= 13:
            off = draw(st.sampled_from(_record_offsets(data)))
            fld, start, size = draw(
                st.sampled_from(
                    [
                        ("type", 0, 1),
                        ("version", 1, 2),
                        ("epoch", 3, 2),
                        ("seq", 5, 6),
                        ("length", 11, 2),
                    ]
                )
            )
            if off + start + size <= len(data):
                if fld == "type":
                    value = draw(st.sampled_from([20, 21, 22, 23, 24, 25, 26, 0, 255]))
                elif fld == "version":
                    value = draw(st.sampled_from([0xFEFD, 0xFEFF, 0xFEFC, 0x0303, 0xFE00]))
                else:
                    value = draw(st.integers(0, 256**size - 1))
                data[off + start : off + start + size] = value.to_bytes(size, "big")
    return bytes(data)


junk = st.binary(max_size=1500)


@st.composite
def forged_records(draw: st.DrawFn) -> bytes:
    """Well-formed DTLS records with random contents."""
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        body = draw(st.binary(max_size=300))
        out += (
            bytes([draw(st.sampled_from([20, 21, 22, 23, 24, 25, 26]))])
            + draw(st.sampled_from([b"\xfe\xfd", b"\xfe\xff"]))
            + draw(st.integers(0, 3)).to_bytes(2, "big")
            + draw(st.integers(0, 2**48 - 1)).to_bytes(6, "big")
            + len(body).to_bytes(2, "big")
            + body
        )
    return out


# ----------------------------------------------------------------------------- checks


def feed_and_check(sc: Scenario, garbage: list[bytes], now: float) -> None:
    """Feed garbage to the target, checking invariants 1-5 after every datagram."""
    conn = sc.target
    for data in garbage:
        before_state = conn.state
        before = conn.stats
        conn.receive_datagram(data, now)  # 1. returns normally
        evs = list(iter(conn.next_event, None))
        assert all(type(e) in KNOWN_EVENTS for e in evs), evs  # 2.
        for e in evs[:-1]:
            assert not isinstance(e, events.ConnectionTerminated), evs
        assert rank(conn.state) >= rank(before_state), (before_state, conn.state)  # 3.
        if before_state in ENDED:
            assert conn.state is before_state
        produced = (events.HandshakeCompleted, events.DataReceived)
        assert not [e for e in evs if isinstance(e, produced)], evs  # 4.
        after = conn.stats
        assert after.datagrams_received == before.datagrams_received + 1
        new_server = before_state is ConnectionState.NEW and conn.role is Role.SERVER
        if new_server and is_dtls_framing(data) and looks_like_client_hello(data):
            pass  # a forged ClientHello may start (or kill) a handshake
        elif (
            not is_dtls_framing(data)
            or before_state in ENDED
            or before_state is ConnectionState.NEW
        ):
            # 5. junk (or anything to a connection that cannot use it) is dropped and counted,
            # and changes nothing.
            assert after.datagrams_dropped == before.datagrams_dropped + 1, data[:16].hex()
            assert conn.state is before_state, data[:16].hex()
            assert evs == []
        else:
            # Well-framed DTLS reaches OpenSSL unless a protected record is too short for any
            # cipher (dropped at the door, counted).
            assert after.datagrams_dropped - before.datagrams_dropped in (0, 1)


@pytest.mark.parametrize("state", STATES)
@PROFILE
@given(garbage=st.lists(junk, min_size=1, max_size=4))
def test_fuzz_random_bytes_in_every_state(env: Env, state: str, garbage: list[bytes]) -> None:
    now = time.monotonic()
    sc = _make(env, state, now)
    feed_and_check(sc, garbage, now)
    if not sc.fragile or not any(is_dtls_framing(g) for g in garbage):
        sc.finish(sc, now)


@pytest.mark.parametrize("state", STATES)
@PROFILE
@given(data=st.data())
def test_fuzz_mutated_real_datagrams_in_every_state(
    env: Env, state: str, data: st.DataObject
) -> None:
    garbage = data.draw(st.lists(mutations(env.captured), min_size=1, max_size=4))
    now = time.monotonic()
    sc = _make(env, state, now)
    feed_and_check(sc, garbage, now)
    if not sc.fragile or not any(is_dtls_framing(g) for g in garbage):
        sc.finish(sc, now)


@pytest.mark.parametrize("state", STATES)
@PROFILE
@given(garbage=st.lists(forged_records(), min_size=1, max_size=4))
def test_fuzz_forged_records_in_every_state(env: Env, state: str, garbage: list[bytes]) -> None:
    now = time.monotonic()
    sc = _make(env, state, now)
    feed_and_check(sc, garbage, now)
    if not sc.fragile:
        sc.finish(sc, now)


def test_fuzz_captured_datagrams_replayed_everywhere(env: Env) -> None:
    """Every unmodified datagram of another session, in every state: invariants hold."""
    for state in STATES:
        now = time.monotonic()
        sc = _make(env, state, now)
        feed_and_check(sc, env.captured, now)
        if not sc.fragile:
            sc.finish(sc, now)


@PROFILE
@given(
    garbage=st.lists(st.one_of(junk, forged_records()), min_size=1, max_size=6),
    positions=st.lists(st.integers(0, 10), min_size=1, max_size=6),
)
def test_fuzz_batch_receive_mixes_garbage_and_real_records(
    env: Env, garbage: list[bytes], positions: list[int]
) -> None:
    """receive_datagrams() with real records interleaved with garbage delivers exactly the
    real payloads, in order, once each (duplicates are replays)."""
    now = time.monotonic()
    sc = _make(env, "established-server", now)
    payloads = [b"payload %d" % i for i in range(5)]
    for p in payloads:
        sc.client.send(p, now)
    real = sc.client.datagrams_to_send(now)
    assert len(real) == len(payloads)
    batch = list(real)
    for g, pos in zip(garbage, positions, strict=False):
        batch.insert(min(pos, len(batch)), g)
    batch.insert(len(batch) // 2, real[0])  # a replay
    received = sc.server.stats.datagrams_received
    sc.server.receive_datagrams(batch, now)
    evs = list(iter(sc.server.next_event, None))
    assert evs == [events.DataReceived(p) for p in payloads]
    assert sc.server.state is ConnectionState.ESTABLISHED
    assert sc.server.stats.datagrams_received == received + len(batch)
    sc.finish(sc, now)


# --------------------------------------------------------------- dropped-junk accounting


@pytest.mark.parametrize("state", STATES)
def test_fuzz_non_dtls_junk_is_counted_as_dropped(env: Env, state: str) -> None:
    now = time.monotonic()
    sc = _make(env, state, now)
    samples = [b"", b"\x00", b"GET / HTTP/1.1\r\n\r\n", bytes(13), b"\x16\xfe\xfd" + bytes(7)]
    samples.append(b"\x17\xfe\xfd" + bytes(8) + b"\x00\x10" + bytes(4))  # length past the end
    samples.append(b"\x80" + bytes(40))  # RTP, RFC 7983
    samples.append(b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12))  # STUN
    d0 = sc.target.stats.datagrams_dropped
    feed_and_check(sc, samples, now)
    assert sc.target.stats.datagrams_dropped == d0 + len(samples)
    sc.finish(sc, now)


def test_fuzz_batch_receive_counts_every_dropped_datagram(env: Env) -> None:
    """stats.datagrams_dropped counts datagrams, also through receive_datagrams().

    Regression: the batch path once set DTLSOSSL_DROPPED once per C call and Python added 1
    per flag, so a batch of three junk datagrams counted as one.
    """
    now = time.monotonic()
    sc = _make(env, "established-server", now)
    before = sc.server.stats.datagrams_dropped
    sc.server.receive_datagrams([b"junk1", b"junk2", b"junk3"], now)
    assert sc.server.stats.datagrams_dropped == before + 3


def test_fuzz_client_hello_shaped_junk_does_not_start_a_server(env: Env) -> None:
    """A malformed datagram is dropped and counted, so it must not start the handshake.

    Library bug: connection.py _receive_slow calls self._start(now) (NEW -> HANDSHAKING, and
    arms the handshake deadline) when _is_client_hello_untrusted() sees bytes 0, 3, 4 and 13
    look right, before the C framing check drops the datagram. The server then fails with
    HandshakeTimeoutError after handshake_timeout although it never received a ClientHello.
    """
    now = time.monotonic()
    sc = _make(env, "new-server", now)
    junk_hello = bytearray(40)
    junk_hello[0], junk_hello[1], junk_hello[2], junk_hello[13] = 22, 0x03, 0x03, 1  # not 0xfe
    sc.server.receive_datagram(bytes(junk_hello), now)
    assert sc.server.stats.datagrams_dropped == 1
    assert sc.server.get_timer() is None
    assert sc.server.state is ConnectionState.NEW


def test_fuzz_short_encrypted_record_is_discarded(env: Env) -> None:
    """An epoch-1 record too short to hold the AEAD nonce and tag must be dropped silently.

    Library bug: such a record (any content type, 1..23 bytes with AES-128-GCM) reaches
    OpenSSL, whose tls1_enc raises a fatal internal_error for an AEAD record shorter than its
    overhead (openssl/openssl#25290). One forged datagram thus kills an established
    association, against RFC 6347 §4.1.2.7 and receive_datagram's "malformed, forged or late
    datagrams are dropped silently". DtlsOssl_well_formed (_cffi_src/screen.c) only checks framing.
    """
    for state in ("established-server", "established-client"):
        for typ in (20, 21, 22, 23):
            for length in (1, 23):
                now = time.monotonic()
                sc = _make(env, state, now)
                forged = (
                    bytes([typ]) + b"\xfe\xfd\x00\x01" + (1000).to_bytes(6, "big")
                    + length.to_bytes(2, "big") + bytes(length)
                )  # fmt: skip
                sc.target.receive_datagram(forged, now)
                evs = list(iter(sc.target.next_event, None))
                assert evs == [], (state, typ, length, evs)
                assert sc.target.state is ConnectionState.ESTABLISHED
                sc.finish(sc, now)
