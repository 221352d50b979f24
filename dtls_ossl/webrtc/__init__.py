"""WebRTC helpers around DTLS: certificates, SDP attributes, DTLS-SRTP keys, demultiplexing.

Everything here is pure Python; pyca/cryptography is imported lazily by
:class:`~dtls_ossl.webrtc.certificate.Certificate` only when a certificate must be generated,
parsed or inspected.
"""

from __future__ import annotations

from dtls_ossl._util import TYPE_CHECKING, lazy_attributes

if TYPE_CHECKING:
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

# The names above are loaded on first access (PEP 562): importing one submodule, as
# ``import dtls_ossl`` does for srtp and sdp, must not import the others.
_SUBMODULES = {
    "KEY_TYPES": "certificate",
    "Certificate": "certificate",
    "DatagramKind": "demux",
    "classify": "demux",
    "FINGERPRINT_ALGORITHMS": "sdp",
    "Fingerprint": "sdp",
    "SetupRole": "sdp",
    "setup_role": "sdp",
    "SRTP_EXPORTER_LABEL": "srtp",
    "SrtpKeys": "srtp",
    "SrtpProfile": "srtp",
}

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(
        globals(), {name: f"{__name__}.{sub}" for name, sub in _SUBMODULES.items()}
    )
    del lazy_attributes  # keep the helper out of the public namespace
