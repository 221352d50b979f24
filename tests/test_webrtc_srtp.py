from __future__ import annotations

import pytest

from dtls_ossl._roles import Role
from dtls_ossl.exceptions import ConfigurationError
from dtls_ossl.webrtc.srtp import SRTP_EXPORTER_LABEL, SrtpKeys, SrtpProfile

MATERIAL_60 = bytes(range(60))


def test_srtp_exporter_label() -> None:
    assert SRTP_EXPORTER_LABEL == "EXTRACTOR-dtls_srtp"


@pytest.mark.parametrize(
    ("profile", "openssl_name", "iana_id", "key", "salt", "total"),
    [
        (SrtpProfile.AES128_CM_SHA1_80, "SRTP_AES128_CM_SHA1_80", 1, 16, 14, 60),
        (SrtpProfile.AES128_CM_SHA1_32, "SRTP_AES128_CM_SHA1_32", 2, 16, 14, 60),
        (SrtpProfile.AEAD_AES_128_GCM, "SRTP_AEAD_AES_128_GCM", 7, 16, 12, 56),
        (SrtpProfile.AEAD_AES_256_GCM, "SRTP_AEAD_AES_256_GCM", 8, 32, 12, 88),
    ],
)
def test_srtp_profile_table(
    profile: SrtpProfile, openssl_name: str, iana_id: int, key: int, salt: int, total: int
) -> None:
    assert profile.openssl_name == openssl_name
    assert profile.value == openssl_name
    assert profile.iana_id == iana_id
    assert profile.key_length == key
    assert profile.salt_length == salt
    assert profile.keying_material_length == total
    assert SrtpProfile.from_openssl_name(openssl_name) is profile
    assert SrtpProfile.from_iana_id(iana_id) is profile


def test_srtp_profile_has_exactly_four_members() -> None:
    assert len(SrtpProfile) == 4


def test_srtp_profile_from_openssl_name_is_lenient_about_case() -> None:
    assert SrtpProfile.from_openssl_name(" srtp_aes128_cm_sha1_80 ") is (
        SrtpProfile.AES128_CM_SHA1_80
    )


@pytest.mark.parametrize("name", ["SRTP_NULL_SHA1_80", "AES128_CM_SHA1_80", ""])
def test_srtp_profile_from_openssl_name_rejects_unknown(name: str) -> None:
    with pytest.raises(ConfigurationError, match="unsupported SRTP profile"):
        SrtpProfile.from_openssl_name(name)


@pytest.mark.parametrize("iana_id", [0, 3, 5, 6, 9, -1])
def test_srtp_profile_from_iana_id_rejects_unknown(iana_id: int) -> None:
    with pytest.raises(ConfigurationError, match="unsupported SRTP profile id"):
        SrtpProfile.from_iana_id(iana_id)


def test_srtp_keys_split_fixed_vector_client() -> None:
    keys = SrtpKeys.from_keying_material(SrtpProfile.AES128_CM_SHA1_80, MATERIAL_60, Role.CLIENT)
    # RFC 5764 §4.2: client key | server key | client salt | server salt
    assert keys.local_key == bytes(range(0, 16))
    assert keys.remote_key == bytes(range(16, 32))
    assert keys.local_salt == bytes(range(32, 46))
    assert keys.remote_salt == bytes(range(46, 60))
    assert keys.local_master_key == bytes(range(0, 16)) + bytes(range(32, 46))
    assert keys.remote_master_key == bytes(range(16, 32)) + bytes(range(46, 60))


def test_srtp_keys_split_fixed_vector_server() -> None:
    keys = SrtpKeys.from_keying_material(SrtpProfile.AES128_CM_SHA1_80, MATERIAL_60, Role.SERVER)
    assert keys.local_key == bytes(range(16, 32))
    assert keys.remote_key == bytes(range(0, 16))
    assert keys.local_salt == bytes(range(46, 60))
    assert keys.remote_salt == bytes(range(32, 46))
    assert keys.local_master_key == bytes(range(16, 32)) + bytes(range(46, 60))


def test_srtp_keys_split_fixed_vector_aead_aes_256_gcm() -> None:
    material = bytes(range(88))
    profile = SrtpProfile.AEAD_AES_256_GCM
    client = SrtpKeys.from_keying_material(profile, material, Role.CLIENT)
    server = SrtpKeys.from_keying_material(profile, material, Role.SERVER)
    assert client.local_key == bytes(range(0, 32)) == server.remote_key
    assert client.remote_key == bytes(range(32, 64)) == server.local_key
    assert client.local_salt == bytes(range(64, 76)) == server.remote_salt
    assert client.remote_salt == bytes(range(76, 88)) == server.local_salt
    assert len(client.local_master_key) == 44
    assert client.mirrors(server)


def test_srtp_keys_split_fixed_vector_aead_aes_128_gcm() -> None:
    material = bytes(range(56))
    client = SrtpKeys.from_keying_material(SrtpProfile.AEAD_AES_128_GCM, material, Role.CLIENT)
    assert client.local_key == bytes(range(0, 16))
    assert client.remote_key == bytes(range(16, 32))
    assert client.local_salt == bytes(range(32, 44))
    assert client.remote_salt == bytes(range(44, 56))


def test_srtp_keys_client_and_server_mirror() -> None:
    profile = SrtpProfile.AES128_CM_SHA1_80
    client = SrtpKeys.from_keying_material(profile, MATERIAL_60, Role.CLIENT)
    server = SrtpKeys.from_keying_material(profile, MATERIAL_60, Role.SERVER)
    assert client.mirrors(server)
    assert server.mirrors(client)
    assert not client.mirrors(client)
    assert client.local_master_key == server.remote_master_key
    assert client.remote_master_key == server.local_master_key


def test_srtp_keys_mirror_needs_same_profile_and_bytes() -> None:
    client = SrtpKeys.from_keying_material(SrtpProfile.AES128_CM_SHA1_80, MATERIAL_60, Role.CLIENT)
    other_profile = SrtpKeys.from_keying_material(
        SrtpProfile.AES128_CM_SHA1_32, MATERIAL_60, Role.SERVER
    )
    assert not client.mirrors(other_profile)
    other_bytes = SrtpKeys.from_keying_material(
        SrtpProfile.AES128_CM_SHA1_80, bytes(reversed(MATERIAL_60)), Role.SERVER
    )
    assert not client.mirrors(other_bytes)


@pytest.mark.parametrize("length", [0, 56, 59, 61, 88])
def test_srtp_keys_wrong_material_length_raises(length: int) -> None:
    with pytest.raises(
        ConfigurationError, match=f"needs 60 bytes of keying material, got {length}"
    ):
        SrtpKeys.from_keying_material(SrtpProfile.AES128_CM_SHA1_80, bytes(length), Role.CLIENT)


def test_srtp_keys_constructor_checks_lengths() -> None:
    with pytest.raises(ConfigurationError, match="local_salt must be 14 bytes"):
        SrtpKeys(SrtpProfile.AES128_CM_SHA1_80, bytes(16), bytes(12), bytes(16), bytes(14))


def test_srtp_keys_repr_hides_keys() -> None:
    secret = bytes([0xAB]) * 60
    keys = SrtpKeys.from_keying_material(SrtpProfile.AES128_CM_SHA1_80, secret, Role.CLIENT)
    for text in (repr(keys), str(keys), f"{keys}", repr([keys])):
        assert "<redacted>" in text
        assert "AES128_CM_SHA1_80" in text
        assert "abab" not in text.lower()
        assert "\\xab" not in text
        assert "171" not in text  # no list-of-ints rendering either


def test_srtp_keys_to_dict_is_explicit_hex() -> None:
    keys = SrtpKeys.from_keying_material(SrtpProfile.AES128_CM_SHA1_80, MATERIAL_60, Role.CLIENT)
    assert keys.to_dict() == {
        "profile": "SRTP_AES128_CM_SHA1_80",
        "local_key": bytes(range(0, 16)).hex(),
        "local_salt": bytes(range(32, 46)).hex(),
        "remote_key": bytes(range(16, 32)).hex(),
        "remote_salt": bytes(range(46, 60)).hex(),
    }


def test_srtp_keys_from_keying_material_accepts_bytearray() -> None:
    keys = SrtpKeys.from_keying_material(
        SrtpProfile.AES128_CM_SHA1_80, bytearray(MATERIAL_60), Role.CLIENT
    )
    assert type(keys.local_key) is bytes
    assert keys.local_key == bytes(range(16))
