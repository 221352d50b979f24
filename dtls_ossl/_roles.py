"""The DTLS role of one endpoint; kept dependency-free so every module can import it."""

from __future__ import annotations

import enum

__all__ = ["Role"]


class Role(enum.Enum):
    """Which side of the DTLS handshake this endpoint plays."""

    CLIENT = "client"
    "Sends the ClientHello (W3C/SDP: ``a=setup:active``)."
    SERVER = "server"
    "Answers the ClientHello (W3C/SDP: ``a=setup:passive``)."
