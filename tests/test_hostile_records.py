"""Issue 9: forged plaintext (epoch-0) records that OpenSSL 3.0 treats as fatal are discarded.

RFC 6347 section 4.1.2.7 says invalid records SHOULD be silently discarded; OpenSSL 3.0 instead
ended the handshake on each record below ("unexpected record", "bad change cipher spec",
"invalid alert", "unexpected message", "bad length", "too many warn alerts"). The library
screens them before OpenSSL sees them (DtlsOssl_plain_record in _cffi_src/screen.c). Each test feeds
one forged datagram between the genuine flights of an in-memory pair and requires the
handshake of an undisturbed pair: four flights of one datagram, no retransmission, the same
events. Reproducers of ``ci/fuzz_pairs.py`` (seeds in the comments) are among the cases.
"""

from __future__ import annotations

import pytest
from helpers import drain_events, handshake
from test_hostile import (
    NOW,
    assert_clean_completion,
    assert_data_flows,
    flights,
    kinds,
    pair,
    record,
)

from dtls_ossl import ConnectionState, HandshakeError, events
from dtls_ossl.cookies import parse_client_hello_untrusted


def fragment(msg_type: int, msg_len: int, seq: int, off: int, frag_len: int, body: bytes) -> bytes:
    """A handshake fragment: its 12-byte header (any values, consistent or not) and a body."""
    return (
        bytes([msg_type])
        + msg_len.to_bytes(3, "big")
        + seq.to_bytes(2, "big")
        + off.to_bytes(3, "big")
        + frag_len.to_bytes(3, "big")
        + body
    )


# (content type, body): every one ended the handshake of OpenSSL 3.0 as the victim.
MALFORMED = {
    # Application data is never valid in epoch 0 ("unexpected record"; seed 44).
    "appdata": (23, bytes(range(48))),
    # Content types OpenSSL does not know, or only in other epochs ("unexpected record";
    # seed 55: 24, seed 115: 26).
    "heartbeat": (24, b"\x01\x00\x10" + bytes(16)),
    "tls12_cid": (25, bytes(20)),
    "ack": (26, b"\x00\x08" + bytes(8)),
    # A ChangeCipherSpec must be the one byte 1 ("bad change cipher spec"; seed 23).
    "ccs-two-bytes": (20, b"\x01\x01"),
    "ccs-value-2": (20, b"\x02"),
    "ccs-empty": (20, b""),
    # An alert must be two bytes of a known level ("invalid alert"; seed 218).
    "alert-one-byte": (21, b"\x02"),
    "alert-three-bytes": (21, b"\x02\x28\x00"),
    "alert-empty": (21, b""),
    "alert-level-3": (21, b"\x03\x28"),
    # A handshake record shorter than a handshake header ("unexpected message"; seed 1364).
    "handshake-short": (22, bytes(9)),
    "handshake-empty": (22, b""),
    # Fragment headers that do not add up ("bad length"; seeds 200, 963, 50855).
    "fragment-past-message": (22, fragment(13, 48, 3, 16406, 26, bytes(26))),
    "fragment-past-record": (22, fragment(16, 64, 7, 0, 64, bytes(20))),
    "fragment-empty-of-nonempty": (22, fragment(16, 20, 7, 0, 0, b"")),
    "fragment-then-junk": (22, fragment(16, 4, 7, 0, 4, bytes(4)) + bytes(5)),
    "empty-message-offset": (22, fragment(14, 0, 4, 0x800000, 0, b"")),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
@pytest.mark.parametrize(("side", "before"), [("server", 2), ("client", 2), ("client", 4)])
def test_malformed_plaintext_record_is_dropped(name: str, side: str, before: int) -> None:
    """Into the server waiting for flight 3, the client waiting for flight 2 or flight 4
    (after it sent its keys): the datagram is dropped and counted, the handshake is clean."""
    content_type, body = MALFORMED[name]
    client, server = pair()
    victim = server if side == "server" else client
    forged = record(content_type, 0, 5, body)
    assert flights(client, server, {before: (victim, forged)}) == [1, 1, 1, 1]
    assert_clean_completion(client, server)
    assert victim.stats.datagrams_dropped == 1
    assert_data_flows(client, server)


@pytest.mark.parametrize("name", ["appdata", "ccs-two-bytes", "fragment-past-record"])
def test_malformed_record_drops_the_whole_datagram(name: str) -> None:
    """A forged datagram that packs a valid-looking record (a fragment of a message the server
    does not expect yet) with a malformed one is forged as a whole: neither reaches OpenSSL."""
    content_type, body = MALFORMED[name]
    client, server = pair()
    plausible = record(22, 0, 4, fragment(16, 4, 9, 0, 4, bytes(4)))
    forged = plausible + record(content_type, 0, 5, body)
    assert flights(client, server, {3: (server, forged)}) == [1, 1, 1, 1]
    assert_clean_completion(client, server)
    assert server.stats.datagrams_dropped == 1


@pytest.mark.parametrize("description", [10, 42, 90, 100, 112])
@pytest.mark.parametrize(("side", "before"), [("server", 2), ("server", 3), ("client", 4)])
def test_forged_warning_alert_is_dropped(description: int, side: str, before: int) -> None:
    """OpenSSL 3.0 reads one warning alert record five times (openssl/openssl#25444) and ends
    the handshake with "too many warn alerts" (seed 13) or "no renegotiation" (seed 513). An
    epoch-0 warning other than close_notify is removed: no event, nothing sent."""
    client, server = pair()
    victim = server if side == "server" else client
    forged = record(21, 0, 6, bytes([1, description]))
    assert flights(client, server, {before: (victim, forged)}) == [1, 1, 1, 1]
    assert_clean_completion(client, server)
    assert victim.stats.datagrams_dropped == 1
    assert_data_flows(client, server)


def test_warning_alert_packed_with_a_genuine_flight_is_removed_alone() -> None:
    """A peer may pack a warning (unrecognized_name before its ServerHello, RFC 6066 section
    3) with its flight: the alert is removed, the flight is fed and answered, the datagram is
    not counted as dropped."""
    client, server = pair()
    client.connect(NOW)
    for d in client.datagrams_to_send(NOW):
        server.receive_datagram(d, NOW)
    (flight2,) = server.datagrams_to_send(NOW)
    client.receive_datagram(record(21, 0, 0, b"\x01\x70") + flight2, NOW)
    assert client.stats.datagrams_dropped == 0
    for src, dst in ((client, server), (server, client)):
        (d,) = src.datagrams_to_send(NOW)
        dst.receive_datagram(d, NOW)
    assert_clean_completion(client, server)


def test_plaintext_fatal_alert_and_close_notify_still_end_the_handshake() -> None:
    """Kept (inherent to DTLS 1.2, listed in the README): a peer aborting its handshake sends a
    fatal alert or close_notify, and nothing tells a forged one from it in epoch 0."""
    client, server = pair()
    flights(client, server, {4: (client, record(21, 0, 6, b"\x02\x28"))})
    evs = drain_events(client)
    assert kinds(evs) == ["AlertReceived", "ConnectionTerminated"]
    assert evs[0] == events.AlertReceived(2, 40)
    term = evs[1]
    assert isinstance(term, events.ConnectionTerminated)
    assert isinstance(term.error, HandshakeError)
    assert str(term.error) == "peer sent fatal alert handshake_failure (40)"
    assert client.state is ConnectionState.FAILED
    client, server = pair()
    flights(client, server, {4: (client, record(21, 0, 6, b"\x01\x00"))})
    assert drain_events(client) == [
        events.AlertReceived(1, 0),
        events.ConnectionTerminated(error=None, by_peer=True),
    ]
    assert client.state is ConnectionState.CLOSED


@pytest.mark.parametrize("name", ["appdata", "heartbeat", "alert-one-byte", "handshake-short"])
def test_malformed_plaintext_record_on_established_connection(name: str) -> None:
    """After the handshake OpenSSL ignores epoch 0 anyway; the screen drops it first."""
    content_type, body = MALFORMED[name]
    client, server = pair()
    handshake(client, server, NOW)
    drain_events(client)
    drain_events(server)
    for victim in (server, client):
        victim.receive_datagram(record(content_type, 0, 9, body), NOW)
        assert drain_events(victim) == []
        assert victim.datagrams_to_send(NOW) == []
        assert victim.stats.datagrams_dropped == 1
    assert_data_flows(client, server)


def test_cookie_parser_refuses_truncated_and_inconsistent_hellos() -> None:
    """parse_client_hello_untrusted: a record longer than the datagram (seed 20105) or a
    fragment header that does not add up is no ClientHello; the genuine one parses."""
    client, _ = pair()
    client.connect(NOW)
    (hello,) = client.datagrams_to_send(NOW)
    info = parse_client_hello_untrusted(hello)
    assert info is not None
    assert info.fragment_offset == 0
    assert len(info.random) == 32
    assert parse_client_hello_untrusted(hello[:-1]) is None
    longer = bytearray(hello)
    longer[23:25] = (int.from_bytes(hello[23:25], "big") + 1).to_bytes(2, "big")  # frag_len
    assert parse_client_hello_untrusted(bytes(longer)) is None
    past = bytearray(hello)
    past[19:22] = (1).to_bytes(3, "big")  # fragment_offset 1 with the whole length
    assert parse_client_hello_untrusted(bytes(past)) is None
