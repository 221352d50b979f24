"""What many connections share: certificate, SRTP profiles, ciphers, MTU and timers.

A :class:`DtlsConfiguration` is immutable and owns exactly one OpenSSL ``SSL_CTX``, built on
first use and shared by every :class:`~dtls_ossl.DtlsConnection` made from it. What belongs to
one peer (role, expected fingerprints) is given to the connection instead.
"""

from __future__ import annotations

from _thread import allocate_lock

from dtls_ossl._binding import ffi
from dtls_ossl._context import build_ssl_ctx
from dtls_ossl._limits import DEFAULT_HANDSHAKE_TIMEOUT, check_positive
from dtls_ossl._roles import Role
from dtls_ossl._util import TYPE_CHECKING, Record, private
from dtls_ossl.exceptions import ConfigurationError
from dtls_ossl.webrtc.srtp import SrtpProfile

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence
    from typing import IO, Any, TypeAlias

    from dtls_ossl.webrtc.certificate import Certificate

__all__ = [
    "CBC_CIPHERS",
    "DEFAULT_CIPHERS",
    "DEFAULT_GROUPS",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_SRTP_PROFILES",
    "DtlsConfiguration",
    "KeyLogTarget",
    "Role",
]

DEFAULT_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
"""Forward-secret AEAD suites in WebRTC's order of preference (what browsers negotiate).

CBC suites are left out: add :data:`CBC_CIPHERS` for a peer that has nothing else."""

CBC_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
    ]
)
"""Forward-secret CBC suites browsers still offer, for ``ciphers=DEFAULT_CIPHERS + ":" +
CBC_CIPHERS``. They run MAC-then-encrypt (encrypt-then-MAC is switched off), so that a forged
record is dropped rather than fatal; see the README's design notes."""

# DTLS 1.2 signs the ECDHE share with the certificate key but also needs the certificate's own
# curve in the groups list for ECDSA certificates: keep P-256 beside X25519.
DEFAULT_GROUPS = "X25519:P-256:P-384"
"Key-exchange groups, most preferred first."

DEFAULT_SRTP_PROFILES: tuple[SrtpProfile, ...] = (
    SrtpProfile.AEAD_AES_128_GCM,
    SrtpProfile.AES128_CM_SHA1_80,
    SrtpProfile.AEAD_AES_256_GCM,
    SrtpProfile.AES128_CM_SHA1_32,
)
"Offered ``use_srtp`` profiles; as a server, the first one the client also offers wins."

if TYPE_CHECKING:
    KeyLogTarget: TypeAlias = str | os.PathLike[str] | IO[str] | Callable[[str], None]
    "A key-log destination: a file path (appended to), a text stream, or a callable per line."
else:

    def __getattr__(name: str) -> object:
        # KeyLogTarget is only built when asked for: a typing.Union at module level would make
        # ``import dtls_ossl`` import typing (~2.5 ms on an interpreter that has not yet).
        if name == "KeyLogTarget":
            from collections.abc import Callable
            from typing import IO, Union

            alias = Union[str, "os.PathLike[str]", IO[str], Callable[[str], None]]
            globals()[name] = alias
            return alias
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# OpenSSL 3.0 treats a timer under 15 ms as already expired and bursts every retransmission.
_MIN_TIMEOUT = 0.02
_MIN_MTU = 256
_MAX_MTU = 65507


_setattr = object.__setattr__


class DtlsConfiguration(Record):
    """Settings shared by many :class:`~dtls_ossl.DtlsConnection` objects.

    Durations are float seconds; ``mtu`` is the largest UDP payload in bytes (subtract 28 bytes
    of IPv4 or 48 bytes of IPv6 headers from a link MTU). Validation happens at construction
    and raises :class:`~dtls_ossl.ConfigurationError`. Thread-safe once built. Immutable:
    use :meth:`replace` to derive a changed copy.
    """

    certificate: Certificate | None = None
    "Our certificate and private key; None generates an ECDSA P-256 one."
    srtp_profiles: Sequence[SrtpProfile] = DEFAULT_SRTP_PROFILES
    "``use_srtp`` profiles to offer or accept (RFC 5764), in order of preference; () disables."
    mtu: int = 1200
    "Largest datagram we send, in bytes (UDP payload). WebRTC stacks use about 1200."
    initial_retransmit_timeout: float = 1.0
    "First retransmission timeout (RFC 6347 §4.2.4.1 suggests 1 s; Chrome uses 2 x RTT)."
    max_retransmit_timeout: float = 60.0
    "Cap of the doubling backoff (RFC 6347 §4.2.4.1: at least 60 s; WebRTC uses ~3 s)."
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT
    """Overall deadline of a handshake; None waits until OpenSSL gives up (12 expiries). A
    server's starts when it answers the first ClientHello: before that it has no deadline."""
    ciphers: str = DEFAULT_CIPHERS
    "OpenSSL cipher list for DTLS 1.2."
    groups: str = DEFAULT_GROUPS
    "OpenSSL groups list, e.g. ``X25519:P-256``."
    allow_dtls_1_3: bool = False
    "Negotiate DTLS 1.3 when both sides can; needs :data:`dtls_ossl.HAS_DTLS_1_3`."
    key_log: KeyLogTarget | None = None
    """Where to write NSS key-log lines (for Wireshark); None honours ``SSLKEYLOGFILE``.

    A path is opened only to append a line and closed right after (the configuration itself
    never opens it); a text stream or a callable stays the caller's to close."""
    max_held_datagrams: int = 64
    "How many peer datagrams to hold while the remote fingerprints are not known yet."
    max_handshake_message: int = 16384
    """Largest handshake message (a certificate chain, above all) we accept from the peer, in
    bytes. A forged fragment claiming more is dropped, so that it cannot make OpenSSL allocate
    for it (OpenSSL's own default is 100 KiB); raise it for long certificate chains."""
    # Private state, not fields: out of the constructor, repr(), == and hash().
    _ctx: Any = private(default=None)
    _lock: Any = private(default=None)
    _key_log_writer: Callable[[str], None] | None = private(default=None)
    _conn_args: tuple[int, int, int, int] = private(default=None)  # set by _validate

    def replace(self, **changes: Any) -> DtlsConfiguration:
        """Return a new configuration with the given fields changed (``dataclasses.replace``).

        The copy is validated again and gets its own ``SSL_CTX``; a generated certificate is
        kept unless ``certificate`` is among the changes.

        :raises ConfigurationError: a changed value is invalid.
        :raises TypeError: a name is not a field.
        """
        return self._replace(**changes)

    def _validate(self) -> None:
        """Validate every field; generate a certificate when none was given."""
        _setattr(self, "_ctx", None)
        _setattr(self, "_lock", allocate_lock())
        _setattr(self, "_key_log_writer", None)
        _setattr(self, "_conn_args", None)
        if self.certificate is None:
            from dtls_ossl.webrtc.certificate import Certificate

            _setattr(self, "certificate", Certificate.generate())
        elif not getattr(self.certificate, "has_private_key", False):
            raise ConfigurationError("certificate: a private key is required for our own side")
        profiles = tuple(self.srtp_profiles)
        for p in profiles:
            if not isinstance(p, SrtpProfile):
                raise ConfigurationError(f"srtp_profiles: {p!r} is not an SrtpProfile")
        if len(set(profiles)) != len(profiles):
            raise ConfigurationError("srtp_profiles: a profile is listed twice")
        _setattr(self, "srtp_profiles", profiles)
        if isinstance(self.mtu, bool) or not isinstance(self.mtu, int):
            raise ConfigurationError(f"mtu: expected an int, got {self.mtu!r}")
        if not _MIN_MTU <= self.mtu <= _MAX_MTU:
            raise ConfigurationError(
                f"mtu: {self.mtu} is outside {_MIN_MTU}..{_MAX_MTU} bytes (UDP payload)"
            )
        _check_duration("initial_retransmit_timeout", self.initial_retransmit_timeout)
        _check_duration("max_retransmit_timeout", self.max_retransmit_timeout)
        if self.max_retransmit_timeout < self.initial_retransmit_timeout:
            raise ConfigurationError(
                "max_retransmit_timeout must be >= initial_retransmit_timeout "
                f"({self.max_retransmit_timeout} < {self.initial_retransmit_timeout})"
            )
        if self.max_retransmit_timeout > 4000.0:
            raise ConfigurationError("max_retransmit_timeout: at most 4000 s")
        check_positive("handshake_timeout", self.handshake_timeout, optional=True)
        for name in ("ciphers", "groups"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or not value.isascii():
                raise ConfigurationError(f"{name}: expected a non-empty ASCII string")
        if self.max_held_datagrams < 0:
            raise ConfigurationError("max_held_datagrams: must be >= 0")
        m = self.max_handshake_message
        if isinstance(m, bool) or not isinstance(m, int) or not 4096 <= m <= 0xFFFFFF:
            raise ConfigurationError(
                f"max_handshake_message: expected an int in 4096..16777215 bytes, got {m!r}"
            )
        if self.allow_dtls_1_3:
            from dtls_ossl._binding import HAS_DTLS_1_3, openssl_version

            if not HAS_DTLS_1_3:
                raise ConfigurationError(
                    f"allow_dtls_1_3: the linked {openssl_version()} has no DTLS 1.3 "
                    "(OpenSSL 4.1 or later has)"
                )
        _setattr(self, "_key_log_writer", _key_log_writer(self.key_log))
        # Build the SSL_CTX now so a bad cipher or group string fails here, not at first use.
        ctx = self._ssl_ctx()
        # What every connection's C object is made with, computed once rather than per
        # connection: the SSL_CTX's address (the configuration keeps it alive, and each SSL
        # holds a reference), the MTU and the retransmission timer's bounds in microseconds.
        _setattr(
            self,
            "_conn_args",
            (
                int(ffi.cast("uintptr_t", ctx)),
                self.mtu,
                round(self.initial_retransmit_timeout * 1e6),
                round(self.max_retransmit_timeout * 1e6),
            ),
        )

    def _ssl_ctx(self) -> Any:
        """Return the shared ``SSL_CTX`` (cdata), building it on first use."""
        ctx = self._ctx
        if ctx is not None:
            return ctx
        with self._lock:
            if self._ctx is None:
                _setattr(self, "_ctx", self._build_ssl_ctx())
        return self._ctx

    def _build_ssl_ctx(self) -> Any:
        cert = self.certificate
        assert cert is not None  # _validate generated one
        return build_ssl_ctx(
            ciphers=self.ciphers,
            groups=self.groups,
            srtp_names=[p.openssl_name for p in self.srtp_profiles],
            cert_der=cert.der,
            key_der=cert.private_key_der,
            max_handshake_message=self.max_handshake_message,
            allow_dtls_1_3=self.allow_dtls_1_3,
            key_log=self._key_log_writer is not None,
        )

    @property
    def key_log_writer(self) -> Callable[[str], None] | None:
        """The resolved key-log writer, or None when key logging is off."""
        return self._key_log_writer


def _check_duration(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name}: expected seconds as a number, got {value!r}")
    if value < _MIN_TIMEOUT:
        raise ConfigurationError(
            f"{name}: {value} s is below {_MIN_TIMEOUT} s; OpenSSL treats timers under 15 ms "
            "as already expired"
        )


def _key_log_writer(target: KeyLogTarget | None) -> Callable[[str], None] | None:
    """Resolve a key-log target (or ``SSLKEYLOGFILE``) into a per-line writer; opens nothing.

    A path gets a writer that opens the file, appends one line and closes it. So nobody owns a
    handle: no configuration, ``replace()`` copy, worker process or idle connection holds a
    descriptor, a capture can be decrypted while the program runs, and each line is one
    ``O_APPEND`` write, whole even when several processes log to one file. The cost, an
    open and a close per line (one line per DTLS 1.2 handshake), is paid only when logging.
    """
    import os

    if target is None:
        env = os.environ.get("SSLKEYLOGFILE")
        if not env:
            return None
        target = env
    if isinstance(target, (str, os.PathLike)):
        path = os.fspath(target)
        if not isinstance(path, str) or not path:
            raise ConfigurationError(f"key_log: expected a file path, got {target!r}")

        def _append(line: str) -> None:
            with open(path, "a", encoding="ascii") as stream:
                stream.write(line + "\n")

        return _append
    if callable(target):
        return target
    write = getattr(target, "write", None)
    if write is None:
        raise ConfigurationError(
            f"key_log: expected a path, a text stream or a callable, got {type(target).__name__}"
        )

    def _write(line: str) -> None:
        write(line + "\n")
        flush = getattr(target, "flush", None)
        if flush is not None:
            flush()

    return _write
