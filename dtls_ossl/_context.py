"""Build an OpenSSL ``SSL_CTX`` from plain settings (the one of a ``DtlsConfiguration``).

It sits below :mod:`dtls_ossl.configuration`, which validates its fields and then calls
:func:`build_ssl_ctx` with them: this module knows OpenSSL, not the configuration type.
"""

from __future__ import annotations

from dtls_ossl._binding import consume_errors, ffi, lib, openssl_assert
from dtls_ossl._util import TYPE_CHECKING
from dtls_ossl.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["build_ssl_ctx"]


def _config_assert(ok: bool, what: str) -> None:
    if not ok:
        detail = "; ".join(e.reason for e in consume_errors())
        raise ConfigurationError(f"{what}{': ' + detail if detail else ''}")


def build_ssl_ctx(
    *,
    ciphers: str,
    groups: str,
    srtp_names: Sequence[str],
    cert_der: bytes,
    key_der: bytes | None,
    max_handshake_message: int,
    allow_dtls_1_3: bool,
    key_log: bool,
) -> Any:
    """Create and configure an ``SSL_CTX`` shared by every connection of one configuration.

    ``srtp_names`` are OpenSSL ``use_srtp`` profile names in order of preference; ``key_log``
    installs the key-log callback (the connection's writer receives the lines).

    :raises ConfigurationError: a cipher, group, profile, certificate or key was refused.
    """
    lib.ERR_clear_error()
    ctx = lib.SSL_CTX_new(lib.DTLS_method())
    openssl_assert(ctx != ffi.NULL, "SSL_CTX_new")
    ctx = ffi.gc(ctx, lib.SSL_CTX_free)  # owned: freed when the configuration is collected
    # Renegotiation has no use in WebRTC and is a DoS lever; tickets and the session cache
    # would only cost memory per peer (WebRTC never resumes). No encrypt-then-MAC: OpenSSL 3.0's
    # DTLS answers a record failing its EtM MAC check with a fatal bad_record_mac, so one forged
    # datagram would end a CBC connection; MAC-then-encrypt records failing the check are
    # dropped silently (RFC 6347 section 4.1.2.7). Only CBC suites (CBC_CIPHERS) are affected.
    lib.SSL_CTX_set_options(
        ctx,
        lib.SSL_OP_NO_QUERY_MTU
        | lib.SSL_OP_NO_RENEGOTIATION
        | lib.SSL_OP_NO_TICKET
        | lib.SSL_OP_NO_COMPRESSION
        | lib.SSL_OP_CIPHER_SERVER_PREFERENCE
        | lib.SSL_OP_NO_ENCRYPT_THEN_MAC,
    )
    lib.SSL_CTX_set_session_cache_mode(ctx, lib.SSL_SESS_CACHE_OFF)
    # Caps the peer's certificate list and every handshake message OpenSSL reassembles; the
    # framing screen drops fragments claiming more (DtlsOssl_bounded).
    lib.SSL_CTX_set_max_cert_list(ctx, max_handshake_message)
    openssl_assert(lib.SSL_CTX_set_min_proto_version(ctx, lib.DTLS1_2_VERSION) == 1, "min version")
    max_version = lib.DtlsOssl_DTLS1_3_VERSION if allow_dtls_1_3 else lib.DTLS1_2_VERSION
    openssl_assert(lib.SSL_CTX_set_max_proto_version(ctx, max_version) == 1, "max version")
    _config_assert(
        lib.SSL_CTX_set_cipher_list(ctx, ciphers.encode("ascii")) == 1,
        f"ciphers: OpenSSL accepts none of {ciphers!r}",
    )
    _config_assert(
        lib.SSL_CTX_set1_groups_list(ctx, groups.encode("ascii")) == 1,
        f"groups: OpenSSL refused {groups!r}",
    )
    if srtp_names:
        names = ":".join(srtp_names)
        # SSL_CTX_set_tlsext_use_srtp(3) returns 0 on success, unlike most of OpenSSL.
        _config_assert(
            lib.SSL_CTX_set_tlsext_use_srtp(ctx, names.encode("ascii")) == 0,
            f"srtp_profiles: OpenSSL refused {names!r}",
        )
    # No X509_V_FLAG_CHECK_SS_SIGNATURE: a self-signed certificate's own signature proves
    # nothing that the fingerprint (which pins the certificate) and CertificateVerify (which
    # proves the key) do not, and checking it costs each side a signature verification.
    if key_der is None:
        raise ConfigurationError("certificate: a private key is required for our own side")
    _config_assert(
        lib.DtlsOssl_ctx_setup(ctx, cert_der, len(cert_der), key_der, len(key_der), int(key_log))
        == 1,
        "certificate: OpenSSL refused the certificate or key",
    )
    lib.ERR_clear_error()
    return ctx
