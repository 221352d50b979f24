#!/usr/bin/env bash
# The conformance job: install the peers, then run the matrix. Exit status is the command's:
# non-zero if any cell failed. Reports land in reports/conformance/{report.json,junit.xml}.
# Assumes the project is installed (ci/run.sh does `pip install -e .[test]` first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-peers.sh
exec python -m dtls_ossl conformance --report reports/conformance "$@"
