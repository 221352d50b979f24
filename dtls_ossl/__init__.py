"""dtls_ossl: sans-IO DTLS 1.2 (and 1.3 where OpenSSL has it) on the system OpenSSL, for WebRTC.

Start with :class:`DtlsConfiguration` and :class:`DtlsConnection`; WebRTC helpers (certificates,
SDP fingerprints, a=setup roles, DTLS-SRTP keys, RFC 7983 demultiplexing) are re-exported here.
"""

from __future__ import annotations

from dtls_ossl import events, exceptions
from dtls_ossl._util import TYPE_CHECKING, lazy_attributes
from dtls_ossl.exceptions import *  # noqa: F403 (the whole error hierarchy, in __all__ below)

if TYPE_CHECKING:
    from dtls_ossl import aio, webrtc
    from dtls_ossl._binding import HAS_DTLS_1_3, openssl_version, openssl_version_number
    from dtls_ossl._roles import Role
    from dtls_ossl.configuration import DtlsConfiguration
    from dtls_ossl.connection import ConnectionState, ConnectionStats, DtlsConnection
    from dtls_ossl.cookies import CookieVerifier
    from dtls_ossl.webrtc.certificate import Certificate
    from dtls_ossl.webrtc.demux import classify
    from dtls_ossl.webrtc.sdp import Fingerprint, SetupRole, setup_role
    from dtls_ossl.webrtc.srtp import SRTP_EXPORTER_LABEL, SrtpKeys, SrtpProfile

__version__ = "0.1.0"

__all__ = [
    "HAS_DTLS_1_3",
    "SRTP_EXPORTER_LABEL",
    "Certificate",
    "ConnectionState",
    "ConnectionStats",
    "CookieVerifier",
    "DtlsConfiguration",
    "DtlsConnection",
    "Fingerprint",
    "Role",
    "SetupRole",
    "SrtpKeys",
    "SrtpProfile",
    "__version__",
    "aio",
    "classify",
    "events",
    "openssl_version",
    "openssl_version_number",
    "setup_role",
    "webrtc",
]
__all__ += exceptions.__all__

# Loaded on first access (PEP 562), so that ``import dtls_ossl`` stays cheap: the compiled
# binding (which links libssl and libcrypto), the connection and configuration are loaded when
# first used; certificates (cryptography) only where certificates are made or parsed; the enums
# (Role, SrtpProfile, ...) when first named, since ``enum`` alone costs ~4 ms on a fresh
# interpreter.
_LAZY = {
    "Role": "dtls_ossl._roles",
    "Fingerprint": "dtls_ossl.webrtc.sdp",
    "SetupRole": "dtls_ossl.webrtc.sdp",
    "setup_role": "dtls_ossl.webrtc.sdp",
    "SRTP_EXPORTER_LABEL": "dtls_ossl.webrtc.srtp",
    "SrtpKeys": "dtls_ossl.webrtc.srtp",
    "SrtpProfile": "dtls_ossl.webrtc.srtp",
    "Certificate": "dtls_ossl.webrtc.certificate",
    "classify": "dtls_ossl.webrtc.demux",
    "CookieVerifier": "dtls_ossl.cookies",
    "DtlsConfiguration": "dtls_ossl.configuration",
    "DtlsConnection": "dtls_ossl.connection",
    "ConnectionState": "dtls_ossl.connection",
    "ConnectionStats": "dtls_ossl.connection",
    "HAS_DTLS_1_3": "dtls_ossl._binding",
    "openssl_version": "dtls_ossl._binding",
    "openssl_version_number": "dtls_ossl._binding",
    "aio": "dtls_ossl.aio",
    "webrtc": "dtls_ossl.webrtc",
    # Not public: routes `from dtls_ossl import _openssl` (connection.py) through _binding, so
    # the compiled module is never used before _binding's checks (missing binding, versions).
    "_openssl": "dtls_ossl._binding",
}

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(globals(), _LAZY)
    del lazy_attributes  # keep the helper out of the public namespace
