#!/usr/bin/env bash
# Install the DTLS peers the conformance matrix drives, only when missing (idempotent): a call of
# `dtls-ossl-conformance install-peers [PEER ...]` (conformance/dtls_ossl_conformance/_install.py
# says what each peer needs). Builds go to the peer cache: $DTLS_OSSL_CONFORMANCE_CACHE, else
# $DTLS_OSSL_PEERS_DIR, else $XDG_CACHE_HOME/dtls-ossl-conformance.
# Usage: ci/install-peers.sh [PEER ...]   (default: every peer)
set -euo pipefail
exec python -m dtls_ossl_conformance install-peers "$@"
