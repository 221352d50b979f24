from __future__ import annotations

import time

import pytest
from helpers import drain_events, make_pair, transfer
from hypothesis import given, settings
from hypothesis import strategies as st
from test_framing import HS_HDR, _split_hello, parse_records

from dtls_ossl import (
    ConfigurationError,
    ConnectionState,
    DtlsConnection,
    InvalidStateError,
    events,
)
from dtls_ossl.cookies import ClientHelloInfo, CookieVerifier, parse_client_hello_untrusted

ADDR = ("192.0.2.7", 40000)
WALL = 1_800_000_000.0


def _first_hello(client: DtlsConnection, now: float) -> bytes:
    client.connect(now)
    (hello,) = client.datagrams_to_send(now)
    return hello


def _hello(datagram: bytes) -> ClientHelloInfo:
    """The ClientHello in ``datagram``, which must parse."""
    info = parse_client_hello_untrusted(datagram)
    assert info is not None, datagram.hex()
    return info


def _finish(client: DtlsConnection, server: DtlsConnection, now: float) -> None:
    for _ in range(10):
        if transfer(client, server, now) + transfer(server, client, now) == 0:
            break


def test_cookies_stateless_exchange_completes_the_handshake() -> None:
    verifier = CookieVerifier(b"k" * 32)
    client, server = make_pair()
    now = time.monotonic()
    hello = _first_hello(client, now)
    info = parse_client_hello_untrusted(hello)
    assert info is not None and info.cookie == b"" and info.message_seq == 0
    assert not verifier.check(info, ADDR, WALL)
    hvr = verifier.hello_verify_request(info, ADDR, WALL)
    (rec,) = parse_records(hvr)
    assert rec.type == 22 and rec.body[0] == 3 and rec.seq == int.from_bytes(hello[5:11], "big")
    client.receive_datagram(hvr, now)
    (hello2,) = client.datagrams_to_send(now)
    info2 = parse_client_hello_untrusted(hello2)
    assert info2 is not None and info2.message_seq == 1 and info2.random == info.random
    assert verifier.check(info2, ADDR, WALL)
    server.accept_verified_hello(hello2, now)
    _finish(client, server, now)
    assert [type(e) for e in drain_events(client)] == [events.HandshakeCompleted]
    assert [type(e) for e in drain_events(server)] == [events.HandshakeCompleted]
    assert client.srtp_keys().mirrors(server.srtp_keys())
    with pytest.raises(InvalidStateError):
        server.accept_verified_hello(hello2, now)


@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "second-first"])
def test_cookies_fragmented_second_hello(reverse: bool) -> None:
    verifier = CookieVerifier(b"k" * 32)
    client, server = make_pair()
    now = time.monotonic()
    info = _hello(_first_hello(client, now))
    client.receive_datagram(verifier.hello_verify_request(info, ADDR, WALL), now)
    (hello2,) = client.datagrams_to_send(now)
    (rec,) = parse_records(hello2)
    body = rec.body[HS_HDR:]
    # A record number the client will not use soon, so its next flight is not a "replay".
    frags = _split_hello(rec, body, [len(body) // 2], [rec.seq, rec.seq + 40])
    if reverse:
        # A later fragment alone carries no cookie: the stateless layer drops it.
        late = parse_client_hello_untrusted(frags[1])
        assert late is not None and late.fragment_offset > 0
        assert not verifier.check(late, ADDR, WALL)
    first = _hello(frags[0])
    assert verifier.check(first, ADDR, WALL)
    server.accept_verified_hello(frags[0], now)
    assert server.datagrams_to_send(now) == []  # waits for the rest of the hello
    server.receive_datagram(frags[1], now)  # (retransmitted, in the reversed case)
    _finish(client, server, now)
    assert client.state is server.state is ConnectionState.ESTABLISHED


def test_cookies_bound_to_address_random_and_time() -> None:
    verifier = CookieVerifier(b"s" * 16, rotation_interval=10.0)
    client, _ = make_pair()
    now = time.monotonic()
    info = _hello(_first_hello(client, now))
    client.receive_datagram(verifier.hello_verify_request(info, ADDR, WALL), now)
    hello2 = _hello(client.datagrams_to_send(now)[0])
    assert verifier.check(hello2, ADDR, WALL)
    assert verifier.check(hello2, ADDR, WALL + 10.0)  # the next interval still accepts it
    assert not verifier.check(hello2, ADDR, WALL + 20.0)  # two intervals later: expired
    assert not verifier.check(hello2, ("192.0.2.8", 40000), WALL)
    assert not verifier.check(hello2, (ADDR[0], 40001), WALL)
    # Another process with the same secret accepts it; one with another secret does not.
    assert CookieVerifier(b"s" * 16, rotation_interval=10.0).check(hello2, ADDR, WALL)
    assert not CookieVerifier(b"t" * 16, rotation_interval=10.0).check(hello2, ADDR, WALL)


def test_cookies_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        CookieVerifier(b"short")
    with pytest.raises(ConfigurationError):
        CookieVerifier(rotation_interval=0)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=300))
def test_cookies_parse_never_raises(data: bytes) -> None:
    info = parse_client_hello_untrusted(data)
    if info is not None:
        assert CookieVerifier(b"k" * 32).check(info, ADDR, WALL) in (True, False)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=255))
def test_cookies_parse_truncated_and_flipped_real_hello(cut: int, flip: int) -> None:
    client, _ = make_pair()
    hello = _first_hello(client, time.monotonic())
    mutated = bytearray(hello[:cut])
    if mutated:
        mutated[flip % len(mutated)] ^= 0xFF
    parse_client_hello_untrusted(bytes(mutated))
