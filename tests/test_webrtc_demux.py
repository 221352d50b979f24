from __future__ import annotations

import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtls_ossl.webrtc.demux import classify


@pytest.mark.parametrize(
    ("first_byte", "kind"),
    [
        (0, "stun"),
        (1, "stun"),
        (3, "stun"),
        (4, "unknown"),
        (15, "unknown"),
        (16, "zrtp"),
        (19, "zrtp"),
        (20, "dtls"),
        (22, "dtls"),  # handshake content type
        (23, "dtls"),  # application data
        (63, "dtls"),
        (64, "turn-channel"),
        (79, "turn-channel"),
        (80, "unknown"),
        (127, "unknown"),
        (128, "rtp"),
        (191, "rtp"),
        (192, "unknown"),
        (255, "unknown"),
    ],
)
def test_classify_boundaries(first_byte: int, kind: str) -> None:
    datagram = bytes([first_byte]) + b"\xff" * 11
    assert classify(datagram) == kind
    assert classify(bytearray(datagram)) == kind
    assert classify(memoryview(datagram)) == kind
    assert classify(bytes([first_byte])) == kind


def test_classify_every_byte_value() -> None:
    expected = {
        **dict.fromkeys(range(0, 4), "stun"),
        **dict.fromkeys(range(16, 20), "zrtp"),
        **dict.fromkeys(range(20, 64), "dtls"),
        **dict.fromkeys(range(64, 80), "turn-channel"),
        **dict.fromkeys(range(128, 192), "rtp"),
    }
    for value in range(256):
        assert classify(bytes([value, 0])) == expected.get(value, "unknown"), value


@pytest.mark.parametrize("empty", [b"", bytearray(), memoryview(b"")])
def test_classify_empty_is_unknown(empty: bytes | bytearray | memoryview) -> None:
    assert classify(empty) == "unknown"


def test_classify_memoryview_slice_and_wide_items() -> None:
    data = b"\x00\x16\xfe\xfd"
    assert classify(memoryview(data)[1:]) == "dtls"
    assert classify(memoryview(data)[4:]) == "unknown"
    wide = memoryview(array.array("H", [0x8016]))  # first byte depends on endianness
    assert classify(wide) == classify(wide.tobytes())
    assert classify(memoryview(array.array("H"))) == "unknown"


@given(st.binary())
def test_classify_never_raises(data: bytes) -> None:
    assert classify(data) in {"stun", "zrtp", "dtls", "turn-channel", "rtp", "unknown"}
