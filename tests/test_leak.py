"""Thousands of connections leave the resident set size flat.

Each DtlsConnection owns an OpenSSL SSL object, two memory BIOs and a cffi handle; each
DtlsConfiguration owns an SSL_CTX. A leak in any of them (or in the error queue, or in the
callback state) shows up as RSS growing with the number of handshakes. The mix covers every
way a connection ends: closed cleanly, failed (fingerprint mismatch), abandoned mid-handshake,
abandoned while established, and never started.
"""

from __future__ import annotations

import gc
import time

import pytest
from helpers import rss_bytes

from dtls_ossl import Certificate, ConnectionState, DtlsConfiguration, DtlsConnection, Role

WARMUP = 300
TOTAL = 2000
MAX_GROWTH = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def certs() -> tuple[Certificate, Certificate, Certificate]:
    return Certificate.generate(), Certificate.generate(), Certificate.generate()


def _pump(a: DtlsConnection, b: DtlsConnection, now: float) -> None:
    for _ in range(10):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for d in src.datagrams_to_send(now):
                dst.receive_datagram(d, now)
                moved = True
        if not moved:
            return


def _drain(*conns: DtlsConnection) -> None:
    for c in conns:
        while c.next_event() is not None:
            pass


def _one(
    i: int,
    certs: tuple[Certificate, Certificate, Certificate],
    configs: tuple[DtlsConfiguration, DtlsConfiguration],
) -> None:
    ccert, scert, other = certs
    ccfg, scfg = configs
    if i % 50 == 0:
        # A fresh configuration now and then: its SSL_CTX must be freed with it.
        ccfg = DtlsConfiguration(certificate=ccert, handshake_timeout=5.0)
    now = time.monotonic()
    kind = i % 5
    expected_server = other if kind == 1 else scert
    client = DtlsConnection(
        ccfg, role=Role.CLIENT, remote_fingerprints=[expected_server.fingerprint()]
    )
    server = DtlsConnection(scfg, role=Role.SERVER, remote_fingerprints=[ccert.fingerprint()])
    if kind == 4:
        return  # never started
    client.connect(now)
    if kind == 2:
        # Abandoned mid-handshake: the server answered, nobody finishes.
        for d in client.datagrams_to_send(now):
            server.receive_datagram(d, now)
        server.datagrams_to_send(now)
        _drain(client, server)
        return
    _pump(client, server, now)
    if kind == 1:
        assert client.state is ConnectionState.FAILED
        _drain(client, server)
        return
    assert client.state is ConnectionState.ESTABLISHED
    client.send(b"ping %d" % i, now)
    server.send(b"pong %d" % i, now)
    _pump(client, server, now)
    client.srtp_keys()
    if kind == 0:
        client.close(now)
        _pump(client, server, now)
        assert server.state is ConnectionState.CLOSED
    # kind 3: abandoned while established.
    _drain(client, server)


@pytest.mark.rss
def test_leak_rss_flat_over_thousands_of_handshakes(
    certs: tuple[Certificate, Certificate, Certificate],
) -> None:
    ccert, scert, _ = certs
    configs = (
        DtlsConfiguration(certificate=ccert, handshake_timeout=5.0),
        DtlsConfiguration(certificate=scert, handshake_timeout=5.0),
    )
    for i in range(WARMUP):
        _one(i, certs, configs)
    gc.collect()
    before = rss_bytes()
    for i in range(WARMUP, TOTAL):
        _one(i, certs, configs)
    gc.collect()
    growth = rss_bytes() - before
    assert growth < MAX_GROWTH, f"RSS grew by {growth / 1e6:.1f} MB over {TOTAL - WARMUP} pairs"


@pytest.mark.rss
def test_leak_rss_flat_over_many_records(
    certs: tuple[Certificate, Certificate, Certificate],
) -> None:
    """The per-record C paths create bytes and events themselves: none may be leaked.

    Every input type and both the per-datagram and the batch forms; 1200-byte records, so a
    leaked object per record (~1.3 KB) would grow RSS by far more than the bound.
    """
    ccert, scert, _ = certs
    client = DtlsConnection(
        DtlsConfiguration(certificate=ccert, mtu=1500),
        role=Role.CLIENT,
        remote_fingerprints=[scert.fingerprint()],
    )
    server = DtlsConnection(
        DtlsConfiguration(certificate=scert, mtu=1500),
        role=Role.SERVER,
        remote_fingerprints=[ccert.fingerprint()],
    )
    now = time.monotonic()
    client.connect(now)
    _pump(client, server, now)
    _drain(client, server)
    payload = b"r" * 1200

    def records(n: int) -> None:
        got = 0
        for _ in range(n):
            client.send(bytearray(payload), now)
            for d in client.datagrams_to_send(now):
                server.receive_datagram(memoryview(d), now)
            client.send_many([payload, memoryview(payload)], now)
            server.receive_datagrams(client.datagrams_to_send(now), now)
            while (event := server.next_event()) is not None:
                got += len(event.data)  # type: ignore[attr-defined]
        assert got == 3 * 1200 * n

    records(2000)
    gc.collect()
    before = rss_bytes()
    records(20000)  # 60,000 records, 72 MB of plaintext
    gc.collect()
    growth = rss_bytes() - before
    assert growth < MAX_GROWTH, f"RSS grew by {growth / 1e6:.1f} MB over 60,000 records"
