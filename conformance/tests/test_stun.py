"""The ICE-lite STUN responder used by the browser peer (RFC 5389)."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from dtls_ossl_conformance._stun import MAGIC_COOKIE, binding_response_untrusted, is_stun

PWD = "0123456789abcdef0123456789abcdef"


def request(
    username: bytes, pwd: str, *, use_candidate: bool = True, tamper: bool = False
) -> tuple[bytes, bytes]:
    tid = os.urandom(12)
    attrs = struct.pack("!HH", 0x0006, len(username)) + username + b"\0" * (-len(username) % 4)
    if use_candidate:
        attrs += struct.pack("!HH", 0x0025, 0)
    header = struct.pack("!HHI", 0x0001, len(attrs) + 24, MAGIC_COOKIE) + tid
    mac = hmac.new(pwd.encode(), header + attrs, hashlib.sha1).digest()
    if tamper:
        mac = bytes([mac[0] ^ 1]) + mac[1:]
    attrs += struct.pack("!HH", 0x0008, 20) + mac
    header = struct.pack("!HHI", 0x0001, len(attrs) + 8, MAGIC_COOKIE) + tid
    msg = header + attrs
    crc = (zlib.crc32(msg) & 0xFFFFFFFF) ^ 0x5354554E
    return msg + struct.pack("!HHI", 0x8028, 4, crc), tid


def test_valid_binding_request_gets_a_signed_response() -> None:
    msg, tid = request(b"ours:theirs", PWD)
    assert is_stun(msg)
    reply = binding_response_untrusted(msg, ("127.0.0.1", 40000), "ours", PWD)
    assert reply is not None
    response, use_candidate = reply
    assert use_candidate is True
    assert response[:2] == b"\x01\x01" and response[8:20] == tid
    assert int.from_bytes(response[2:4], "big") == len(response) - 20
    # FINGERPRINT over everything before it.
    body, fp = response[:-8], response[-4:]
    assert int.from_bytes(fp, "big") == (zlib.crc32(body) & 0xFFFFFFFF) ^ 0x5354554E
    # MESSAGE-INTEGRITY with the length field covering it but not FINGERPRINT.
    mi_at = len(response) - 8 - 24
    head = bytearray(response[:mi_at])
    head[2:4] = (mi_at + 24 - 20).to_bytes(2, "big")
    mac = hmac.new(PWD.encode(), bytes(head), hashlib.sha1).digest()
    assert response[mi_at + 4 : mi_at + 24] == mac
    # XOR-MAPPED-ADDRESS of 127.0.0.1:40000.
    port = int.from_bytes(response[26:28], "big") ^ (MAGIC_COOKIE >> 16)
    ip = int.from_bytes(response[28:32], "big") ^ MAGIC_COOKIE
    assert (port, ip) == (40000, 0x7F000001)


@pytest.mark.parametrize(
    ("username", "pwd", "tamper"),
    [
        (b"other:theirs", PWD, False),
        (b"ours:theirs", "wrong-password-0123456789", False),
        (b"ours:theirs", PWD, True),
    ],
)
def test_invalid_requests_are_dropped(username: bytes, pwd: str, tamper: bool) -> None:
    msg, _ = request(username, pwd, tamper=tamper)
    assert binding_response_untrusted(msg, ("127.0.0.1", 1), "ours", PWD) is None


def test_garbage_is_not_stun() -> None:
    assert not is_stun(b"\x16\xfe\xfd" + b"\0" * 30)
    assert (
        binding_response_untrusted(b"\x00\x01\x00\x00" + b"\0" * 16, ("127.0.0.1", 1), "a", PWD)
        is None
    )


@pytest.mark.interop
@pytest.mark.browser
@pytest.mark.timeout(90)
@pytest.mark.skipif(
    shutil.which("chromium") is None or os.geteuid() != 0,
    reason="needs chromium and root (unshare -n)",
)
def test_chromium_cells_pass(tmp_path: Path) -> None:
    import io

    from dtls_ossl.webrtc.srtp import SrtpProfile
    from dtls_ossl_conformance import Status, run_matrix
    from dtls_ossl_conformance.peer_chromium import ChromiumPeer

    class OneChromium(ChromiumPeer):
        profiles = (SrtpProfile.AEAD_AES_128_GCM,)
        key_types = ("ecdsa-p256",)

    report = run_matrix([OneChromium()], out=io.StringIO(), report_dir=str(tmp_path))
    assert [r.status for r in report.results] == [Status.PASSED] * 5, report.results
    hello = {c.name: c for c in report.results[4].checks}
    assert "fefc" in hello["client_hello_offers_1.3"].detail
    assert hello["client_hello_fragmented"].status.value == "pass"
    checks = {c.name: c for c in report.results[0].checks}
    assert "decrypted with our srtp_keys()" in checks["keying_material"].detail
    assert report.results[0].theirs.extra["dtlsState"] == "connected"
