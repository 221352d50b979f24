"""The data of a conformance run: peers, cells, checks and results.

A *cell* is one handshake between dtls_ossl and one foreign DTLS stack: a peer, our role, an
SRTP profile and our certificate type; or the wrong-fingerprint cell of a peer and role, which
must fail closed. Each cell runs a list of *checks*; a cell passes when none of them failed.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from dtls_ossl._roles import Role
from dtls_ossl.webrtc.srtp import SrtpProfile

__all__ = [
    "Availability",
    "CellFailure",
    "CellKind",
    "CellResult",
    "CellSpec",
    "Check",
    "CheckStatus",
    "Deadline",
    "Negotiated",
    "Status",
]


class Status(enum.Enum):
    """The outcome of a cell."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class CheckStatus(enum.Enum):
    """The outcome of one check of a cell."""

    PASS = "pass"
    FAIL = "fail"
    NOT_APPLICABLE = "n/a"
    "The peer cannot show this (e.g. gnutls-serv prints no exported keying material)."


class CellKind(enum.Enum):
    """What a cell verifies."""

    HANDSHAKE = "handshake"
    "A handshake that must complete, with every parameter compared."
    WRONG_FINGERPRINT = "wrong-fingerprint"
    "A handshake with a wrong expected fingerprint: must fail closed on our side."
    LOSSY = "lossy"
    "A handshake through a seeded lossy, reordering path on our side of the socket."
    DTLS13_HELLO = "1.3-clienthello"
    "Our server facing a client that offers DTLS 1.3 (and may fragment its ClientHello)."
    DROP_EACH = "drop-each"
    "Each datagram the target sends during the handshake dropped in turn: it must recover."
    RETRANSMIT_SCHEDULE = "retransmit-schedule"
    "We go silent mid-handshake and time the target's retransmissions of its flight."
    HOSTILE_RECORDS = "hostile-records"
    "Garbage and forged records before and during the handshake: the target must still complete."
    DATA_AND_AUDIO = "data+audio"
    "aiortc on dtls_ossl against a browser: a data channel and audio, both ways."
    SMALL_MTU = "small-mtu"
    "Our flights in datagrams of at most 300 bytes: the target must reassemble the fragments."
    DUPLICATED_REORDERED = "duplicated-reordered"
    "Each of our flights sent in reverse order, every datagram twice: the target must complete."
    WRONG_CERTIFICATE = "wrong-certificate"
    "A target told another certificate's fingerprint than ours: it must refuse ours, with an alert."
    CLOSE_NOTIFY = "close-notify"
    "close_notify both ways after the handshake: answered, and no data after it."
    BROWSER_HELLO = "browser-hello"
    "Browsers' 1.4 KB DTLS 1.3-capable ClientHellos in two fragments: a DTLS 1.2 answer."
    DTLS10_REFUSED = "dtls10-refused"
    "A ClientHello offering only DTLS 1.0: the server target must refuse it."


@dataclass(frozen=True)
class Availability:
    """Whether a peer can run here, and if not, why and how to install it."""

    available: bool
    version: str = ""
    "The peer's version as it reports it (empty if unknown)."
    reason: str = ""
    "Why the peer is skipped (when not available)."
    install: str = ""
    "The exact command that installs the peer (or what wiring it needs)."


@dataclass(frozen=True)
class CellSpec:
    """One cell of the matrix."""

    peer: str
    role: Role
    "Our role (the peer takes the other)."
    kind: CellKind
    profile: SrtpProfile | None
    "The SRTP profile both sides offer."
    key_type: str
    "Our certificate's key type (the peer's is the same where the peer lets us choose it)."

    @property
    def id(self) -> str:
        """A stable identifier, ``peer/role/profile-or-kind/key_type``."""
        return f"{self.peer}/{self.role.value}/{self.column}/{self.key_type}"

    @property
    def column(self) -> str:
        """The profile name, or the kind for a cell that is not a plain handshake."""
        if self.kind is CellKind.HANDSHAKE and self.profile is not None:
            return self.profile.openssl_name
        return self.kind.value


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: CheckStatus
    detail: str = ""


@dataclass
class Negotiated:
    """What one side reports about the session (None where it cannot tell)."""

    version: str | None = None
    cipher: str | None = None
    srtp_profile: str | None = None
    keying_material: str | None = None
    "Hex of the exported EXTRACTOR-dtls_srtp material."
    extra: dict[str, str] = field(default_factory=dict)
    "Anything else the peer reports (e.g. a browser's getStats() fields)."

    def to_json(self) -> dict[str, object]:
        """Return the fields as a JSON object; ``extra`` is merged in."""
        out: dict[str, object] = {
            "version": self.version,
            "cipher": self.cipher,
            "srtp_profile": self.srtp_profile,
            "keying_material": self.keying_material,
        }
        out.update(self.extra)
        return out


@dataclass
class CellResult:
    """The result of one cell."""

    spec: CellSpec
    status: Status
    checks: list[Check] = field(default_factory=list)
    duration: float = 0.0
    "Wall time of the whole cell in seconds (peer start to stop)."
    handshake_time: float | None = None
    "Seconds from our first datagram (client) or first ClientHello (server) to completion."
    reason: str = ""
    "Why it failed or was skipped, in one line."
    install: str = ""
    "For a skipped cell: the command that installs the peer."
    ours: Negotiated = field(default_factory=Negotiated)
    theirs: Negotiated = field(default_factory=Negotiated)
    log: str = ""
    "The peer's output (truncated), for failures."


class CellFailure(Exception):
    """A cell cannot go on (timeout, peer crashed, unexpected outcome); the message says why."""


class Deadline:
    """The time budget of one cell, on ``time.monotonic()``."""

    def __init__(self, seconds: float) -> None:
        """Start a budget of ``seconds`` from now."""
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (0 when expired)."""
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        """Tell whether the budget is used up."""
        return time.monotonic() >= self.at

    def check(self, what: str) -> None:
        """Raise :class:`CellFailure` if the budget is used up, naming what was awaited."""
        if self.expired():
            raise CellFailure(f"cell timeout ({self.seconds:g} s) while waiting for {what}")
