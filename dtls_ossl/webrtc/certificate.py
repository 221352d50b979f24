"""A DTLS certificate with its optional private key (W3C: ``RTCCertificate``).

WebRTC endpoints authenticate with self-signed certificates whose fingerprints travel in SDP
(RFC 8122 §5, RFC 8827 §6.5). :meth:`Certificate.generate` makes one the way browsers do:
ECDSA P-256 by default, a random common name, ``notBefore`` backdated one day to absorb clock
skew, 30 days of validity.

Importing this module is cheap: pyca/cryptography is imported only inside the methods that
parse, generate or inspect certificates. A peer's certificate wrapped with
:meth:`Certificate.from_der` and used only for :meth:`Certificate.fingerprint` never imports it.
"""

from __future__ import annotations

from dtls_ossl._util import TYPE_CHECKING
from dtls_ossl.exceptions import ConfigurationError, InvalidStateError
from dtls_ossl.webrtc.sdp import Fingerprint

# base64, os, secrets and datetime are imported inside the functions that need them: together
# they cost ~2 ms of ``import dtls_ossl`` on a clean interpreter.
if TYPE_CHECKING:
    import os
    from datetime import datetime

    import cryptography.x509
    from cryptography.hazmat.primitives.asymmetric.types import (
        CertificateIssuerPrivateKeyTypes,
        PrivateKeyTypes,
    )

__all__ = ["KEY_TYPES", "Certificate"]

KEY_TYPES: tuple[str, ...] = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-4096")
"The key types :meth:`Certificate.generate` accepts; ``ecdsa-p256`` is what browsers use."

_CLOCK_SKEW_DAYS = 1


def _one_line(exc: BaseException) -> str:
    """Return the first line of an exception message, bounded, for a one-line error."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _as_bytes(data: bytes | str) -> bytes:
    """Accept PEM as ``str`` or ``bytes``."""
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _pem(der: bytes, label: str) -> bytes:
    """Wrap DER in PEM armour with 64-character base64 lines (RFC 7468 §2)."""
    import base64

    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join(
        [f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode(), b""]
    )


def _generate_key(key_type: str) -> CertificateIssuerPrivateKeyTypes:
    """Generate a fresh private key of one of :data:`KEY_TYPES`."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa-4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    raise ConfigurationError(
        f"unsupported key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}"
    )


def _private_key_der(key: PrivateKeyTypes) -> bytes:
    """Serialise a private key as unencrypted PKCS#8 DER."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _read_file(path: str | os.PathLike[str], what: str) -> bytes:
    """Read a whole file, turning I/O errors into :class:`ConfigurationError`."""
    import os

    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        reason = exc.strerror or _one_line(exc)
        raise ConfigurationError(f"cannot read {what} file {os.fspath(path)!r}: {reason}") from exc


class Certificate:
    """An X.509 certificate in DER form, with its private key when this endpoint owns it.

    W3C: ``RTCCertificate``. Build one with :meth:`generate`, :meth:`from_pem`, :meth:`load`
    (all with a key) or :meth:`from_der` (a peer's certificate, no key). Two instances are
    equal when their certificate DER is equal, whatever their keys. ``repr()`` never shows the
    key. Immutable; the parsed form and fingerprints are computed once and cached.
    """

    __slots__ = ("_der", "_fingerprints", "_key_der", "_x509")

    def __init__(self, der: bytes, private_key_der: bytes | None = None) -> None:
        """Wrap DER bytes as they are, without parsing or checking them.

        Prefer the factory methods, which check that the key belongs to the certificate.

        :param der: the certificate in DER form.
        :param private_key_der: its private key as unencrypted PKCS#8 DER, if owned.
        """
        self._der = bytes(der)
        self._key_der = None if private_key_der is None else bytes(private_key_der)
        self._x509: cryptography.x509.Certificate | None = None
        self._fingerprints: dict[str, Fingerprint] = {}

    @classmethod
    def generate(
        cls,
        key_type: str = "ecdsa-p256",
        *,
        common_name: str | None = None,
        validity_days: int = 30,
    ) -> Certificate:
        """Generate a key and a self-signed certificate for it, as browsers do for WebRTC.

        W3C: ``RTCPeerConnection.generateCertificate()``. The certificate is X.509 v3, signed
        with SHA-256, has a random 128-bit serial, the same subject and issuer
        (``CN=<common_name>``), ``notBefore`` one day in the past (clock skew) and ``notAfter``
        ``validity_days`` from now.

        :param key_type: one of :data:`KEY_TYPES`.
        :param common_name: subject CN; by default 16 random hex characters.
        :param validity_days: days from now until the certificate expires (at least 1).
        :raises ConfigurationError: for an unknown key type, a bad validity or common name.
        """
        import secrets
        from datetime import datetime, timedelta, timezone

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        if key_type not in KEY_TYPES:
            raise ConfigurationError(
                f"unsupported key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}"
            )
        if isinstance(validity_days, bool) or not isinstance(validity_days, int):
            raise ConfigurationError(f"validity_days must be an int, got {validity_days!r}")
        if validity_days < 1:
            raise ConfigurationError(f"validity_days must be at least 1, got {validity_days}")
        cn = secrets.token_hex(8) if common_name is None else common_name
        try:
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"invalid common name {cn!r}: {_one_line(exc)}") from exc
        key = _generate_key(key_type)
        now = datetime.now(timezone.utc)
        try:
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=_CLOCK_SKEW_DAYS))
                .not_valid_after(now + timedelta(days=validity_days))
                .sign(key, hashes.SHA256())
            )
        except OverflowError as exc:  # validity_days so large the date overflows
            raise ConfigurationError(f"validity_days {validity_days} is too large") from exc
        from cryptography.hazmat.primitives import serialization

        result = cls(cert.public_bytes(serialization.Encoding.DER), _private_key_der(key))
        result._x509 = cert
        return result

    @classmethod
    def from_pem(
        cls,
        cert_pem: bytes | str,
        key_pem: bytes | str | None = None,
        *,
        password: bytes | None = None,
    ) -> Certificate:
        """Load a PEM certificate and, optionally, its PEM private key.

        Only the first certificate of ``cert_pem`` is used. The key may be PKCS#8, PKCS#1 or
        SEC1, encrypted if ``password`` is given; it is stored as unencrypted PKCS#8.

        :raises ConfigurationError: if the certificate or key cannot be read, or the key does
            not belong to the certificate.
        """
        return cls._from_pem(cert_pem, key_pem, password, "certificate PEM", "private key PEM")

    @classmethod
    def _from_pem(
        cls,
        cert_pem: bytes | str,
        key_pem: bytes | str | None,
        password: bytes | None,
        cert_what: str,
        key_what: str,
    ) -> Certificate:
        """Implement :meth:`from_pem`; ``*_what`` name the inputs in error messages."""
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        try:
            cert = x509.load_pem_x509_certificate(_as_bytes(cert_pem))
        except (TypeError, ValueError, UnsupportedAlgorithm) as exc:
            raise ConfigurationError(f"unreadable {cert_what}: {_one_line(exc)}") from exc
        key_der = None
        if key_pem is not None:
            try:
                key = serialization.load_pem_private_key(_as_bytes(key_pem), password)
            except (TypeError, ValueError, UnsupportedAlgorithm) as exc:
                raise ConfigurationError(f"unreadable {key_what}: {_one_line(exc)}") from exc
            spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
                raise ConfigurationError(
                    f"{key_what} does not belong to the certificate (public keys differ)"
                )
            key_der = _private_key_der(key)
        result = cls(cert.public_bytes(serialization.Encoding.DER), key_der)
        result._x509 = cert
        return result

    @classmethod
    def from_der(cls, der: bytes) -> Certificate:
        """Wrap a DER certificate without a key, e.g. the peer's from the handshake.

        Nothing is parsed here (pyca/cryptography is not imported); a malformed certificate is
        only reported when :attr:`x509` or a property derived from it is used.

        :raises ConfigurationError: if ``der`` is empty.
        """
        if not der:
            raise ConfigurationError("certificate DER is empty")
        return cls(der)

    @classmethod
    def load(
        cls,
        cert_path: str | os.PathLike[str],
        key_path: str | os.PathLike[str] | None = None,
        *,
        password: bytes | None = None,
    ) -> Certificate:
        """Read a PEM certificate file and, optionally, a PEM private key file.

        :raises ConfigurationError: naming the file that cannot be read or parsed, or if the
            key does not belong to the certificate.
        """
        import os

        cert_pem = _read_file(cert_path, "certificate")
        key_pem = None if key_path is None else _read_file(key_path, "private key")
        key_what = "private key PEM" if key_path is None else f"private key file {key_path!r}"
        return cls._from_pem(
            cert_pem, key_pem, password, f"certificate file {os.fspath(cert_path)!r}", key_what
        )

    @property
    def der(self) -> bytes:
        """The certificate in DER form."""
        return self._der

    @property
    def private_key_der(self) -> bytes | None:
        """The private key as unencrypted PKCS#8 DER, or ``None`` for a peer's certificate."""
        return self._key_der

    @property
    def has_private_key(self) -> bool:
        """Whether this certificate carries its private key."""
        return self._key_der is not None

    @property
    def x509(self) -> cryptography.x509.Certificate:
        """The parsed certificate (pyca/cryptography), parsed on first use and cached.

        :raises ConfigurationError: if the DER is not a valid certificate.
        """
        if self._x509 is None:
            from cryptography import x509

            try:
                self._x509 = x509.load_der_x509_certificate(self._der)
            except ValueError as exc:
                raise ConfigurationError(f"malformed certificate DER: {_one_line(exc)}") from exc
        return self._x509

    @property
    def key_type(self) -> str:
        """The public key's type, e.g. ``ecdsa-p256``, ``ecdsa-p384``, ``rsa-2048``, ``ed25519``.

        Derived from the certificate, so it works without the private key. Other EC curves
        give ``ecdsa-<curve name>``, RSA any size ``rsa-<bits>``; anything else ``unknown``.
        """
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

        key = self.x509.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey):
            curves = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}
            return f"ecdsa-{curves.get(key.curve.name, key.curve.name)}"
        if isinstance(key, rsa.RSAPublicKey):
            return f"rsa-{key.key_size}"
        if isinstance(key, ed25519.Ed25519PublicKey):
            return "ed25519"
        if isinstance(key, ed448.Ed448PublicKey):
            return "ed448"
        return "unknown"

    @property
    def common_name(self) -> str:
        """The subject's first common name (CN), or ``""`` if it has none."""
        from cryptography.x509.oid import NameOID

        attributes = self.x509.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not attributes:
            return ""
        value = attributes[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")

    @property
    def not_valid_before(self) -> datetime:
        """Start of the validity period, as an aware UTC datetime."""
        return self.x509.not_valid_before_utc

    @property
    def not_valid_after(self) -> datetime:
        """End of the validity period, as an aware UTC datetime."""
        return self.x509.not_valid_after_utc

    def fingerprint(self, algorithm: str = "sha-256") -> Fingerprint:
        """Return the certificate's SDP fingerprint (RFC 8122 §5), cached per algorithm.

        W3C: ``RTCCertificate.getFingerprints()``. Hashes the DER directly; does not need
        pyca/cryptography.

        :param algorithm: an SDP hash name such as ``sha-256`` (case-insensitive).
        :raises ConfigurationError: if the algorithm is unknown.
        """
        cached = self._fingerprints.get(algorithm)
        if cached is None:
            cached = Fingerprint.from_der(self._der, algorithm)
            self._fingerprints[algorithm] = cached
        return cached

    def cert_pem(self) -> bytes:
        """Return the certificate in PEM form."""
        return _pem(self._der, "CERTIFICATE")

    def to_pem(self) -> tuple[bytes, bytes]:
        """Return ``(certificate PEM, private key PEM)``; the key is unencrypted PKCS#8.

        :raises InvalidStateError: if this certificate has no private key.
        """
        if self._key_der is None:
            raise InvalidStateError("this certificate has no private key (peer certificate?)")
        return self.cert_pem(), _pem(self._key_der, "PRIVATE KEY")

    def __eq__(self, other: object) -> bool:
        """Compare certificate DER; keys are not compared."""
        if not isinstance(other, Certificate):
            return NotImplemented
        return self._der == other._der

    def __hash__(self) -> int:
        """Hash the certificate DER, consistently with ``==``."""
        return hash(self._der)

    def __reduce__(self) -> tuple[type[Certificate], tuple[bytes, bytes | None]]:
        """Pickle as the DER of the certificate and key (caches are rebuilt on demand)."""
        return (Certificate, (self._der, self._key_der))

    def __repr__(self) -> str:
        """Show the common name and the sha-256 fingerprint; never the key."""
        try:
            cn = repr(self.common_name)
        except ConfigurationError:
            cn = "<malformed>"
        return (
            f"<Certificate CN={cn} {self.fingerprint()} "
            f"private_key={'yes' if self.has_private_key else 'no'}>"
        )
