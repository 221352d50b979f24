"""SDP attributes that DTLS depends on: ``a=fingerprint`` and ``a=setup``.

:class:`Fingerprint` implements the certificate fingerprint of RFC 8122 §5 (which obsoletes
RFC 4572): a hash of the certificate's DER encoding, written in SDP as the hash function's
textual name followed by upper-case hex bytes separated by colons, e.g.
``a=fingerprint:sha-256 12:DF:...:AD``.

:func:`setup_role` turns the ``a=setup`` values of both sides (RFC 4145 §4, as constrained for
DTLS by RFC 5763 §5 and RFC 8842 §5.2-§5.3) into the DTLS :class:`~dtls_ossl._roles.Role` this
endpoint must play.

Pure Python: nothing here needs OpenSSL or pyca/cryptography.
"""

from __future__ import annotations

import enum

from dtls_ossl._roles import Role
from dtls_ossl._util import TYPE_CHECKING, Record
from dtls_ossl.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = [
    "FINGERPRINT_ALGORITHMS",
    "FINGERPRINT_PREFERENCE",
    "Fingerprint",
    "SetupRole",
    "parse_fingerprints",
    "select_fingerprints",
    "setup_role",
]

FINGERPRINT_ALGORITHMS: dict[str, tuple[str, int]] = {
    "sha-1": ("sha1", 20),
    "sha-224": ("sha224", 28),
    "sha-256": ("sha256", 32),
    "sha-384": ("sha384", 48),
    "sha-512": ("sha512", 64),
}
"""Supported fingerprint hash functions: SDP name (RFC 8122 §5) → (hashlib name, digest size).

``md5`` and ``md2`` are valid RFC 8122 names but MUST NOT be used, so they are rejected.
"""

FINGERPRINT_PREFERENCE: tuple[str, ...] = ("sha-512", "sha-384", "sha-256", "sha-224", "sha-1")
"""The supported hash functions, most preferred (strongest) first: the order in which
:func:`select_fingerprints` picks the set of fingerprints a certificate must match."""

_setattr = object.__setattr__
_FORBIDDEN_ALGORITHMS = frozenset({"md5", "md2"})
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_MAX_ECHO = 40
# OpenSSL's "x509 -fingerprint" output: "SHA256 Fingerprint=AB:CD:..." (3.x: lower-case name).
_OPENSSL_MARKER = " fingerprint="
# Hyphen-less spellings users paste (sha256, SHA1): "sha" + digits -> "sha-" + digits.
_ALIASES = {name.replace("-", ""): name for name in FINGERPRINT_ALGORITHMS}


def _echo(text: str) -> str:
    """Quote a fragment of user input for an error message, on one line and bounded."""
    if len(text) > _MAX_ECHO:
        return repr(text[:_MAX_ECHO]) + "..."
    return repr(text)


def _strip_prefix(text: str, prefixes: tuple[str, ...]) -> str:
    """Remove the first matching prefix (compared case-insensitively) from ``text``."""
    for prefix in prefixes:
        if text[: len(prefix)].lower() == prefix:
            return text[len(prefix) :]
    return text


def _is_hex_pairs(text: str) -> bool:
    """Tell whether ``text`` is colon-separated two-digit hex pairs (``AB:cd:01``)."""
    return all(
        len(pair) == 2 and pair[0] in _HEX_DIGITS and pair[1] in _HEX_DIGITS
        for pair in text.split(":")
    )


_hashes: dict[str, Callable[[bytes], Any]] = {}
"hashlib constructors by name (``sha256``), filled on first use."
_SDP_NAMES = {hashlib_name: name for name, (hashlib_name, _) in FINGERPRINT_ALGORITHMS.items()}


def digest(hashlib_name: str, der: bytes) -> bytes:
    """Hash a certificate's DER with a hashlib algorithm: the one fingerprint hasher."""
    new = _hashes.get(hashlib_name)
    if new is None:
        import hashlib  # lazily: hashlib and hmac cost ~3 ms of import time

        new = _hashes[hashlib_name] = getattr(hashlib, hashlib_name)
    value: bytes = new(der).digest()
    return value


def format_fingerprint(algorithm: str, value: bytes) -> str:
    """Format an SDP fingerprint value, ``sha-256 AB:CD:...``: the one formatter.

    ``algorithm`` is the SDP name, or the hashlib name (``sha256``) the callbacks hold.
    """
    return f"{_SDP_NAMES.get(algorithm, algorithm)} {value.hex(':').upper()}"


def _normalise_algorithm(algorithm: str) -> str:
    """Return the lower-case SDP hash name, or raise :class:`ConfigurationError`."""
    name = algorithm.strip().lower()
    if name in FINGERPRINT_ALGORITHMS:
        return name
    alias = _ALIASES.get(name)
    if alias is not None:
        return alias
    if name in _FORBIDDEN_ALGORITHMS:
        raise ConfigurationError(
            f"fingerprint algorithm {name!r} must not be used (RFC 8122 §5); use sha-256"
        )
    raise ConfigurationError(
        f"unknown fingerprint algorithm {_echo(algorithm)}; "
        f"expected one of {', '.join(FINGERPRINT_ALGORITHMS)}"
    )


class Fingerprint(Record):
    """A certificate fingerprint as carried in SDP ``a=fingerprint`` (RFC 8122 §5).

    W3C: ``RTCDtlsFingerprint``. Build one with :meth:`parse` (from SDP) or :meth:`from_der`
    (from a certificate); ``str()`` gives the SDP value. Instances are immutable and hashable;
    equality compares the normalised algorithm and the raw digest, so the case of the hex
    digits in the original text does not matter.

    :raises ConfigurationError: from the constructor if the algorithm is unknown or the digest
        length does not match it.
    """

    algorithm: str
    "The SDP hash function name, lower-case, e.g. ``sha-256`` (a key of FINGERPRINT_ALGORITHMS)."
    value: bytes
    "The raw digest of the certificate's DER encoding."

    def _validate(self) -> None:
        """Normalise the algorithm name and check the digest length."""
        algorithm, value = self.algorithm, self.value
        if not isinstance(algorithm, str):
            raise TypeError(f"algorithm must be str, not {type(algorithm).__name__}")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        algorithm = _normalise_algorithm(algorithm)
        value = bytes(value)
        expected = FINGERPRINT_ALGORITHMS[algorithm][1]
        if len(value) != expected:
            raise ConfigurationError(
                f"{algorithm} fingerprint must be {expected} bytes, got {len(value)}"
            )
        _setattr(self, "algorithm", algorithm)
        _setattr(self, "value", value)

    @classmethod
    def parse(cls, text: str) -> Fingerprint:
        """Parse an SDP fingerprint such as ``"sha-256 AB:CD:..."``.

        A leading ``a=fingerprint:`` or ``fingerprint:`` is accepted, as is surrounding
        whitespace. The algorithm name and the hex digits are case-insensitive, and the name
        may omit its hyphen (``sha256``, ``SHA-256`` and ``SHA256`` all mean ``sha-256``).
        OpenSSL's ``openssl x509 -fingerprint -sha256`` output, ``SHA256 Fingerprint=AB:...``,
        is accepted as is. The digest must be colon-separated two-digit hex pairs, exactly as
        many as the algorithm produces.

        :param text: the attribute value, with or without its ``a=fingerprint:`` prefix.
        :returns: the parsed fingerprint.
        :raises ConfigurationError: on an unknown or forbidden algorithm, malformed hex, or a
            digest of the wrong length. Never raises anything else for a ``str`` argument.
        """
        body = _strip_prefix(text.strip(), ("a=fingerprint:", "fingerprint:"))
        marker = body.lower().find(_OPENSSL_MARKER)
        if marker > 0:
            body = f"{body[:marker]} {body[marker + len(_OPENSSL_MARKER) :]}"
        parts = body.split()
        if len(parts) != 2:
            raise ConfigurationError(
                f"fingerprint must be '<algorithm> <hex pairs>', got {_echo(text)}"
            )
        algorithm_text, hex_text = parts
        if not algorithm_text.isascii():
            raise ConfigurationError(f"unknown fingerprint algorithm {_echo(algorithm_text)}")
        algorithm = _normalise_algorithm(algorithm_text)
        if not hex_text.isascii() or not _is_hex_pairs(hex_text):
            raise ConfigurationError(
                f"fingerprint digest must be colon-separated hex pairs, got {_echo(hex_text)}"
            )
        return cls(algorithm, bytes.fromhex(hex_text.replace(":", "")))

    @classmethod
    def from_der(cls, der: bytes, algorithm: str = "sha-256") -> Fingerprint:
        """Compute the fingerprint of a DER-encoded certificate.

        :param der: the certificate in DER form (RFC 8122 §5 hashes exactly these bytes).
        :param algorithm: an SDP hash function name, case-insensitive.
        :raises ConfigurationError: if the algorithm is unknown.
        """
        name = _normalise_algorithm(algorithm)
        return cls(name, digest(FINGERPRINT_ALGORITHMS[name][0], der))

    @property
    def hex(self) -> str:
        """The digest as upper-case hex pairs separated by colons, e.g. ``AB:CD:...``."""
        return self.value.hex(":").upper()

    def sdp_attribute(self) -> str:
        """Format as a complete SDP line body, ``a=fingerprint:sha-256 AB:CD:...``."""
        return f"a=fingerprint:{self}"

    def matches(self, der: bytes) -> bool:
        """Tell whether this fingerprint is the digest of the DER certificate ``der``.

        The digest comparison runs in constant time (:func:`hmac.compare_digest`).
        """
        import hmac

        return hmac.compare_digest(
            self.value, digest(FINGERPRINT_ALGORITHMS[self.algorithm][0], der)
        )

    def __str__(self) -> str:
        """Format as the SDP attribute value, ``sha-256 AB:CD:...``."""
        return format_fingerprint(self.algorithm, self.value)

    def __repr__(self) -> str:
        """Show the SDP form, which round-trips through :meth:`parse`."""
        return f"Fingerprint.parse({str(self)!r})"


class SetupRole(enum.Enum):
    """A value of the SDP ``a=setup`` attribute (RFC 4145 §4)."""

    ACTIVE = "active"
    "The endpoint initiates the connection: for DTLS, it sends the ClientHello."
    PASSIVE = "passive"
    "The endpoint accepts the connection: for DTLS, it answers the ClientHello."
    ACTPASS = "actpass"
    "The endpoint will do either; an offerer MUST use it for DTLS (RFC 8842 §5.2)."
    HOLDCONN = "holdconn"
    "No connection for now; never valid for DTLS (RFC 8842 §5.3)."

    @classmethod
    def parse(cls, text: str) -> SetupRole:
        """Parse ``active``, ``a=setup:passive``, ``Setup:ActPass``...

        The value is case-insensitive; surrounding whitespace and an ``a=setup:`` or
        ``setup:`` prefix are ignored.

        :raises ConfigurationError: if the value is not one of the four defined ones.
        """
        value = _strip_prefix(text.strip(), ("a=setup:", "setup:")).strip().lower()
        try:
            return cls(value)
        except ValueError:
            raise ConfigurationError(
                f"unknown a=setup value {_echo(text)}; "
                "expected active, passive, actpass or holdconn"
            ) from None

    def sdp_attribute(self) -> str:
        """Format as an SDP line body, e.g. ``a=setup:actpass``."""
        return f"a=setup:{self.value}"


_ROLE_TABLE: dict[tuple[SetupRole, SetupRole], Role | str] = {
    (SetupRole.ACTIVE, SetupRole.ACTIVE): "both sides are a=setup:active",
    (SetupRole.ACTIVE, SetupRole.PASSIVE): Role.CLIENT,
    (SetupRole.ACTIVE, SetupRole.ACTPASS): Role.CLIENT,
    (SetupRole.PASSIVE, SetupRole.ACTIVE): Role.SERVER,
    (SetupRole.PASSIVE, SetupRole.PASSIVE): "both sides are a=setup:passive",
    (SetupRole.PASSIVE, SetupRole.ACTPASS): Role.SERVER,
    (SetupRole.ACTPASS, SetupRole.ACTIVE): Role.SERVER,
    (SetupRole.ACTPASS, SetupRole.PASSIVE): Role.CLIENT,
    (SetupRole.ACTPASS, SetupRole.ACTPASS): (
        "both sides are a=setup:actpass; the answerer must choose active or passive"
    ),
}


def setup_role(local: str, remote: str) -> Role:
    """Resolve the DTLS role of this endpoint from both ``a=setup`` values.

    The offerer uses ``actpass`` and the answerer picks ``active`` or ``passive``
    (RFC 5763 §5, RFC 8842 §5.2-§5.3); the ``active`` side sends the ClientHello.
    ``holdconn`` (RFC 4145 §4) is never valid for DTLS. The complete table:

    =========  =========  ===================================
    local      remote     result
    =========  =========  ===================================
    active     active     ConfigurationError (both active)
    active     passive    ``Role.CLIENT``
    active     actpass    ``Role.CLIENT`` (we answered active)
    passive    active     ``Role.SERVER``
    passive    passive    ConfigurationError (both passive)
    passive    actpass    ``Role.SERVER`` (we answered passive)
    actpass    active     ``Role.SERVER`` (peer answered active)
    actpass    passive    ``Role.CLIENT`` (peer answered passive)
    actpass    actpass    ConfigurationError (both actpass)
    holdconn   any        ConfigurationError (holdconn)
    any        holdconn   ConfigurationError (holdconn)
    =========  =========  ===================================

    :param local: this endpoint's ``a=setup`` value, e.g. ``"actpass"`` or ``"a=setup:actpass"``
        (case-insensitive, surrounding whitespace ignored).
    :param remote: the peer's ``a=setup`` value, in the same forms.
    :returns: :attr:`Role.CLIENT` or :attr:`Role.SERVER`.
    :raises ConfigurationError: for an unknown value or an invalid pair; the message says which.
    """
    local_setup = SetupRole.parse(local)
    remote_setup = SetupRole.parse(remote)
    if SetupRole.HOLDCONN in (local_setup, remote_setup):
        side = "local" if local_setup is SetupRole.HOLDCONN else "remote"
        raise ConfigurationError(
            f"{side} a=setup:holdconn cannot establish a DTLS association (RFC 8842 §5.3)"
        )
    outcome = _ROLE_TABLE[local_setup, remote_setup]
    if isinstance(outcome, Role):
        return outcome
    raise ConfigurationError(f"invalid a=setup combination: {outcome}")


def parse_fingerprints(
    value: Iterable[Fingerprint | str] | Fingerprint | str, *, empty_hint: str = ""
) -> tuple[Fingerprint, ...]:
    """Parse a peer's expected fingerprints; a lone ``str`` or Fingerprint is a list of one.

    :raises ConfigurationError: for an empty list, a malformed string or another type;
        ``empty_hint`` is appended to the message for the empty case.
    """
    items = (value,) if isinstance(value, (str, Fingerprint)) else value
    out: list[Fingerprint] = []
    for fp in items:
        if isinstance(fp, str):
            fp = Fingerprint.parse(fp)
        elif not isinstance(fp, Fingerprint):
            raise ConfigurationError(
                f"remote_fingerprints: expected Fingerprint or str, got {type(fp).__name__}"
            )
        out.append(fp)
    if not out:
        raise ConfigurationError(
            "remote_fingerprints: at least one fingerprint is needed" + empty_hint
        )
    return tuple(out)


def select_fingerprints(fingerprints: Iterable[Fingerprint]) -> tuple[Fingerprint, ...]:
    """Select the fingerprints a peer certificate must match one of (RFC 8122 §5).

    When the peer offers fingerprints made with different hash functions, only those of the
    most preferred (strongest, :data:`FINGERPRINT_PREFERENCE`) hash function offered count:
    ``[<correct sha-1>, <wrong sha-256>]`` selects the sha-256 one, so the certificate is
    refused. A weaker hash never overrules a stronger one, which would let whoever can forge
    the weak digest choose the certificate. Order is kept; an empty input gives ``()``.
    """
    fps = tuple(fingerprints)
    for algorithm in FINGERPRINT_PREFERENCE:
        chosen = tuple(fp for fp in fps if fp.algorithm == algorithm)
        if chosen:
            return chosen
    return ()
