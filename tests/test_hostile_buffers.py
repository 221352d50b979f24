"""Issue 9 case 5: forged datagrams cannot make OpenSSL buffer much for one connection.

A server waiting for flight 3 is the target: OpenSSL allocates the claimed message length of a
handshake fragment (RFC 6347 §4.2.3: msg_type(1) length(3) message_seq(2) fragment_offset(3)
fragment_length(3)) and keeps next-epoch records (each in its own read buffer). The screen in
front of OpenSSL drops what exceeds the bounds and counts it in ``datagrams_dropped``; the
genuine handshake then completes at once. In memory, seeded, no timers.
"""

from __future__ import annotations

import gc
import random
import time

import pytest
from helpers import drain_events, make_config, make_pair, rss_bytes, transfer

from dtls_ossl import ConfigurationError, ConnectionState, DtlsConnection, events

HDR = 13


def record(typ: int, epoch: int, seq: int, body: bytes) -> bytes:
    """A DTLS 1.2 record (RFC 6347 §4.1)."""
    return (
        bytes([typ, 0xFE, 0xFD])
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + len(body).to_bytes(2, "big")
        + body
    )


def fragment(msg_type: int, total: int, message_seq: int, offset: int, data: bytes) -> bytes:
    """A handshake fragment header and its bytes (RFC 6347 §4.2.2)."""
    return (
        bytes([msg_type])
        + total.to_bytes(3, "big")
        + message_seq.to_bytes(2, "big")
        + offset.to_bytes(3, "big")
        + len(data).to_bytes(3, "big")
        + data
    )


def split_records(datagram: bytes) -> list[bytes]:
    out = []
    off = 0
    while off < len(datagram):
        end = off + HDR + int.from_bytes(datagram[off + 11 : off + 13], "big")
        out.append(datagram[off:end])
        off = end
    return out


def waiting_for_flight_3(
    **server_kwargs: object,
) -> tuple[DtlsConnection, DtlsConnection, list[bytes], float]:
    """A pair where the server sent flight 2 and waits; returns flight 2 undelivered."""
    client, server = make_pair(server_kwargs=dict(server_kwargs) or None)
    now = time.monotonic()
    client.connect(now)
    assert transfer(client, server, now) == 1
    flight2 = server.datagrams_to_send(now)
    assert flight2 and server.state is ConnectionState.HANDSHAKING
    return client, server, flight2, now


def finish(
    client: DtlsConnection,
    server: DtlsConnection,
    flight2: list[bytes],
    now: float,
    *,
    one_record_per_datagram: bool = False,
) -> None:
    """Deliver flight 2, flight 3 (optionally split record by record, as OpenSSL's own datagram
    BIO sends it), then flight 4: both sides must be established with no timer involved."""
    for d in flight2:
        client.receive_datagram(d, now)
    for d in client.datagrams_to_send(now):
        for part in split_records(d) if one_record_per_datagram else [d]:
            server.receive_datagram(part, now)
    assert server.state is ConnectionState.ESTABLISHED
    transfer(server, client, now)
    assert client.state is ConnectionState.ESTABLISHED
    assert client.stats.retransmissions == 0 and server.stats.retransmissions == 0
    client.send(b"ping", now)
    transfer(client, server, now)
    assert [e.data for e in drain_events(server) if isinstance(e, events.DataReceived)] == [b"ping"]


def test_fragment_claiming_more_than_max_handshake_message_is_dropped() -> None:
    client, server, flight2, now = waiting_for_flight_3()
    # The 10 forged fragments (26 bytes each) claiming ~100 KiB messages.
    for i in range(10):
        server.receive_datagram(
            record(22, 0, 1000 + i, fragment(11, 100 * 1024, 2 + i, 0, b"x")), now
        )
    assert server.stats.datagrams_dropped == 10
    assert server.datagrams_to_send(now) == []
    finish(client, server, flight2, now)
    assert server.stats.datagrams_dropped == 10


# The client's flight 3 uses message_seq 1..4 (Certificate .. Finished). A forged fragment for
# one of those would still stall the handshake: OpenSSL keeps the first claimed length of a
# message, as it keeps a forged plaintext alert. The fragments below use later sequences.
FORGED_SEQ = 5


def test_fragments_within_the_claim_limit_are_bounded_in_bytes() -> None:
    client, server, flight2, now = waiting_for_flight_3()
    # 16 KiB claims: four fragmented messages fill the 4 x max_handshake_message budget.
    for i in range(10):
        server.receive_datagram(
            record(22, 0, 10 + i, fragment(11, 16384, FORGED_SEQ + i, 0, b"x")), now
        )
    assert server.stats.datagrams_dropped == 6
    # A message already in the budget may send more fragments.
    server.receive_datagram(record(22, 0, 20, fragment(11, 16384, FORGED_SEQ, 1, b"y")), now)
    assert server.stats.datagrams_dropped == 6
    finish(client, server, flight2, now)
    assert server.stats.datagrams_dropped == 6


def test_fragments_within_the_claim_limit_are_bounded_in_number() -> None:
    client, server, flight2, now = waiting_for_flight_3()
    # Small claims: at most 8 fragmented messages, whatever their size.
    for i in range(10):
        server.receive_datagram(
            record(22, 0, 10 + i, fragment(11, 100, FORGED_SEQ + i, 0, b"x")), now
        )
    assert server.stats.datagrams_dropped == 2
    finish(client, server, flight2, now)
    assert server.stats.datagrams_dropped == 2


def test_max_handshake_message_is_configurable() -> None:
    client, server, flight2, now = waiting_for_flight_3(max_handshake_message=128 * 1024)
    server.receive_datagram(record(22, 0, 10, fragment(11, 100 * 1024, FORGED_SEQ, 0, b"x")), now)
    assert server.stats.datagrams_dropped == 0
    finish(client, server, flight2, now)
    for bad in (4095, 1 << 24, True, 16384.0):
        with pytest.raises(ConfigurationError, match="max_handshake_message"):
            make_config(max_handshake_message=bad)


@pytest.mark.parametrize("one_record_per_datagram", [False, True], ids=["packed", "openssl-style"])
def test_next_epoch_records_are_bounded_and_the_handshake_completes(
    one_record_per_datagram: bool,
) -> None:
    rng = random.Random(9)
    client, server, flight2, now = waiting_for_flight_3()
    # The 100 forged next-epoch records (45 bytes each).
    for i in range(100):
        server.receive_datagram(record(22, 1, i, rng.randbytes(32)), now)
    assert server.stats.datagrams_dropped == 100 - 4
    # The genuine Finished still gets in: right behind its CCS when the flight is packed, or
    # after the CCS moved OpenSSL to epoch 1 when every record is its own datagram.
    finish(client, server, flight2, now, one_record_per_datagram=one_record_per_datagram)
    assert server.stats.datagrams_dropped == 100 - 4


def test_records_behind_a_forged_ccs_are_bounded_too() -> None:
    rng = random.Random(5)
    client, server, flight2, now = waiting_for_flight_3()
    ccs = record(20, 0, 50, b"\x01")  # within the replay window
    for i in range(20):
        server.receive_datagram(ccs + record(23, 1, 100 + i, rng.randbytes(40)), now)
    assert server.stats.datagrams_dropped == 20 - 4
    finish(client, server, flight2, now, one_record_per_datagram=True)


def test_established_connection_drops_epochs_above_one() -> None:
    rng = random.Random(2)
    client, server, flight2, now = waiting_for_flight_3()
    finish(client, server, flight2, now)
    before = server.stats.datagrams_dropped
    for i in range(50):
        server.receive_datagram(record(23, 2, i, rng.randbytes(40)), now)
    assert server.stats.datagrams_dropped == before + 50
    client.send(b"still here", now)
    transfer(client, server, now)
    assert [e.data for e in drain_events(server) if isinstance(e, events.DataReceived)] == [
        b"still here"
    ]


@pytest.mark.rss
def test_forged_buffers_rss_per_connection_stays_small() -> None:
    """RSS: 100 connections waiting for flight 3, each sent the issue's forged fragments and
    next-epoch records, grow by less than 32 KiB each (before the bounds: 167 + 422 KiB)."""
    rng = random.Random(1)
    pairs = [waiting_for_flight_3() for _ in range(100)]
    gc.collect()
    before = rss_bytes()
    for _, server, _, now in pairs:
        for i in range(10):
            server.receive_datagram(
                record(22, 0, 1000 + i, fragment(11, 100 * 1024, 2 + i, 0, b"x")), now
            )
        for i in range(100):
            server.receive_datagram(record(22, 1, i, rng.randbytes(32)), now)
    grown = (rss_bytes() - before) / len(pairs)
    assert grown < 32 * 1024, f"{grown / 1024:.1f} KiB per connection"
    for _, server, _, _ in pairs:
        assert server.stats.datagrams_dropped == 10 + 96
