"""Names shared by several peers: IANA cipher suite names, where source-built peers live."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["IANA_TO_OPENSSL", "iana_to_openssl", "peers_dir"]

IANA_TO_OPENSSL = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
"IANA cipher suite names (browsers' getStats(), wolfSSL, Mbed TLS with - for _) of ours."


def iana_to_openssl(name: str) -> str:
    """Map an IANA-style suite name (``_`` or ``-`` separated) to OpenSSL's, if it is ours."""
    return IANA_TO_OPENSSL.get(name.replace("-", "_"), name)


def peers_dir() -> Path:
    """Where ``ci/install-peers.sh`` puts the peers it builds from source.

    ``$DTLS_OSSL_PEERS_DIR`` if set, else ``.peers/`` at the top of the source tree this package
    runs from (an editable install or a checkout).
    """
    env = os.environ.get("DTLS_OSSL_PEERS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".peers"
