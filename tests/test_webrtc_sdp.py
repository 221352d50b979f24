from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtls_ossl._roles import Role
from dtls_ossl.exceptions import ConfigurationError
from dtls_ossl.webrtc.sdp import FINGERPRINT_ALGORITHMS, Fingerprint, SetupRole, setup_role

DER = b"\x30\x82\x01\x0a not really a certificate, but hashing does not care"
SHA256_HEX = hashlib.sha256(DER).digest().hex(":").upper()


def test_fingerprint_algorithms_table() -> None:
    assert FINGERPRINT_ALGORITHMS == {
        "sha-1": ("sha1", 20),
        "sha-224": ("sha224", 28),
        "sha-256": ("sha256", 32),
        "sha-384": ("sha384", 48),
        "sha-512": ("sha512", 64),
    }
    for hashlib_name, size in FINGERPRINT_ALGORITHMS.values():
        assert hashlib.new(hashlib_name).digest_size == size


def test_fingerprint_parse_and_format_round_trip() -> None:
    text = f"sha-256 {SHA256_HEX}"
    fp = Fingerprint.parse(text)
    assert fp.algorithm == "sha-256"
    assert fp.value == hashlib.sha256(DER).digest()
    assert str(fp) == text
    assert fp.hex == SHA256_HEX
    assert fp.sdp_attribute() == f"a=fingerprint:{text}"
    assert Fingerprint.parse(str(fp)) == fp
    assert Fingerprint.parse(fp.sdp_attribute()) == fp
    assert eval(repr(fp), {"Fingerprint": Fingerprint}) == fp


def test_fingerprint_parse_is_case_insensitive() -> None:
    upper = Fingerprint.parse(f"SHA-256 {SHA256_HEX}")
    lower = Fingerprint.parse(f"sha-256 {SHA256_HEX.lower()}")
    mixed = Fingerprint.parse(f"Sha-256 {SHA256_HEX[:10].lower()}{SHA256_HEX[10:]}")
    assert upper == lower == mixed
    assert hash(upper) == hash(lower)
    assert upper.algorithm == "sha-256"
    assert str(lower) == f"sha-256 {SHA256_HEX}"  # output is always upper-case hex


@pytest.mark.parametrize(
    "prefix", ["", "a=fingerprint:", "fingerprint:", "A=Fingerprint:", "  a=fingerprint:"]
)
def test_fingerprint_parse_accepts_prefix_and_whitespace(prefix: str) -> None:
    fp = Fingerprint.parse(f"{prefix}sha-256   {SHA256_HEX} \r\n")
    assert fp == Fingerprint.from_der(DER)


@pytest.mark.parametrize("algorithm", sorted(FINGERPRINT_ALGORITHMS))
def test_fingerprint_every_algorithm(algorithm: str) -> None:
    hashlib_name, size = FINGERPRINT_ALGORITHMS[algorithm]
    digest = hashlib.new(hashlib_name, DER).digest()
    fp = Fingerprint.from_der(DER, algorithm.upper())
    assert fp.algorithm == algorithm
    assert fp.value == digest
    assert len(fp.value) == size
    assert Fingerprint.parse(str(fp)) == fp
    assert str(fp) == f"{algorithm} {digest.hex(':').upper()}"
    assert fp.matches(DER)


@pytest.mark.parametrize(
    ("algorithm", "size"),
    [("sha-1", 32), ("sha-256", 20), ("sha-256", 31), ("sha-256", 33), ("sha-512", 48)],
)
def test_fingerprint_parse_rejects_wrong_length(algorithm: str, size: int) -> None:
    text = f"{algorithm} {bytes(size).hex(':')}"
    with pytest.raises(ConfigurationError, match=rf"{algorithm} fingerprint must be \d+ bytes"):
        Fingerprint.parse(text)


@pytest.mark.parametrize(
    "hex_text",
    [
        "AB:CD:EF:G0",  # not hex
        "ABCD:EF",  # pair too long
        "A:BC",  # pair too short
        "AB::CD",  # empty pair
        "AB:CD:",  # trailing colon
        ":AB:CD",  # leading colon
        "AB-CD",  # wrong separator
        "ABCDEF",  # no separators
        "AB:C\u0660",  # a non-ASCII digit
        "+A:BC",
    ],
)
def test_fingerprint_parse_rejects_bad_hex(hex_text: str) -> None:
    with pytest.raises(ConfigurationError, match="colon-separated hex pairs"):
        Fingerprint.parse(f"sha-256 {hex_text}")


@pytest.mark.parametrize("algorithm", ["sha-3", "sha_256", "blake2b", "sha-256x", "sha2-256"])
def test_fingerprint_parse_rejects_unknown_algorithm(algorithm: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown fingerprint algorithm") as info:
        Fingerprint.parse(f"{algorithm} {SHA256_HEX}")
    assert "\n" not in str(info.value)
    assert "sha-256" in str(info.value)  # lists what would have been accepted


@pytest.mark.parametrize("algorithm", ["md5", "MD2"])
def test_fingerprint_parse_rejects_forbidden_algorithm(algorithm: str) -> None:
    with pytest.raises(ConfigurationError, match="must not be used"):
        Fingerprint.parse(f"{algorithm} {bytes(16).hex(':')}")


@pytest.mark.parametrize(
    "text", ["", "   ", "sha-256", SHA256_HEX, f"sha-256 {SHA256_HEX} extra", "a=fingerprint:"]
)
def test_fingerprint_parse_rejects_wrong_shape(text: str) -> None:
    with pytest.raises(ConfigurationError, match="fingerprint must be"):
        Fingerprint.parse(text)


def test_fingerprint_constructor_validates_and_normalises() -> None:
    fp = Fingerprint("SHA-256", bytes(32))
    assert fp.algorithm == "sha-256"
    assert fp == Fingerprint("sha-256", bytes(32))
    with pytest.raises(ConfigurationError, match="must be 32 bytes, got 20"):
        Fingerprint("sha-256", bytes(20))
    with pytest.raises(ConfigurationError, match="unknown fingerprint algorithm"):
        Fingerprint("sha-999", bytes(32))


def test_fingerprint_matches() -> None:
    fp = Fingerprint.from_der(DER)
    assert fp.matches(DER)
    assert not fp.matches(DER + b"\x00")
    assert not fp.matches(b"")
    sha1 = Fingerprint.from_der(DER, "sha-1")
    assert sha1.matches(DER)
    assert sha1 != fp


def test_fingerprint_from_der_rejects_unknown_algorithm() -> None:
    with pytest.raises(ConfigurationError, match="unknown fingerprint algorithm"):
        Fingerprint.from_der(DER, "sha3-256")


_near_valid = st.builds(
    lambda prefix, alg, digest, sep: f"{prefix}{alg} {sep.join(f'{b:02x}' for b in digest)}",
    st.sampled_from(["", "a=fingerprint:", "fingerprint:", " "]),
    st.sampled_from([*FINGERPRINT_ALGORITHMS, "SHA-256", "md5", "x", ""]),
    st.binary(max_size=70),
    st.sampled_from([":", "::", "-", ""]),
)


@given(st.one_of(st.text(), _near_valid))
def test_fingerprint_parse_returns_or_raises_configuration_error(text: str) -> None:
    try:
        fp = Fingerprint.parse(text)
    except ConfigurationError as exc:
        assert "\n" not in str(exc)
    else:
        assert Fingerprint.parse(str(fp)) == fp
        assert len(fp.value) == FINGERPRINT_ALGORITHMS[fp.algorithm][1]


# --- a=setup -----------------------------------------------------------------------------------

VALID_SETUP_PAIRS = [
    ("active", "passive", Role.CLIENT),
    ("active", "actpass", Role.CLIENT),
    ("passive", "active", Role.SERVER),
    ("passive", "actpass", Role.SERVER),
    ("actpass", "active", Role.SERVER),
    ("actpass", "passive", Role.CLIENT),
]

INVALID_SETUP_PAIRS = [
    ("active", "active", "both sides are a=setup:active"),
    ("passive", "passive", "both sides are a=setup:passive"),
    ("actpass", "actpass", "both sides are a=setup:actpass"),
    ("holdconn", "active", "local a=setup:holdconn"),
    ("holdconn", "passive", "local a=setup:holdconn"),
    ("holdconn", "actpass", "local a=setup:holdconn"),
    ("holdconn", "holdconn", "local a=setup:holdconn"),
    ("active", "holdconn", "remote a=setup:holdconn"),
    ("passive", "holdconn", "remote a=setup:holdconn"),
    ("actpass", "holdconn", "remote a=setup:holdconn"),
]


@pytest.mark.parametrize(("local", "remote", "role"), VALID_SETUP_PAIRS)
def test_setup_role_valid_pairs(local: str, remote: str, role: Role) -> None:
    assert setup_role(local, remote) is role


@pytest.mark.parametrize(("local", "remote", "reason"), INVALID_SETUP_PAIRS)
def test_setup_role_invalid_pairs(local: str, remote: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        setup_role(local, remote)


def test_setup_role_table_is_complete() -> None:
    values = [member.value for member in SetupRole]
    covered = {(local, remote) for local, remote, _ in VALID_SETUP_PAIRS + INVALID_SETUP_PAIRS}
    assert covered == {(local, remote) for local in values for remote in values}


def test_setup_role_accepts_case_whitespace_and_prefix() -> None:
    assert setup_role(" ACTPASS ", "a=setup:Active\r\n") is Role.SERVER
    assert setup_role("a=setup:actpass", "setup:PASSIVE") is Role.CLIENT
    assert setup_role("A=SETUP:active", " passive") is Role.CLIENT


@pytest.mark.parametrize(
    ("local", "remote", "bad"),
    [("activ", "passive", "activ"), ("active", "", "''"), ("a=setup:", "active", "a=setup:")],
)
def test_setup_role_rejects_unknown_values(local: str, remote: str, bad: str) -> None:
    with pytest.raises(ConfigurationError, match="unknown a=setup value") as info:
        setup_role(local, remote)
    assert bad in str(info.value)


def test_setup_role_parse_and_format() -> None:
    assert SetupRole.parse("a=setup:ActPass") is SetupRole.ACTPASS
    assert SetupRole.ACTPASS.sdp_attribute() == "a=setup:actpass"
    assert [SetupRole.parse(m.sdp_attribute()) for m in SetupRole] == list(SetupRole)


def test_fingerprint_constructor_rejects_non_bytes() -> None:
    with pytest.raises(TypeError, match="value must be bytes"):
        Fingerprint("sha-1", 20)  # type: ignore[arg-type]
