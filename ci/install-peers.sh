#!/usr/bin/env bash
# Install the DTLS peers that `dtls-ossl conformance` drives, only when missing (idempotent).
#   openssl     the system OpenSSL's s_server/s_client (Debian package openssl)
#   pyopenssl   pyOpenSSL from PyPI (its wheel carries its own OpenSSL)
#   gnutls      gnutls-serv/gnutls-cli (Debian package gnutls-bin)
#   chromium    headless Chromium (Debian package chromium; ~1 min to install the first time),
#               run in a lo-only namespace (unshare from util-linux, ip from iproute2), with
#               pylibsrtp from PyPI to decrypt its SRTP
# Peers the harness does not drive yet (mbedtls, wolfssl, firefox, aiortc, pion, werift) are
# not installed: the report lists them as skipped with their install command.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null 2>&1 || need+=(openssl)
{ command -v gnutls-cli && command -v gnutls-serv; } >/dev/null 2>&1 || need+=(gnutls-bin)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ "${#need[@]}" -gt 0 ]; then
  echo "install-peers: apt-get install ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${need[@]}"
fi

python -c 'import OpenSSL.SSL' >/dev/null 2>&1 || python -m pip install -q 'pyOpenSSL>=24'
python -c 'import pylibsrtp' >/dev/null 2>&1 || python -m pip install -q 'pylibsrtp>=0.10'
echo "install-peers: done"
