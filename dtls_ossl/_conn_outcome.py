"""How a handshake ends: the keying material exporter, or the error a failure is blamed on.

The completion record, :class:`~dtls_ossl.events.HandshakeCompleted`, is built in C
(``complete`` in _cffi_src/step.c). :func:`classify_failure` turns a fatal status, the
callbacks' fingerprint verdict, the alerts seen and OpenSSL's error queue into the one
:class:`~dtls_ossl.DtlsError` the connection ends with (exceptions.py's blame rules: a peer's
alert or a failed check is the peer's, OpenSSL's read timeout is recognised by its reason code,
not its text).
"""

from __future__ import annotations

from dtls_ossl import events
from dtls_ossl._binding import ffi, lib, openssl_assert
from dtls_ossl._util import TYPE_CHECKING
from dtls_ossl.exceptions import (
    CertificateVerificationError,
    DtlsError,
    FingerprintMismatchError,
    HandshakeError,
    HandshakeTimeoutError,
    OpenSSLErrorInfo,
    ProtocolError,
)

if TYPE_CHECKING:
    from typing import Any


__all__ = ["classify_failure", "export_keying_material"]

_X509_V_ERR_CERT_REJECTED = 28
# ERR_LIB_SSL and SSL_R_READ_TIMEOUT_EXPIRED (openssl/err.h, sslerr.h): DTLS gave up retrying.
_ERR_LIB_SSL = 20
_SSL_R_READ_TIMEOUT_EXPIRED = 312


def export_keying_material(
    ssl: Any, label: str | bytes, length: int, context: bytes | None
) -> bytes:
    """Derive ``length`` bytes with the RFC 5705 exporter of an established ``SSL``."""
    lab = label.encode("ascii") if isinstance(label, str) else bytes(label)
    out = ffi.new("unsigned char[]", length)
    if context is None:
        ok = lib.SSL_export_keying_material(ssl, out, length, lab, len(lab), ffi.NULL, 0, 0)
    else:
        ctxb = bytes(context)
        ok = lib.SSL_export_keying_material(ssl, out, length, lab, len(lab), ctxb, len(ctxb), 1)
    openssl_assert(ok == 1, "SSL_export_keying_material")
    material: bytes = ffi.buffer(out, length)[:]
    return material


def classify_failure(
    errors: tuple[OpenSSLErrorInfo, ...],
    *,
    mismatch: tuple[tuple[str, ...], tuple[str, ...]] | None,
    n_expected: int,
    sent_alert: int | None,
    received_alert: int | None,
    established: bool,
    ssl: Any,
    retransmissions: int,
) -> tuple[DtlsError, bool]:
    """Return the error a fatal status ends the connection with, and whether the peer did it.

    ``mismatch`` is the verify callback's (expected, actual) fingerprint texts, if it refused
    the certificate; ``n_expected`` how many fingerprints were given in all.
    """
    by_peer = False
    err: DtlsError
    reasons = "; ".join(e.reason for e in errors) or "no detail from OpenSSL"
    if mismatch is not None:
        expected, actual = mismatch
        if not expected:
            err = CertificateVerificationError(
                "no remote fingerprints to check the peer certificate against",
                alert=sent_alert,
            )
        else:
            ignored = n_expected - len(expected)
            rule = (
                f" ({ignored} weaker-hash fingerprint{'s' if ignored > 1 else ''} ignored: "
                "RFC 8122 §5 checks only "
                "the strongest hash given)"
                if ignored
                else ""
            )
            err = FingerprintMismatchError(
                "peer certificate matches none of the expected fingerprints: "
                f"got {', '.join(actual)}; expected {', '.join(expected)}{rule}",
                expected=expected,
                actual=actual,
                alert=sent_alert,
            )
    elif received_alert is not None:
        by_peer = True
        name = events.alert_name(received_alert)
        cls = ProtocolError if established else HandshakeError
        err = cls(
            f"peer sent fatal alert {name} ({received_alert})",
            alert=received_alert,
            errors=errors,
        )
    elif not established and (code := int(lib.SSL_get_verify_result(ssl))) not in (
        0,
        _X509_V_ERR_CERT_REJECTED,
    ):
        message = ffi.string(lib.X509_verify_cert_error_string(code)).decode("ascii")
        err = CertificateVerificationError(
            f"peer certificate rejected: {message}",
            verify_code=code,
            verify_message=message,
            alert=sent_alert,
            errors=errors,
        )
    elif any(
        e.library_code == _ERR_LIB_SSL and e.reason_code == _SSL_R_READ_TIMEOUT_EXPIRED
        for e in errors
    ):
        err = HandshakeTimeoutError(
            f"no answer from the peer after {retransmissions} retransmissions",
            errors=errors,
        )
    else:
        cls = ProtocolError if established else HandshakeError
        err = cls(reasons, alert=sent_alert, errors=errors)
    return err, by_peer
