"""DTLS-SRTP: protection profiles and the split of exported keying material.

After a DTLS handshake that negotiated the ``use_srtp`` extension (RFC 5764 §4.1.2), both peers
export ``2 * (key_length + salt_length)`` bytes with the label :data:`SRTP_EXPORTER_LABEL` and no
context (RFC 5764 §4.2). :class:`SrtpKeys` splits that material into the local (outbound) and
remote (inbound) master key and salt, ready for an SRTP library such as pylibsrtp.

Pure Python: nothing here needs OpenSSL or pyca/cryptography.
"""

from __future__ import annotations

import enum

from dtls_ossl._roles import CLIENT as _CLIENT
from dtls_ossl._roles import Role
from dtls_ossl._util import Record
from dtls_ossl.exceptions import ConfigurationError

__all__ = ["SRTP_EXPORTER_LABEL", "SrtpKeys", "SrtpProfile"]

_setattr = object.__setattr__

SRTP_EXPORTER_LABEL = "EXTRACTOR-dtls_srtp"
"The TLS exporter label for DTLS-SRTP keying material (RFC 5764 §4.2)."


class SrtpProfile(enum.Enum):
    """A DTLS-SRTP protection profile (RFC 5764 §4.1.2, RFC 7714 §14.2).

    The enum value is OpenSSL's profile name, as used by ``SSL_CTX_set_tlsext_use_srtp(3)``.
    ``iana_id`` is the two-byte identifier from the IANA "DTLS-SRTP Protection Profiles"
    registry, which libsrtp's ``srtp_profile_t`` and pylibsrtp's ``Policy.SRTP_PROFILE_*`` reuse.
    """

    AES128_CM_SHA1_80 = "SRTP_AES128_CM_SHA1_80"
    "AES-128 counter mode with an 80-bit HMAC-SHA1 tag (RFC 5764 §4.1.2); the WebRTC baseline."
    AES128_CM_SHA1_32 = "SRTP_AES128_CM_SHA1_32"
    "AES-128 counter mode with a 32-bit HMAC-SHA1 tag on SRTP (RFC 5764 §4.1.2)."
    AEAD_AES_128_GCM = "SRTP_AEAD_AES_128_GCM"
    "AES-128-GCM with a 96-bit salt (RFC 7714 §12, §14.2)."
    AEAD_AES_256_GCM = "SRTP_AEAD_AES_256_GCM"
    "AES-256-GCM with a 96-bit salt (RFC 7714 §12, §14.2)."

    @property
    def openssl_name(self) -> str:
        """OpenSSL's name for the profile, e.g. ``SRTP_AES128_CM_SHA1_80``."""
        name: str = self.value
        return name

    # By name: a member's hash is a Python-level call (enum.Enum.__hash__).
    @property
    def iana_id(self) -> int:
        """The IANA DTLS-SRTP protection profile number (1, 2, 7 or 8)."""
        return _BY_NAME[self._name_][0]

    @property
    def key_length(self) -> int:
        """Length of the SRTP master key in bytes."""
        return _BY_NAME[self._name_][1]

    @property
    def salt_length(self) -> int:
        """Length of the SRTP master salt in bytes."""
        return _BY_NAME[self._name_][2]

    @property
    def keying_material_length(self) -> int:
        """Bytes to export with :data:`SRTP_EXPORTER_LABEL`: ``2 * (key + salt)``."""
        _, key, salt = _BY_NAME[self._name_]
        return 2 * (key + salt)

    @classmethod
    def from_openssl_name(cls, name: str) -> SrtpProfile:
        """Look a profile up by OpenSSL's name (``SSL_get_selected_srtp_profile(3)``).

        :raises ConfigurationError: if the name is not a supported profile.
        """
        try:
            return cls(name.strip().upper())
        except ValueError:
            raise ConfigurationError(
                f"unsupported SRTP profile {name!r}; "
                f"expected one of {', '.join(p.value for p in cls)}"
            ) from None

    @classmethod
    def from_iana_id(cls, iana_id: int) -> SrtpProfile:
        """Look a profile up by its IANA number.

        :raises ConfigurationError: if the number is not a supported profile.
        """
        for profile, (number, _, _) in _PARAMETERS.items():
            if number == iana_id:
                return profile
        raise ConfigurationError(
            f"unsupported SRTP profile id {iana_id!r}; "
            f"expected one of {', '.join(str(p[0]) for p in _PARAMETERS.values())}"
        )


_PARAMETERS: dict[SrtpProfile, tuple[int, int, int]] = {
    # profile: (IANA id, master key length, master salt length); lengths in bytes from
    # RFC 5764 §4.1.2 (AES_128_CM: 128-bit key, 112-bit salt) and RFC 7714 §12 (96-bit salt).
    SrtpProfile.AES128_CM_SHA1_80: (1, 16, 14),
    SrtpProfile.AES128_CM_SHA1_32: (2, 16, 14),
    SrtpProfile.AEAD_AES_128_GCM: (7, 16, 12),
    SrtpProfile.AEAD_AES_256_GCM: (8, 32, 12),
}
# The same by member name, for the properties above and the handshake path.
_BY_NAME = {profile._name_: parameters for profile, parameters in _PARAMETERS.items()}
_KEY_SALT = {name: (k, s) for name, (_, k, s) in _BY_NAME.items()}


class SrtpKeys(Record):
    """SRTP master keys and salts, already resolved to this endpoint's point of view.

    Use ``local_*`` to protect what this endpoint sends and ``remote_*`` to unprotect what it
    receives. ``repr()`` never shows key bytes; :meth:`to_dict` is the explicit way to get them.

    :raises ConfigurationError: from the constructor if a key or salt length does not fit the
        profile.
    """

    profile: SrtpProfile
    "The negotiated protection profile."
    local_key: bytes
    "Master key for SRTP/SRTCP this endpoint sends."
    local_salt: bytes
    "Master salt for SRTP/SRTCP this endpoint sends."
    remote_key: bytes
    "Master key for SRTP/SRTCP the peer sends."
    remote_salt: bytes
    "Master salt for SRTP/SRTCP the peer sends."

    def _validate(self) -> None:
        """Check every key and salt length against the profile."""
        profile = self.profile
        for field, raw, expected in (
            ("local_key", self.local_key, profile.key_length),
            ("local_salt", self.local_salt, profile.salt_length),
            ("remote_key", self.remote_key, profile.key_length),
            ("remote_salt", self.remote_salt, profile.salt_length),
        ):
            if not isinstance(raw, (bytes, bytearray, memoryview)):
                raise TypeError(f"{field} must be bytes, not {type(raw).__name__}")
            value = bytes(raw)
            if len(value) != expected:
                raise ConfigurationError(
                    f"{field} must be {expected} bytes for {profile.openssl_name}, got {len(value)}"
                )
            _setattr(self, field, value)

    @classmethod
    def from_keying_material(
        cls, profile: SrtpProfile, material: bytes | bytearray | memoryview, role: Role
    ) -> SrtpKeys:
        """Split exported keying material as RFC 5764 §4.2 lays it out.

        The material is ``client_write_key | server_write_key | client_write_salt |
        server_write_salt``; a :attr:`Role.CLIENT` sends with the client parts, a
        :attr:`Role.SERVER` with the server parts.

        :param profile: the negotiated profile.
        :param material: exactly ``profile.keying_material_length`` bytes exported with
            :data:`SRTP_EXPORTER_LABEL` and no context.
        :param role: this endpoint's DTLS role.
        :raises ConfigurationError: if the material has the wrong length.
        """
        data = material if type(material) is bytes else bytes(material)
        # By name: an Enum member's hash is a Python-level call.
        lengths = _KEY_SALT.get(profile._name_) if type(profile) is SrtpProfile else None
        k, s = lengths if lengths is not None else (profile.key_length, profile.salt_length)
        if len(data) != 2 * (k + s):
            raise ConfigurationError(
                f"{profile.openssl_name} needs {profile.keying_material_length} bytes of "
                f"keying material, got {len(data)}"
            )
        client_key, server_key = data[:k], data[k : 2 * k]
        client_salt, server_salt = data[2 * k : 2 * k + s], data[2 * k + s :]
        # The lengths come from the profile: the constructor's checks would only repeat them.
        if role is _CLIENT:
            return cls._unchecked(profile, client_key, client_salt, server_key, server_salt)
        return cls._unchecked(profile, server_key, server_salt, client_key, client_salt)

    @property
    def local_master_key(self) -> bytes:
        """``local_key + local_salt``: the ``key`` for an outbound pylibsrtp ``Policy``."""
        return self.local_key + self.local_salt

    @property
    def remote_master_key(self) -> bytes:
        """``remote_key + remote_salt``: the ``key`` for an inbound pylibsrtp ``Policy``."""
        return self.remote_key + self.remote_salt

    def mirrors(self, other: SrtpKeys) -> bool:
        """Tell whether ``other`` is the peer's view of the same keys (local and remote swapped).

        Byte comparisons run in constant time (:func:`hmac.compare_digest`).
        """
        import hmac  # lazily: hmac pulls in hashlib (~3 ms of import time)

        if self.profile is not other.profile:
            return False
        results = (
            hmac.compare_digest(self.local_key, other.remote_key),
            hmac.compare_digest(self.local_salt, other.remote_salt),
            hmac.compare_digest(self.remote_key, other.local_key),
            hmac.compare_digest(self.remote_salt, other.local_salt),
        )
        return all(results)

    def to_dict(self) -> dict[str, str]:
        """Return the profile's OpenSSL name and every key and salt as lower-case hex.

        This exposes secret key material: it is meant for explicit opt-in output (e.g. the
        CLI's JSON), never for logs.
        """
        return {
            "profile": self.profile.openssl_name,
            "local_key": self.local_key.hex(),
            "local_salt": self.local_salt.hex(),
            "remote_key": self.remote_key.hex(),
            "remote_salt": self.remote_salt.hex(),
        }

    def __repr__(self) -> str:
        """Show the profile only; key bytes must never end up in logs."""
        return f"SrtpKeys(profile={self.profile}, keys=<redacted>)"
