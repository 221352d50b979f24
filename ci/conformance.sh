#!/usr/bin/env bash
# The conformance job: install the peers, then run the matrix. Exit status is the command's:
# non-zero if any cell failed. Reports land in reports/conformance/{report.json,junit.xml}.
# Assumes both distributions are installed (ci/run.sh: `pip install -e .[test]` and
# `pip install -e conformance`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-peers.sh
exec python -m dtls_ossl_conformance run --report reports/conformance "$@"
