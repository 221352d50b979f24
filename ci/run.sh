#!/usr/bin/env bash
# The single CI entry point: install what the build and the real peers need, build the
# extension, lint, type-check, then run the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: OpenSSL headers to compile against, the openssl CLI the interop tests
# start as a peer, and the compiler toolchain. Installed only when missing.
need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists libssl 2>/dev/null || [ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if [ "${#need[@]}" -gt 0 ]; then
  echo "ci: installing ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${need[@]}"
fi

# The README's test command (installs the test extras, compiles build_ffi.py, runs pytest),
# with lint and type checks in between.
python -m pip install -q -e '.[test]'
python -m ruff check dtls_ossl build_ffi.py
python -m ruff format --check dtls_ossl build_ffi.py
python -m mypy
# Peers first, so that the tests of the conformance peers run instead of skipping.
bash ci/install-peers.sh
python -m pytest

# Interop matrix against real DTLS stacks (openssl, pyOpenSSL, GnuTLS, Mbed TLS and wolfSSL
# built from Debian source, pion, werift, aiortc, headless Chromium and Firefox ESR): installs
# missing peers, then runs it; non-zero if any cell fails. Reports: reports/conformance (report.json, junit.xml).
bash ci/conformance.sh

# Robustness jobs of issue 9, after the main test run: a bounded mutation campaign against
# in-memory pairs (FUZZ_SECONDS, default 180 s) and the suite under ASan/UBSan (~2.5 min here).
# CI_SKIP_FUZZ=1 / CI_SKIP_SANITIZE=1 skip one; FUZZ_ALLOW_FAILURES=1 reports without failing.
[ "${CI_SKIP_FUZZ:-0}" = 1 ] || bash ci/fuzz.sh
[ "${CI_SKIP_SANITIZE:-0}" = 1 ] || bash ci/sanitize.sh
