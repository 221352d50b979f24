"""Classify datagrams arriving on a WebRTC 5-tuple by their first byte (RFC 7983 §7).

STUN, ZRTP, DTLS, TURN channel data and RTP/RTCP share one UDP port in WebRTC; RFC 7983 §7
(updating RFC 5764 §5.1.2) assigns each a disjoint range of first-byte values. Pure Python.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DatagramKind", "classify"]

DatagramKind = Literal["stun", "zrtp", "dtls", "turn-channel", "rtp", "unknown"]
"What :func:`classify` found; ``rtp`` covers both RTP and RTCP (and their secure variants)."

_RANGES: tuple[tuple[int, int, DatagramKind], ...] = (
    (0, 3, "stun"),
    (16, 19, "zrtp"),
    (20, 63, "dtls"),
    (64, 79, "turn-channel"),
    (128, 191, "rtp"),
)


def _build_table() -> tuple[DatagramKind, ...]:
    """Expand :data:`_RANGES` into one entry per possible first byte."""
    table: list[DatagramKind] = ["unknown"] * 256
    for low, high, kind in _RANGES:
        for byte in range(low, high + 1):
            table[byte] = kind
    return tuple(table)


_TABLE: tuple[DatagramKind, ...] = _build_table()


def classify(datagram: bytes | bytearray | memoryview) -> DatagramKind:
    """Return what kind of packet ``datagram`` is, from its first byte (RFC 7983 §7).

    ==========  ================
    first byte  kind
    ==========  ================
    0-3         ``stun``
    16-19       ``zrtp``
    20-63       ``dtls``
    64-79       ``turn-channel``
    128-191     ``rtp`` (RTP and RTCP)
    otherwise   ``unknown``
    ==========  ================

    Only the first byte is looked at, so this says where to route a datagram, not that it is
    well formed. Never raises; an empty datagram is ``unknown``.
    """
    if isinstance(datagram, memoryview) and (datagram.format != "B" or datagram.ndim != 1):
        datagram = datagram.tobytes()[:1]  # rare: a view with items wider than one byte
    if not datagram:
        return "unknown"
    return _TABLE[datagram[0]]
