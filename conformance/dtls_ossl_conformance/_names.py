"""Names shared by several peers: IANA cipher suite names, where installed peers live."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CACHE_ENV",
    "IANA_TO_OPENSSL",
    "PROG",
    "iana_to_openssl",
    "install_command",
    "peers_dir",
]

PROG = "dtls-ossl-conformance"
"The command of this distribution."
CACHE_ENV = "DTLS_OSSL_CONFORMANCE_CACHE"
"The environment variable that moves the peer cache (``--cache-dir`` sets it)."

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
    """Where ``dtls-ossl-conformance install-peers`` puts the peers it builds or downloads.

    ``$DTLS_OSSL_CONFORMANCE_CACHE`` if set, else ``$DTLS_OSSL_PEERS_DIR`` (its name before the
    harness was a distribution of its own), else ``$XDG_CACHE_HOME/dtls-ossl-conformance``
    (``~/.cache/dtls-ossl-conformance``): a user cache, never the source tree or site-packages,
    so that a wheel install works and a clean CI checkout keeps its builds.
    """
    for name in (CACHE_ENV, "DTLS_OSSL_PEERS_DIR"):
        env = os.environ.get(name)
        if env:
            return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "dtls-ossl-conformance"


def install_command(peer: str) -> str:
    """Return the one command that installs ``peer`` (what a skipped cell names)."""
    return f"{PROG} install-peers {peer}"
