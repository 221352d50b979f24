"""Names shared by the asyncio layer: address and callback types, the logger."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

from dtls_ossl.webrtc.sdp import Fingerprint

__all__ = [
    "Address",
    "DatagramCallback",
    "Fingerprints",
    "HandshakeFailedCallback",
    "RemoteFingerprints",
    "logger",
]

logger = logging.getLogger("dtls_ossl.aio")

Address: TypeAlias = tuple[Any, ...]
"A socket address as asyncio reports it: ``(host, port)`` or ``(host, port, flow, scope)``."
Fingerprints: TypeAlias = Iterable[Fingerprint | str]
RemoteFingerprints: TypeAlias = Fingerprints | Callable[[Address], Fingerprints | None] | None
"Expected peer fingerprints: one list for every peer, or a callable ``addr -> list | None``."
DatagramCallback: TypeAlias = Callable[[bytes, Address], object]
"Receives a non-DTLS datagram and its source address (STUN, RTP/RTCP, other)."
HandshakeFailedCallback: TypeAlias = Callable[[Address, BaseException], object]
"Receives the address and the error of a peer whose handshake failed (a plain function)."
