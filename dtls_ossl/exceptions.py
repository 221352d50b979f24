"""The dtls_ossl error hierarchy.

Who is to blame decides the class: :class:`ConfigurationError` and :class:`InvalidStateError`
are the caller's mistakes and are raised at once; :class:`HandshakeError` and its subclasses
describe a peer or negotiation failure and normally arrive inside a
:class:`~dtls_ossl.events.ConnectionTerminated` event rather than being raised;
:class:`OpenSSLError` means OpenSSL itself failed unexpectedly.

A callback the user gave (a key-log writer, a handler) that raises is the user's error: its
exception propagates unchanged from the call that ran it and is never wrapped into a
:class:`HandshakeError`. Only dtls_ossl's own errors derive from :class:`DtlsError`; the
connection it ended records :class:`CallbackError` (the caller is to blame) with the user's
exception as ``__cause__``.
"""

from __future__ import annotations

from dtls_ossl._util import Record

__all__ = [
    "CallbackError",
    "CertificateVerificationError",
    "ConfigurationError",
    "ConnectionClosedError",
    "DtlsError",
    "FingerprintMismatchError",
    "HandshakeError",
    "HandshakeTimeoutError",
    "IdleTimeoutError",
    "InvalidStateError",
    "OpenSSLError",
    "OpenSSLErrorInfo",
    "PayloadSizeError",
    "ProtocolError",
]


class OpenSSLErrorInfo(Record):
    """One entry of OpenSSL's per-thread error queue."""

    code: int
    "The packed error code (``ERR_get_error``)."
    library: str
    "The library that raised it, e.g. ``SSL routines``."
    reason: str
    "OpenSSL's reason string, e.g. ``certificate verify failed``."

    def __str__(self) -> str:
        """Format as ``library: reason``."""
        return f"{self.library}: {self.reason}"

    # OpenSSL 3 packs an error as library << 23 | reason, bit 31 marking a system errno
    # (ERR_GET_LIB / ERR_GET_REASON in openssl/err.h); dtls_ossl needs OpenSSL >= 3.0.
    @property
    def library_code(self) -> int:
        """OpenSSL's library number (``ERR_GET_LIB``), e.g. 20 for ``ERR_LIB_SSL``; 2 for errno."""
        if self.code & 0x80000000:
            return 2  # ERR_LIB_SYS
        return (self.code >> 23) & 0xFF

    @property
    def reason_code(self) -> int:
        """OpenSSL's reason number (``ERR_GET_REASON``), e.g. 312 for a read timeout."""
        if self.code & 0x80000000:
            return self.code & 0x7FFFFFFF
        return self.code & 0x7FFFFF


class DtlsError(Exception):
    """Base of every exception dtls_ossl raises."""


class ConfigurationError(DtlsError, ValueError):
    """A bad value was given (certificate, key, profile, MTU, cipher string...).

    The caller is to blame; fix the argument named in the message.
    """


class InvalidStateError(DtlsError):
    """The API was used in a state that does not allow it.

    Examples: ``connect()`` on a server, ``send()`` before the handshake completed, any I/O after
    the connection terminated. The caller is to blame.
    """


class OpenSSLError(DtlsError):
    """An OpenSSL call failed unexpectedly; ``errors`` holds the drained error queue."""

    def __init__(self, message: str, errors: tuple[OpenSSLErrorInfo, ...] = ()) -> None:
        """Build the error; the queue entries are appended to the message."""
        detail = "; ".join(str(e) for e in errors)
        super().__init__(f"{message}: {detail}" if detail else message)
        self.errors = errors


class ProtocolError(DtlsError):
    """The connection failed: a fatal alert, a negotiation failure or a protocol violation.

    ``alert`` is the alert description (an int from RFC 5246 §7.2) sent or received, if any;
    ``errors`` is OpenSSL's error queue at the time of failure.
    """

    def __init__(
        self,
        message: str,
        *,
        alert: int | None = None,
        errors: tuple[OpenSSLErrorInfo, ...] = (),
    ) -> None:
        """Build the error."""
        super().__init__(message)
        self.alert = alert
        self.errors = errors


class HandshakeError(ProtocolError):
    """The handshake failed; see :class:`ProtocolError` for the attributes."""


class CallbackError(DtlsError):
    """A callback the user gave raised, and the connection that ran it failed.

    The caller is to blame, not the peer: the user's exception itself was re-raised unchanged
    from the call that ran the callback, and is this error's ``__cause__``. It is what
    ``ConnectionTerminated.error`` records for that connection; never a :class:`HandshakeError`.
    """


class PayloadSizeError(DtlsError, ValueError):
    """``send()`` was given an empty payload or one that does not fit one datagram.

    The limit is :attr:`DtlsConnection.max_payload_size` (the MTU minus record overhead).
    """


class HandshakeTimeoutError(HandshakeError):
    """The handshake did not finish within the configured deadline or retransmission budget."""


class CertificateVerificationError(HandshakeError):
    """The peer's certificate was rejected (malformed, bad signature, or not the expected one)."""

    def __init__(
        self,
        message: str,
        *,
        verify_code: int = 0,
        verify_message: str = "",
        alert: int | None = None,
        errors: tuple[OpenSSLErrorInfo, ...] = (),
    ) -> None:
        """Build the error; ``verify_code``/``verify_message`` use OpenSSL's X509_V_* values."""
        super().__init__(message, alert=alert, errors=errors)
        self.verify_code = verify_code
        self.verify_message = verify_message


class FingerprintMismatchError(CertificateVerificationError):
    """The peer's certificate matched none of the expected SDP fingerprints (RFC 8122 §5).

    ``expected`` lists the fingerprints that were allowed; ``actual`` the peer certificate's
    fingerprints computed with the same algorithms, as ``"sha-256 AB:CD:..."`` strings.
    """

    def __init__(
        self,
        message: str,
        *,
        expected: tuple[str, ...] = (),
        actual: tuple[str, ...] = (),
        alert: int | None = None,
    ) -> None:
        """Build the error."""
        super().__init__(message, alert=alert)
        self.expected = expected
        self.actual = actual


class IdleTimeoutError(DtlsError):
    """An established peer sent nothing for ``idle_timeout`` seconds and was closed (asyncio).

    Attached as ``__cause__`` of the :class:`ConnectionClosedError` that ``recv`` raises after.
    """


class ConnectionClosedError(DtlsError):
    """I/O was attempted on a connection that has terminated (asyncio layer).

    The error that terminated the connection, if any, is attached as ``__cause__``.
    """
