"""The vocabulary between the connection and its C helper: status bits and connection states.

Every ``DtlsOssl_*`` call returns an int of ``DTLSOSSL_*`` bits (_cffi_src/dtls_ossl.h) saying
what it left for Python to do; :class:`ConnectionState` is where a connection is in its life.
"""

from __future__ import annotations

import enum

from dtls_ossl._binding import lib

__all__ = [
    "ALERTS",
    "CALLBACK",
    "CLOSED",
    "COMPLETED",
    "DROPPED",
    "ENDED",
    "ESTABLISHED",
    "FAILED",
    "FATAL",
    "HANDSHAKE_DONE",
    "HANDSHAKING",
    "NEW",
    "NO_SCRATCH",
    "OVERFLOW",
    "PEER_CLOSED",
    "PLAIN",
    "RETRANSMITTED",
    "STARTING",
    "TIMER",
    "TOO_BIG",
    "WIRE",
    "ConnectionState",
]

WIRE = int(lib.DTLSOSSL_WIRE)
PLAIN = int(lib.DTLSOSSL_PLAIN)
HANDSHAKE_DONE = int(lib.DTLSOSSL_HANDSHAKE_DONE)
PEER_CLOSED = int(lib.DTLSOSSL_PEER_CLOSED)
FATAL = int(lib.DTLSOSSL_FATAL)
ALERTS = int(lib.DTLSOSSL_ALERTS)
DROPPED = int(lib.DTLSOSSL_DROPPED)
TIMER = int(lib.DTLSOSSL_TIMER)
RETRANSMITTED = int(lib.DTLSOSSL_RETRANSMITTED)
OVERFLOW = int(lib.DTLSOSSL_OVERFLOW)
CALLBACK = int(lib.DTLSOSSL_CALLBACK)
TOO_BIG = int(lib.DTLSOSSL_TOO_BIG)
NO_SCRATCH = int(lib.DTLSOSSL_NO_SCRATCH)
COMPLETED = int(lib.DTLSOSSL_COMPLETED)
"From step only: the handshake completed and C queued its HandshakeCompleted event."


class ConnectionState(enum.Enum):
    """Where a connection is in its life. States only move forward."""

    NEW = "new"
    "Created; a client waits for ``connect()``, a server for the first ClientHello."
    HANDSHAKING = "handshaking"
    "Flights are being exchanged."
    ESTABLISHED = "established"
    "The handshake completed and the peer's certificate was verified; data may flow."
    CLOSED = "closed"
    "Ended cleanly (close_notify either way, or ``close()``)."
    FAILED = "failed"
    "Ended by an error; ``ConnectionTerminated.error`` says which."


# The members as module constants: reading one from the enum class goes through the enum
# machinery (~230 ns on Python 3.11, ~20 times a plain global), too slow for the per-call paths.
NEW = ConnectionState.NEW
HANDSHAKING = ConnectionState.HANDSHAKING
ESTABLISHED = ConnectionState.ESTABLISHED
CLOSED = ConnectionState.CLOSED
FAILED = ConnectionState.FAILED
ENDED = (CLOSED, FAILED)
"The states a connection ends in; its C object is gone."
STARTING = (NEW, HANDSHAKING)
"The states the handshake deadline applies in."
