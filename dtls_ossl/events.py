"""Events a :class:`~dtls_ossl.DtlsConnection` reports through ``next_event()``.

Order guarantees: :class:`HandshakeCompleted` precedes every :class:`DataReceived`;
:class:`ConnectionTerminated` is always the last event of a connection. Don't subclass these.
Each event declares its fields once, as annotations, in constructor order.
"""

from __future__ import annotations

from dtls_ossl._util import TYPE_CHECKING, Record, final

if TYPE_CHECKING:
    from dtls_ossl.exceptions import DtlsError
    from dtls_ossl.webrtc.certificate import Certificate
    from dtls_ossl.webrtc.sdp import Fingerprint
    from dtls_ossl.webrtc.srtp import SrtpKeys, SrtpProfile

__all__ = [
    "AlertReceived",
    "AlertSent",
    "ConnectionTerminated",
    "DataReceived",
    "DatagramsHeld",
    "DtlsEvent",
    "FlightRetransmitted",
    "HandshakeCompleted",
]

_ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    120: "no_application_protocol",
}


def alert_name(description: int) -> str:
    """Return the RFC 5246 §7.2 / RFC 8446 §6 name of an alert description."""
    return _ALERT_NAMES.get(description, f"alert_{description}")


class DtlsEvent:
    """Base class of every event. It has no fields; match on the concrete classes."""

    __slots__ = ()


@final
class HandshakeCompleted(Record, DtlsEvent):
    """The handshake finished and the peer's certificate passed the fingerprint check."""

    protocol_version: str
    "Negotiated version as OpenSSL names it: ``DTLSv1.2``."
    cipher: str
    "OpenSSL name of the negotiated cipher suite, e.g. ``ECDHE-ECDSA-AES128-GCM-SHA256``."
    srtp_profile: SrtpProfile | None
    "The ``use_srtp`` profile chosen by the server (RFC 5764 §4.1.1), or None if none was."
    peer_certificate: Certificate
    "The certificate the peer presented (no private key)."
    peer_fingerprint: Fingerprint | None
    "The expected fingerprint it matched; None only with the insecure no-check opt-out."
    srtp_keys: SrtpKeys | None
    "SRTP master keys and salts resolved to local/remote (RFC 5764 §4.2), if SRTP was agreed."


@final
class DataReceived(Record, DtlsEvent):
    """Application data was decrypted."""

    data: bytes
    "Plaintext of exactly one DTLS record."


class _Alert(Record, DtlsEvent):
    """The fields and name of an alert; AlertReceived and AlertSent differ only in direction."""

    level: int
    "1 = warning, 2 = fatal."
    description: int
    "Alert description code (RFC 5246 §7.2)."

    @property
    def name(self) -> str:
        """The alert's RFC name, e.g. ``bad_certificate``."""
        return alert_name(self.description)


@final
class AlertReceived(_Alert):
    """The peer sent an alert (RFC 6347 §4.1.2.7); fatal ones are followed by termination."""


@final
class AlertSent(_Alert):
    """We sent an alert: a trace of why a handshake failed, or of our close_notify."""


@final
class FlightRetransmitted(Record, DtlsEvent):
    """The retransmission timer expired and the last flight was sent again (RFC 6347 §4.2.4)."""

    count: int
    "How many retransmissions this connection has made so far."
    next_timeout: float | None
    "Seconds until the next expiry (the backoff, capped by the configuration)."


@final
class DatagramsHeld(Record, DtlsEvent):
    """The peer's flight is being held until ``set_remote_fingerprints()`` is called."""

    count: int
    "How many datagrams are held now."


@final
class ConnectionTerminated(Record, DtlsEvent):
    """The connection ended. Always the last event."""

    error: DtlsError | None
    "Why it ended; None for a clean close_notify from either side."
    by_peer: bool
    "True if the peer ended it (its close_notify or fatal alert)."
