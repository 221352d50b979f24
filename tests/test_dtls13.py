"""DTLS 1.3 between dtls_ossl peers: only where the linked OpenSSL has it (4.1 or later).

Until ci/openssl-matrix.sh finds an OpenSSL with DTLS 1.3, these skip with the reason; the
configuration path (allow_dtls_1_3) compiles against both kinds of OpenSSL either way.
"""

from __future__ import annotations

import pytest
from helpers import completed, handshake, make_pair

import dtls_ossl
from dtls_ossl import SrtpProfile

pytestmark = pytest.mark.timeout(60)

needs_dtls13 = pytest.mark.skipif(
    not dtls_ossl.HAS_DTLS_1_3,
    reason=f"the linked {dtls_ossl.openssl_version()} has no DTLS 1.3 (OpenSSL 4.1 or later)",
)


@needs_dtls13
def test_dtls13_handshake_with_srtp_and_exporter() -> None:
    profile = SrtpProfile.AEAD_AES_128_GCM
    both = {"allow_dtls_1_3": True, "srtp_profiles": [profile]}
    client, server = make_pair(dict(both), dict(both))
    handshake(client, server)
    c_done, s_done = completed(client), completed(server)
    assert c_done.protocol_version == s_done.protocol_version == "DTLSv1.3"
    assert c_done.srtp_profile is s_done.srtp_profile is profile
    assert client.srtp_keys().mirrors(server.srtp_keys())
    n = profile.keying_material_length
    assert client.export_keying_material("EXTRACTOR-dtls_srtp", n) == (
        server.export_keying_material("EXTRACTOR-dtls_srtp", n)
    )


@needs_dtls13
@pytest.mark.parametrize("offers_1_3", ["client", "server"])
def test_dtls13_falls_back_to_1_2_against_a_1_2_only_peer(offers_1_3: str) -> None:
    one_three = {"allow_dtls_1_3": True}
    client, server = make_pair(
        one_three if offers_1_3 == "client" else {},
        one_three if offers_1_3 == "server" else {},
    )
    handshake(client, server)
    assert completed(client).protocol_version == completed(server).protocol_version == "DTLSv1.2"


def test_allow_dtls_1_3_without_it_is_a_configuration_error() -> None:
    if dtls_ossl.HAS_DTLS_1_3:
        pytest.skip(f"the linked {dtls_ossl.openssl_version()} has DTLS 1.3")
    with pytest.raises(dtls_ossl.ConfigurationError, match=r"DTLS 1\.3"):
        make_pair({"allow_dtls_1_3": True}, {})
