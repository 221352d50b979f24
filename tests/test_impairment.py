"""Handshakes over a lossy, duplicating, reordering channel, on OpenSSL's real timer.

OpenSSL's retransmission timer runs on its own wall clock, so these tests use real time
(tests/impair.py) with short timers: initial_retransmit_timeout=0.05 s, capped at 0.4 s.
Tests that really wait more than 0.5 s are marked ``slow``.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from impair import CLEAN, Channel, Impairment, drive

from dtls_ossl import (
    Certificate,
    ConnectionState,
    DtlsConfiguration,
    DtlsConnection,
    HandshakeTimeoutError,
    Role,
    SrtpProfile,
    events,
)

INITIAL = 0.05
CAP = 0.4
SEEDS = range(40)


@pytest.fixture(scope="module")
def certs() -> tuple[Certificate, Certificate]:
    return Certificate.generate(), Certificate.generate()


def _config(cert: Certificate, **kw: Any) -> DtlsConfiguration:
    kw.setdefault("initial_retransmit_timeout", INITIAL)
    kw.setdefault("max_retransmit_timeout", CAP)
    kw.setdefault("handshake_timeout", 10.0)
    return DtlsConfiguration(
        certificate=cert,
        srtp_profiles=[SrtpProfile.AEAD_AES_128_GCM, SrtpProfile.AES128_CM_SHA1_80],
        mtu=1200,
        **kw,
    )


@pytest.fixture(scope="module")
def configs(certs: tuple[Certificate, Certificate]) -> tuple[DtlsConfiguration, DtlsConfiguration]:
    return _config(certs[0]), _config(certs[1])


def _channel(
    certs: tuple[Certificate, Certificate],
    configs: tuple[DtlsConfiguration, DtlsConfiguration] | None = None,
    *,
    seed: int = 0,
    c2s: Impairment = CLEAN,
    s2c: Impairment = CLEAN,
    **cfg: Any,
) -> Channel:
    ccert, scert = certs
    ccfg, scfg = configs if configs is not None else (_config(ccert, **cfg), _config(scert))
    client = DtlsConnection(ccfg, role=Role.CLIENT, remote_fingerprints=[scert.fingerprint()])
    server = DtlsConnection(scfg, role=Role.SERVER, remote_fingerprints=[ccert.fingerprint()])
    return Channel(client, server, seed=seed, c2s=c2s, s2c=s2c)


def _done(ch: Channel) -> bool:
    return ch.established() or ch.terminated()


def _assert_completed(ch: Channel) -> None:
    assert ch.client.state is ConnectionState.ESTABLISHED, (ch.seed, ch.client_events)
    assert ch.server.state is ConnectionState.ESTABLISHED, (ch.seed, ch.server_events)
    for evs in (ch.client_events, ch.server_events):
        kinds = [type(e) for e in evs]
        assert kinds.count(events.HandshakeCompleted) == 1
        assert events.ConnectionTerminated not in kinds
        assert set(kinds) <= {events.HandshakeCompleted, events.FlightRetransmitted}
    ck, sk = ch.client.srtp_keys(), ch.server.srtp_keys()
    assert ck.profile is sk.profile is SrtpProfile.AEAD_AES_128_GCM
    assert (ck.local_key, ck.local_salt) == (sk.remote_key, sk.remote_salt)
    assert (ck.remote_key, ck.remote_salt) == (sk.local_key, sk.local_salt)
    assert ck.local_key != ck.remote_key


def _exchange(ch: Channel, n: int = 5) -> None:
    """Send n records each way over a clean channel; all must arrive, in order."""
    ch.set_impairment(c2s=Impairment(), s2c=Impairment())
    now = time.monotonic()
    c_before, s_before = len(ch.client_events), len(ch.server_events)
    for i in range(n):
        ch.client.send(b"c%d" % i, now)
        ch.server.send(b"s%d" % i, now)
    assert ch.run(
        lambda c: len(c.client_events) - c_before >= n and len(c.server_events) - s_before >= n,
        timeout=2.0,
    )
    got_s = [e.data for e in ch.server_events[s_before:] if isinstance(e, events.DataReceived)]
    got_c = [e.data for e in ch.client_events[c_before:] if isinstance(e, events.DataReceived)]
    assert got_s == [b"c%d" % i for i in range(n)]
    assert got_c == [b"s%d" % i for i in range(n)]


def test_impairment_no_loss_means_no_retransmission(
    certs: tuple[Certificate, Certificate], configs: tuple[DtlsConfiguration, DtlsConfiguration]
) -> None:
    ch = _channel(certs, configs)
    ch.start()
    assert ch.run(_done, timeout=5.0)
    _assert_completed(ch)
    assert not [
        e for e in ch.client_events + ch.server_events if isinstance(e, events.FlightRetransmitted)
    ]
    assert ch.client.stats.retransmissions == 0
    assert ch.server.stats.retransmissions == 0
    assert [s.fate for s in ch.trace] == ["delivered"] * len(ch.trace)
    _exchange(ch)


@pytest.mark.slow
@pytest.mark.parametrize(
    "impairment",
    [
        pytest.param(Impairment(loss=0.3), id="loss30"),
        pytest.param(Impairment(loss=0.3, duplicate=0.2, reorder=0.3), id="loss30-dup-reorder"),
    ],
)
def test_impairment_handshake_completes_for_every_seed(
    certs: tuple[Certificate, Certificate],
    configs: tuple[DtlsConfiguration, DtlsConfiguration],
    impairment: Impairment,
) -> None:
    """30% loss each way (plus duplication and reordering): every seed completes.

    All seeds run at once in one real-time loop, so the total wait is that of the slowest.
    """
    chans = [_channel(certs, configs, seed=s, c2s=impairment, s2c=impairment) for s in SEEDS]
    for ch in chans:
        ch.start()
    drive(chans, _done, timeout=20.0)
    for ch in chans:
        _assert_completed(ch)
    # The impairment really happened: some datagrams were dropped, and flights were resent.
    fates = [s.fate for ch in chans for s in ch.trace]
    assert fates.count("dropped") > 0.15 * len(fates)
    assert sum(ch.client.stats.retransmissions + ch.server.stats.retransmissions for ch in chans)
    if impairment.duplicate:
        assert "duplicated" in fates and "delayed" in fates
    for ch in chans:
        _exchange(ch)


@pytest.mark.slow
def test_impairment_one_way_loss_and_duplication(
    certs: tuple[Certificate, Certificate], configs: tuple[DtlsConfiguration, DtlsConfiguration]
) -> None:
    """Asymmetric: 50% loss client to server, all duplicated and reordered the other way."""
    chans = [
        _channel(
            certs,
            configs,
            seed=s,
            c2s=Impairment(loss=0.5),
            s2c=Impairment(duplicate=1.0, reorder=0.5),
        )
        for s in range(10)
    ]
    for ch in chans:
        ch.start()
    drive(chans, _done, timeout=20.0)
    for ch in chans:
        _assert_completed(ch)
        _exchange(ch)


def _tolerant(expected: float) -> tuple[float, float]:
    slack = 0.4 * expected + 0.03
    return expected - slack, expected + slack


@pytest.mark.slow
def test_impairment_backoff_on_the_wire_doubles_up_to_the_cap(
    certs: tuple[Certificate, Certificate],
) -> None:
    """Drop everything from the server: the client resends its ClientHello at 0.05, 0.1,
    0.2, 0.4, 0.4, ... s (the configured initial timeout, doubled, capped)."""
    ch = _channel(certs, s2c=Impairment(loss=1.0))
    ch.start()
    assert ch.run(lambda c: len(c.sent("c2s")) >= 8, timeout=6.0)
    hellos = ch.sent("c2s")[:8]
    for s in hellos:
        assert s.data[0] == 22 and s.data[13] == 1, "not a ClientHello"  # handshake, type 1
    # Every copy is the same ClientHello (same message_seq 0), in a new record.
    assert len({s.data[13 + 4 : 13 + 6] for s in hellos}) == 1
    gaps = [b.at - a.at for a, b in itertools.pairwise(hellos)]
    expected = [min(INITIAL * 2**i, CAP) for i in range(len(gaps))]
    assert expected == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    for gap, want in zip(gaps, expected, strict=True):
        lo, hi = _tolerant(want)
        assert lo <= gap <= hi, (gaps, expected)
    # Doubling then a cap, not just "some" growth (robust to a noisy clock):
    assert gaps[2] > gaps[0] * 2
    assert max(gaps[3:]) < 2 * min(gaps[3:])
    # What OpenSSL reports is the schedule itself, free of the loop's jitter.
    nexts = [e.next_timeout for e in ch.client_events if isinstance(e, events.FlightRetransmitted)]
    assert len(nexts) >= 7
    for got, want in zip(nexts[: len(expected) - 1], expected[1:], strict=True):
        assert got == pytest.approx(want, abs=0.01)
    assert ch.client.stats.retransmissions == len(nexts)


@pytest.mark.slow
def test_impairment_silent_peer_hits_handshake_timeout(
    certs: tuple[Certificate, Certificate],
) -> None:
    hs = 0.5
    ch = _channel(certs, c2s=Impairment(loss=1.0), handshake_timeout=hs)
    t0 = time.monotonic()
    ch.start(t0)
    assert ch.run(lambda c: c.client.state is ConnectionState.FAILED, timeout=hs + 2.0)
    elapsed = time.monotonic() - t0
    assert hs - 0.01 <= elapsed <= hs + 0.3
    last = ch.client_events[-1]
    assert isinstance(last, events.ConnectionTerminated)
    assert isinstance(last.error, HandshakeTimeoutError)
    assert last.by_peer is False
    assert [type(e) for e in ch.client_events[:-1]] == [events.FlightRetransmitted] * (
        len(ch.client_events) - 1
    )
    assert ch.client.get_timer() is None
    assert ch.server.state is ConnectionState.NEW  # it never heard anything
    assert ch.client.datagrams_to_send(time.monotonic()) == []


def test_impairment_openssl_gives_up_after_12_retransmissions(
    certs: tuple[Certificate, Certificate],
) -> None:
    """handshake_timeout=None: OpenSSL's own limit (12 timer expiries) ends the handshake."""
    ch = _channel(
        certs,
        c2s=Impairment(loss=1.0),
        handshake_timeout=None,
        initial_retransmit_timeout=0.02,
        max_retransmit_timeout=0.02,
    )
    ch.start()
    assert ch.run(lambda c: c.client.state is ConnectionState.FAILED, timeout=3.0)
    last = ch.client_events[-1]
    assert isinstance(last, events.ConnectionTerminated)
    assert isinstance(last.error, HandshakeTimeoutError)
    retrans = [e for e in ch.client_events if isinstance(e, events.FlightRetransmitted)]
    assert [e.count for e in retrans] == list(range(1, 13))
    assert ch.client.stats.retransmissions == 12
    assert len(ch.sent("c2s")) == 13  # the ClientHello and 12 copies
    assert ch.client.get_timer() is None
