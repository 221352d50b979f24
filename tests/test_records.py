"""The untrusted DTLS parsers (dtls_ossl._records): exact cases and robustness on any bytes.

Every parse function must return a value or None on any input, never raise. The exact cases
use hand-built records and a ClientHello (with a cookie) captured from a real handshake.
"""

from __future__ import annotations

import functools
import itertools
import time

from helpers import make_pair
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hostile import record
from test_hostile_records import fragment as hs_fragment

from dtls_ossl import cookies
from dtls_ossl._demo_wire import describe_datagram
from dtls_ossl._records import (
    ClientHelloInfo,
    HandshakeFragment,
    Record,
    first_handshake_type_untrusted,
    is_client_hello_untrusted,
    may_feed_untrusted,
    parse_client_hello_untrusted,
    parse_handshake_fragment_untrusted,
    parse_record_untrusted,
    reassemble_client_hello_untrusted,
    split_handshake_untrusted,
    split_records_untrusted,
)
from dtls_ossl.cookies import CookieVerifier

ADDR = ("192.0.2.7", 40000)
WALL = 1_800_000_000.0


def fragment(
    msg_type: int, length: int, seq: int, off: int, body: bytes, flen: int | None = None
) -> bytes:
    """A handshake fragment; ``flen`` overrides its fragment_length field."""
    return hs_fragment(msg_type, length, seq, off, len(body) if flen is None else flen, body)


@functools.cache
def real_hellos() -> tuple[bytes, bytes, bytes]:
    """(first ClientHello, the HelloVerifyRequest, the second ClientHello with its cookie)."""
    client, _ = make_pair()
    now = time.monotonic()
    client.connect(now)
    (first,) = client.datagrams_to_send(now)
    info = parse_client_hello_untrusted(first)
    assert info is not None
    hvr = CookieVerifier(b"k" * 32).hello_verify_request(info, ADDR, WALL)
    client.receive_datagram(hvr, now)
    (second,) = client.datagrams_to_send(now)
    return first, hvr, second


# ------------------------------------------------------------------------------- records


def test_record_header_fields_and_packed_records() -> None:
    a = record(22, 0, 7, b"abc")
    b = record(23, 1, 0x0102030405, b"")
    records, stop = split_records_untrusted(a + b)
    assert records == [
        Record(0, 22, 0xFEFD, 0, 7, b"abc"),
        Record(16, 23, 0xFEFD, 1, 0x0102030405, b""),
    ]
    assert stop == 29 and records[1].end == 29
    assert parse_record_untrusted(a + b, 16) == records[1]


def test_record_cut_short_or_longer_than_the_datagram() -> None:
    whole = record(22, 0, 0, b"abcd")
    assert parse_record_untrusted(whole[:12]) is None  # truncated header
    assert parse_record_untrusted(whole[:-1]) is None  # payload cut short
    assert parse_record_untrusted(record(22, 0, 0, b"abcde")[:-1]) is None
    assert parse_record_untrusted(whole, -1) is None and parse_record_untrusted(whole, 99) is None
    assert split_records_untrusted(whole + whole[:12]) == (
        [Record(0, 22, 0xFEFD, 0, 0, b"abcd")],
        17,
    )
    assert split_records_untrusted(b"") == ([], 0)
    assert split_records_untrusted(record(22, 0, 0, b"x")[:-1]) == ([], 0)


def test_zero_length_record_and_fragment() -> None:
    (rec,), stop = split_records_untrusted(record(21, 0, 0, b""))
    assert rec.fragment == b"" and stop == 13
    empty = fragment(14, 0, 3, 0, b"")  # ServerHelloDone: an empty body
    assert parse_handshake_fragment_untrusted(empty) == HandshakeFragment(14, 0, 3, 0, b"")
    assert split_handshake_untrusted(b"") == ([], 0)


# ----------------------------------------------------------------------- handshake headers


def test_handshake_fragments_and_where_parsing_stops() -> None:
    a = fragment(11, 100, 2, 40, bytes(10))
    b = fragment(14, 0, 3, 0, b"")
    assert split_handshake_untrusted(a + b) == (
        [HandshakeFragment(11, 100, 2, 40, bytes(10)), HandshakeFragment(14, 0, 3, 0, b"")],
        34,
    )
    assert parse_handshake_fragment_untrusted(a[:11]) is None  # truncated header
    assert parse_handshake_fragment_untrusted(a[:-1]) is None  # body cut short
    # fragment_offset + fragment_length beyond the message length
    assert parse_handshake_fragment_untrusted(fragment(11, 100, 2, 95, bytes(10))) is None
    assert parse_handshake_fragment_untrusted(fragment(11, 5, 2, 0, bytes(6))) is None
    assert split_handshake_untrusted(b + a[:-1]) == ([HandshakeFragment(14, 0, 3, 0, b"")], 12)


def test_first_handshake_type_screen() -> None:
    hello = record(22, 0, 0, fragment(1, 1, 0, 0, b"x"))
    assert first_handshake_type_untrusted(hello) == 1
    assert is_client_hello_untrusted(hello) and may_feed_untrusted(hello)
    hvr = record(22, 0, 0, fragment(3, 1, 0, 0, b"x"))
    assert may_feed_untrusted(hvr) and not is_client_hello_untrusted(hvr)
    assert first_handshake_type_untrusted(record(22, 1, 0, fragment(1, 1, 0, 0, b"x"))) == -1
    assert first_handshake_type_untrusted(record(23, 0, 0, fragment(1, 1, 0, 0, b"x"))) == -1
    assert first_handshake_type_untrusted(hello[:25]) == -1
    cert = record(22, 0, 0, fragment(11, 1, 0, 0, b"x"))
    assert not may_feed_untrusted(cert)


# ---------------------------------------------------------------------------- ClientHello


def test_real_client_hello_cookie_and_extensions() -> None:
    first, hvr, second = real_hellos()
    one = parse_client_hello_untrusted(first)
    two = parse_client_hello_untrusted(second)
    assert one is not None and two is not None
    assert (one.message_seq, one.cookie, one.version) == (0, b"", b"\xfe\xfd")
    assert (two.message_seq, two.random) == (1, one.random)
    assert two.record_seq == second[5:11] and two.length == len(second) - 25
    verifier = CookieVerifier(b"k" * 32)
    assert two.cookie == verifier.cookie_for(ADDR, one.random, WALL)
    assert verifier.check(two, ADDR, WALL)
    whole = reassemble_client_hello_untrusted([second])
    assert whole is not None and whole.complete
    assert (whole.cookie, whole.random, whole.legacy_version) == (two.cookie, two.random, 0xFEFD)
    assert (whole.fragments, whole.datagrams, whole.record_seq) == (1, 1, second[5:11])
    # The configuration's groups (X25519:P-256:P-384), use_srtp, EMS and signature_algorithms.
    assert whole.groups == [0x001D, 0x0017, 0x0018]
    assert {10, 13, 14, 23} <= set(whole.extensions)
    assert whole.versions == [] and not whole.offers_dtls13  # DTLS 1.2 only
    # HelloVerifyRequest: a handshake of type 3 echoing message_seq, never a ClientHello.
    assert parse_client_hello_untrusted(hvr) is None and may_feed_untrusted(hvr)


def test_real_client_hello_fragmented_reassembles_in_any_order() -> None:
    _, _, second = real_hellos()
    (rec,), _ = split_records_untrusted(second)
    (hs,), _ = split_handshake_untrusted(rec.fragment)
    cuts = [0, 40, 90, hs.length]
    parts = [
        record(22, 0, 10 + i, fragment(1, hs.length, hs.message_seq, a, hs.body[a:b]))
        for i, (a, b) in enumerate(itertools.pairwise(cuts))
    ]
    info = reassemble_client_hello_untrusted([parts[2], parts[0], parts[0], parts[1]])
    whole = reassemble_client_hello_untrusted([second])
    assert info is not None and whole is not None and info.complete
    assert (info.fragments, info.datagrams) == (3, 3)
    assert (info.cookie, info.groups, info.extensions) == (
        whole.cookie,
        whole.groups,
        whole.extensions,
    )
    assert info.record_seq == (10).to_bytes(6, "big")
    later = parse_client_hello_untrusted(parts[1])
    assert later is not None and (later.fragment_offset, later.cookie) == (40, b"")
    partial = reassemble_client_hello_untrusted(parts[:2])
    assert partial is not None and not partial.complete and partial.cookie == b""
    assert "(incomplete)" in partial.describe()


def test_client_hello_malformed_cases() -> None:
    body = b"\xfe\xfd" + bytes(32) + b"\x00" + b"\x03abc"
    hello = record(22, 0, 0, fragment(1, len(body), 0, 0, body))
    info = parse_client_hello_untrusted(hello)
    assert info is not None and info.cookie == b"abc"
    assert parse_client_hello_untrusted(hello[:-1]) is None  # record beyond the datagram
    assert parse_client_hello_untrusted(hello[:24]) is None  # truncated headers
    cut = body[:-1]  # cookie runs past the fragment
    assert parse_client_hello_untrusted(record(22, 0, 0, fragment(1, len(cut), 0, 0, cut))) is None
    long_sid = b"\xfe\xfd" + bytes(32) + b"\x21" + bytes(34)
    assert parse_client_hello_untrusted(record(22, 0, 0, fragment(1, 68, 0, 0, long_sid))) is None
    beyond = record(22, 0, 0, fragment(1, len(body), 0, 0, body, flen=len(body) + 1))
    assert parse_client_hello_untrusted(beyond) is None  # fragment longer than its record
    assert parse_client_hello_untrusted(b"\x16\x03\x03" + hello[3:]) is None  # TLS, not DTLS
    # A whole hello whose extensions block runs past the body: prefix read, no extensions.
    bad_ext = body + b"\x00\x02\xc0\x2b\x01\x00\x00\x09\x00\x0a\x00\x04\x00\x02\x00\x1d"
    got = reassemble_client_hello_untrusted(
        [record(22, 0, 0, fragment(1, len(bad_ext), 0, 0, bad_ext))]
    )
    assert got is not None and got.complete and got.cookie == b"abc" and got.groups == []


def test_oversized_hello_is_not_reassembled_and_cut_records_are_labelled() -> None:
    huge = record(22, 0, 0, fragment(1, (1 << 17) + 1, 0, 0, bytes(40)))
    assert reassemble_client_hello_untrusted([huge]) is None
    assert reassemble_client_hello_untrusted([]) is None
    # The demo's printer labels what does not form a whole record instead of guessing.
    assert describe_datagram(huge[:-1]) == f"?({len(huge) - 1} trailing bytes)"
    assert describe_datagram(record(22, 0, 0, fragment(2, 10, 0, 0, bytes(10))[:-1])) == (
        "Handshake(truncated)"
    )


def test_cookies_module_keeps_the_one_class() -> None:
    assert cookies.ClientHelloInfo is ClientHelloInfo
    assert cookies.parse_client_hello_untrusted is parse_client_hello_untrusted


# ------------------------------------------------------------------------- any bytes at all


def _parse_everything(data: bytes) -> None:
    """Call every parser on ``data``; check the invariants that hold on any input."""
    records, stop = split_records_untrusted(data)
    assert 0 <= stop <= len(data)
    at = 0
    for rec in records:
        assert rec.offset == at and rec.end <= len(data)
        at = rec.end
        frags, hstop = split_handshake_untrusted(rec.fragment)
        assert 0 <= hstop <= len(rec.fragment)
        assert all(f.fragment_offset + len(f.body) <= f.length for f in frags)
    assert at == stop
    parse_record_untrusted(data, len(data) // 2)
    parse_handshake_fragment_untrusted(data, len(data) // 3)
    assert first_handshake_type_untrusted(data) in (-1, *range(256))
    is_client_hello_untrusted(data)
    may_feed_untrusted(data)
    info = parse_client_hello_untrusted(data)
    if info is not None:
        assert len(info.record_seq) == 6 and len(info.cookie) <= 255
        assert CookieVerifier(b"k" * 32).check(info, ADDR, WALL) in (True, False)
    whole = reassemble_client_hello_untrusted([data, data[::-1]])
    if whole is not None:
        whole.describe()
    assert describe_datagram(data)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(st.binary(max_size=400))
def test_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    _parse_everything(data)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(
    st.sampled_from([0, 1, 2]),
    st.integers(min_value=0, max_value=400),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), max_size=6),
    st.binary(max_size=40),
)
def test_parsers_never_raise_on_mutated_real_records(
    which: int, cut: int, flips: list[tuple[int, int]], tail: bytes
) -> None:
    mutated = bytearray(real_hellos()[which][:cut])
    for pos, mask in flips:
        if mutated:
            mutated[pos % len(mutated)] ^= mask
    _parse_everything(bytes(mutated) + tail)
