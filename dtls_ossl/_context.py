"""Build the one OpenSSL ``SSL_CTX`` of a :class:`~dtls_ossl.DtlsConfiguration`."""

from __future__ import annotations

from dtls_ossl._binding import consume_errors, ffi, lib, openssl_assert
from dtls_ossl._util import TYPE_CHECKING
from dtls_ossl.exceptions import ConfigurationError

if TYPE_CHECKING:
    from typing import Any

    from dtls_ossl.configuration import DtlsConfiguration

__all__ = ["build_ssl_ctx"]


def _config_assert(ok: bool, what: str) -> None:
    if not ok:
        detail = "; ".join(e.reason for e in consume_errors())
        raise ConfigurationError(f"{what}{': ' + detail if detail else ''}")


def build_ssl_ctx(config: DtlsConfiguration) -> Any:
    """Create and configure the ``SSL_CTX`` shared by every connection of ``config``.

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
    lib.SSL_CTX_set_max_cert_list(ctx, config.max_handshake_message)
    openssl_assert(lib.SSL_CTX_set_min_proto_version(ctx, lib.DTLS1_2_VERSION) == 1, "min version")
    max_version = lib.DtlsOssl_DTLS1_3_VERSION if config.allow_dtls_1_3 else lib.DTLS1_2_VERSION
    openssl_assert(lib.SSL_CTX_set_max_proto_version(ctx, max_version) == 1, "max version")
    _config_assert(
        lib.SSL_CTX_set_cipher_list(ctx, config.ciphers.encode("ascii")) == 1,
        f"ciphers: OpenSSL accepts none of {config.ciphers!r}",
    )
    _config_assert(
        lib.SSL_CTX_set1_groups_list(ctx, config.groups.encode("ascii")) == 1,
        f"groups: OpenSSL refused {config.groups!r}",
    )
    if config.srtp_profiles:
        names = ":".join(p.openssl_name for p in config.srtp_profiles)
        # SSL_CTX_set_tlsext_use_srtp(3) returns 0 on success, unlike most of OpenSSL.
        _config_assert(
            lib.SSL_CTX_set_tlsext_use_srtp(ctx, names.encode("ascii")) == 0,
            f"srtp_profiles: OpenSSL refused {names!r}",
        )
    # No X509_V_FLAG_CHECK_SS_SIGNATURE: a self-signed certificate's own signature proves
    # nothing that the fingerprint (which pins the certificate) and CertificateVerify (which
    # proves the key) do not, and checking it costs each side a signature verification.
    cert = config.certificate
    key_der = None if cert is None else cert.private_key_der
    if cert is None or key_der is None:
        raise ConfigurationError("certificate: a private key is required for our own side")
    _config_assert(
        lib.DtlsOssl_ctx_setup(
            ctx,
            cert.der,
            len(cert.der),
            key_der,
            len(key_der),
            int(config.key_log_writer is not None),
        )
        == 1,
        "certificate: OpenSSL refused the certificate or key",
    )
    lib.ERR_clear_error()
    return ctx
