"""The keys a handshake yields drive a real SRTP stack (libsrtp via pylibsrtp) both ways."""

from __future__ import annotations

import struct

import pytest
from helpers import handshake, make_pair

from dtls_ossl import SrtpProfile

pytest.importorskip("pylibsrtp")
import pylibsrtp


def _rtp(seq: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, 1234 * seq, 0x1234ABCD) + payload


@pytest.mark.parametrize("profile", list(SrtpProfile), ids=lambda p: p.name)
def test_srtp_keys_protect_and_unprotect_with_libsrtp(profile: SrtpProfile) -> None:
    client, server = make_pair({"srtp_profiles": [profile]}, {"srtp_profiles": [profile]})
    handshake(client, server)
    ck, sk = client.srtp_keys(), server.srtp_keys()

    def session(key: bytes, direction: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(
            policy=pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=profile.iana_id)
        )

    client_tx = session(ck.local_master_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    server_rx = session(sk.remote_master_key, pylibsrtp.Policy.SSRC_ANY_INBOUND)
    server_tx = session(sk.local_master_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    client_rx = session(ck.remote_master_key, pylibsrtp.Policy.SSRC_ANY_INBOUND)
    for seq in range(1, 4):
        packet = _rtp(seq, b"media %d" % seq)
        protected = client_tx.protect(packet)
        assert protected != packet
        assert server_rx.unprotect(protected) == packet
        back = server_tx.protect(packet)
        assert client_rx.unprotect(back) == packet
    # A session keyed with the wrong direction's key refuses the packet.
    wrong = session(sk.local_master_key, pylibsrtp.Policy.SSRC_ANY_INBOUND)
    with pytest.raises(pylibsrtp.Error):
        wrong.unprotect(client_tx.protect(_rtp(9, b"x")))
