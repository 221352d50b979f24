"""What the demo's parts share: its options, one side of the demo, and small formatters."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import TextIO

from dtls_ossl import events
from dtls_ossl._impair import Impairment, Link
from dtls_ossl.configuration import DEFAULT_SRTP_PROFILES
from dtls_ossl.connection import ConnectionState, DtlsConnection
from dtls_ossl.exceptions import DtlsError
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.sdp import Fingerprint
from dtls_ossl.webrtc.srtp import SrtpProfile

__all__ = ["DemoOptions"]

LOCALHOST = "127.0.0.1"
MESSAGE = b"hello from client"
"The application payload of the round trip; the server echoes it back."


@dataclass(frozen=True)
class DemoOptions:
    """What ``dtls-ossl demo`` was asked to do; validated by the CLI's argument types."""

    loss: float = 0.0
    "Probability that a datagram is dropped, in each direction."
    reorder: float = 0.0
    "Probability that a datagram is held back 10-30 ms, so that later ones overtake it."
    duplicate: float = 0.0
    "Probability that a datagram is delivered twice."
    seed: int | None = None
    "Seed of the impairment; None picks one (and prints it, so a run can be replayed)."
    mtu: int = 1200
    "Largest datagram, in bytes (UDP payload)."
    profiles: tuple[SrtpProfile, ...] = DEFAULT_SRTP_PROFILES
    "SRTP profiles both sides offer, most preferred first."
    key_type: str = "ecdsa-p256"
    "Key type of both generated certificates."
    initial_timeout: float = 0.1
    "First retransmission timeout in seconds (doubling up to max(1 s, this))."
    timeout: float = 10.0
    "Overall handshake deadline in seconds."
    wrong_fingerprint: bool = False
    "Give the client a wrong expected fingerprint: the handshake must fail closed."
    json: bool = False
    "Print a JSON summary instead of the human timeline."


_REORDER_DELAY = (0.01, 0.03)  # seconds a reordered datagram is held back: later ones overtake
_DUPLICATE_DELAY = (0.0, 0.02)  # seconds after the original that a duplicate is delivered


def demo_link(o: DemoOptions, seed: int, direction: str) -> Link:
    """Return the seeded impairment of one direction of the demo (``c2s`` or ``s2c``)."""
    imp = Impairment(
        loss=o.loss,
        duplicate=o.duplicate,
        reorder=o.reorder,
        delay=_REORDER_DELAY,
        duplicate_delay=_DUPLICATE_DELAY,
    )
    return Link(imp, seed, direction)


@dataclass(eq=False)
class _Peer:
    name: str
    conn: DtlsConnection
    certificate: Certificate
    expected: Fingerprint
    sock: socket.socket
    impairment: Link
    addr: tuple[str, int] = ("", 0)
    other: _Peer | None = None
    completed: events.HandshakeCompleted | None = None
    terminated: events.ConnectionTerminated | None = None
    received: list[bytes] = field(default_factory=list)
    retransmissions: int = 0
    alerts_sent: list[str] = field(default_factory=list)
    alerts_received: list[str] = field(default_factory=list)
    echo: bool = False
    "Echo every DataReceived back (the server's application)."

    def __post_init__(self) -> None:
        self.addr = self.sock.getsockname()[:2]

    @property
    def peer(self) -> _Peer:
        assert self.other is not None
        return self.other

    @property
    def ended(self) -> bool:
        return self.terminated is not None


def _hostport(addr: tuple[str, int]) -> str:
    return f"{addr[0]}:{addr[1]}"


def _short(fp: Fingerprint | str) -> str:
    """Abbreviate a fingerprint for prose: ``sha-256 AB:CD:EF:01:..:67:89``."""
    text = str(fp)
    algorithm, _, hexpart = text.partition(" ")
    pairs = hexpart.split(":")
    if len(pairs) <= 8:
        return text
    return f"{algorithm} {':'.join(pairs[:4])}:..:{':'.join(pairs[-2:])}"


def _error_name(error: DtlsError | None) -> str:
    return "clean close" if error is None else type(error).__name__


def _first_line(text: str, width: int = 90) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def conn_open(conn: DtlsConnection) -> bool:
    """Whether ``conn`` can send application data."""
    return conn.state is ConnectionState.ESTABLISHED


def _arrow(out: TextIO) -> str:
    """``→`` if the output stream can encode it, else ``->``."""
    try:
        "→".encode(getattr(out, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "->"
    return "→"
