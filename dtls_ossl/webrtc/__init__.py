"""WebRTC helpers around DTLS: certificates, SDP attributes, DTLS-SRTP keys, demultiplexing.

Everything here is pure Python; pyca/cryptography is imported lazily by
:class:`~dtls_ossl.webrtc.certificate.Certificate` only when a certificate must be generated,
parsed or inspected.
"""

from __future__ import annotations

from dtls_ossl.webrtc.certificate import KEY_TYPES, Certificate
from dtls_ossl.webrtc.demux import DatagramKind, classify
from dtls_ossl.webrtc.sdp import FINGERPRINT_ALGORITHMS, Fingerprint, SetupRole, setup_role
from dtls_ossl.webrtc.srtp import SRTP_EXPORTER_LABEL, SrtpKeys, SrtpProfile

__all__ = [
    "FINGERPRINT_ALGORITHMS",
    "KEY_TYPES",
    "SRTP_EXPORTER_LABEL",
    "Certificate",
    "DatagramKind",
    "Fingerprint",
    "SetupRole",
    "SrtpKeys",
    "SrtpProfile",
    "classify",
    "setup_role",
]
