#!/usr/bin/env bash
# Install the DTLS peers that `dtls-ossl conformance` drives, only when missing (idempotent).
#   openssl     the system OpenSSL's s_server/s_client (Debian package openssl)
#   pyopenssl   pyOpenSSL from PyPI (its wheel carries its own OpenSSL)
#   gnutls      gnutls-serv/gnutls-cli (Debian package gnutls-bin)
#   chromium    headless Chromium (Debian package chromium; ~1 min to install the first time),
#               run in a lo-only namespace (unshare from util-linux, ip from iproute2), with
#               pylibsrtp from PyPI to decrypt its SRTP
#   firefox     headless Firefox ESR (Debian package firefox-esr, from bookworm-security), same
#               namespace and pylibsrtp as chromium
#   wolfssl     examples/server and examples/client built from Debian's wolfssl source package
#               (--enable-dtls --enable-dtls13 --enable-srtp), ~40 s the first time
#   mbedtls     programs/ssl/ssl_server2 and ssl_client2 built from Debian's mbedtls source
#               package with MBEDTLS_SSL_DTLS_SRTP switched on, ~15 s the first time
#   pion        a small Go peer (dtls_ossl/conformance/go/pion_peer.go) built offline in GOPATH mode
#               from Debian's golang-go and golang-github-pion-dtls.v2-dev into .peers/pion/<hash>/
#   aiortc      aiortc from PyPI (its RTCDtlsTransport: pyOpenSSL's OpenSSL and libsrtp via pylibsrtp)
#   werift      werift-dtls from npm (needs node and npm), `npm ci` in dtls_ossl/conformance/node/
#               (version pinned by its package-lock.json; node_modules/ is gitignored)
# Source builds go to $DTLS_OSSL_PEERS_DIR (default: .peers/ in this checkout, gitignored):
# <peer>/bin/ and <peer>/VERSION; a build is skipped when those exist. A `deb-src` entry for
# bookworm main is added under /etc/apt/sources.list.d/ for `apt-get source`.
# Usage: ci/install-peers.sh [PEER ...]   (default: every peer above)
set -euo pipefail
cd "$(dirname "$0")/.."

peers=("$@")
[ "${#peers[@]}" -gt 0 ] || peers=(openssl pyopenssl gnutls chromium firefox wolfssl mbedtls)
[ "$#" -gt 0 ] || peers+=(pion)
[ "$#" -gt 0 ] || peers+=(aiortc werift)
wants() { local p; for p in "${peers[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

PEERS_DIR="${DTLS_OSSL_PEERS_DIR:-$PWD/.peers}"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
apt_updated=""
apt_install() {
  [ "$#" -gt 0 ] || return 0
  echo "install-peers: apt-get install $*"
  if [ -z "$apt_updated" ]; then $sudo_cmd apt-get update -q; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "$@"
}

need=()
if wants openssl; then command -v openssl >/dev/null 2>&1 || need+=(openssl); fi
if wants gnutls; then
  { command -v gnutls-cli && command -v gnutls-serv; } >/dev/null 2>&1 || need+=(gnutls-bin)
fi
if wants chromium; then command -v chromium >/dev/null 2>&1 || need+=(chromium); fi
if wants firefox; then command -v firefox-esr >/dev/null 2>&1 || need+=(firefox-esr); fi
if wants chromium || wants firefox; then
  command -v unshare >/dev/null 2>&1 || need+=(util-linux)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
fi
if wants pion; then
  command -v go >/dev/null 2>&1 || need+=(golang-go)
  [ -d /usr/share/gocode/src/github.com/pion/dtls/v2 ] || need+=(golang-github-pion-dtls.v2-dev)
fi
if wants werift; then
  { command -v node && command -v npm; } >/dev/null 2>&1 || need+=(nodejs npm)
fi
apt_install "${need[@]}"

if wants aiortc; then
  python -c 'import aiortc' >/dev/null 2>&1 || python -m pip install -q aiortc
fi
if wants werift; then
  [ -f dtls_ossl/conformance/node/node_modules/werift-dtls/package.json ] ||
    (cd dtls_ossl/conformance/node && npm ci --no-audit --no-fund) ||
    echo "install-peers: werift npm ci FAILED" >&2
fi
if wants pyopenssl; then
  python -c 'import OpenSSL.SSL' >/dev/null 2>&1 || python -m pip install -q 'pyOpenSSL>=24'
fi
if wants chromium || wants firefox; then
  python -c 'import pylibsrtp' >/dev/null 2>&1 || python -m pip install -q 'pylibsrtp>=0.10'
fi

# --- Debian source builds -------------------------------------------------------------------
SRC_LIST=/etc/apt/sources.list.d/dtls-ossl-src.sources
source_ready() {
  # deb-src for bookworm main, and what `apt-get source` and the builds need.
  local tools=()
  command -v dpkg-source >/dev/null 2>&1 || tools+=(dpkg-dev)
  command -v make >/dev/null 2>&1 || tools+=(make)
  command -v gcc >/dev/null 2>&1 || tools+=(gcc)
  command -v stdbuf >/dev/null 2>&1 || tools+=(coreutils)
  if [ ! -f "$SRC_LIST" ]; then
    echo "install-peers: adding deb-src for bookworm main ($SRC_LIST)"
    printf '%s\n' "Types: deb-src" "URIs: http://deb.debian.org/debian" "Suites: bookworm" \
      "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
      | $sudo_cmd tee "$SRC_LIST" >/dev/null
    apt_updated=""
  fi
  if [ -z "$apt_updated" ]; then $sudo_cmd apt-get update -q || return 1; apt_updated=1; fi
  apt_install "${tools[@]}" "$@"
}

fetch_source() {  # fetch_source PACKAGE -> prints the unpacked directory
  local pkg=$1 build="$PEERS_DIR/build"
  rm -rf "$build/$pkg" && mkdir -p "$build/$pkg"
  (cd "$build/$pkg" && apt-get source -q "$pkg" >&2)
  find "$build/$pkg" -mindepth 1 -maxdepth 1 -type d -name "$pkg-*" | head -n 1
}

build_wolfssl() {
  local out="$PEERS_DIR/wolfssl" started=$SECONDS
  if [ -x "$out/bin/server" ] && [ -x "$out/bin/client" ] && [ -f "$out/VERSION" ]; then
    echo "install-peers: wolfssl: $(cat "$out/VERSION") (cached)"; return 0
  fi
  local tools=()
  command -v autoreconf >/dev/null 2>&1 || tools+=(autoconf)
  command -v automake >/dev/null 2>&1 || tools+=(automake)
  command -v libtoolize >/dev/null 2>&1 || tools+=(libtool)
  source_ready "${tools[@]}" || return 1
  local dir
  dir=$(fetch_source wolfssl) && [ -n "$dir" ] || return 1
  echo "install-peers: building wolfssl in $dir"
  # Each step chained with &&: errexit does not apply inside a function called with ||.
  (
    cd "$dir" &&
      ./autogen.sh >build.log 2>&1 &&
      ./configure --enable-dtls --enable-dtls13 --enable-srtp --disable-shared \
        --enable-static --disable-crypttests --disable-benchmark >>build.log 2>&1 &&
      make -j"$(nproc)" examples/server/server examples/client/client >>build.log 2>&1
  ) || { tail -n 30 "$dir/build.log"; return 1; }
  local version
  version=$(cd "$dir" && dpkg-parsechangelog -S Version) || return 1
  rm -rf "$out" && mkdir -p "$out/bin" "$out/certs" &&
    cp "$dir/examples/server/server" "$dir/examples/client/client" "$out/bin/" &&
    cp "$dir/certs/dh2048.pem" "$out/certs/" || return 1
  echo "wolfSSL ${version%%-*} (Debian $version source; --enable-dtls --enable-dtls13" \
    "--enable-srtp)" >"$out/VERSION"
  rm -rf "$PEERS_DIR/build/wolfssl"
  echo "install-peers: wolfssl built in $((SECONDS - started)) s"
}

build_mbedtls() {
  local out="$PEERS_DIR/mbedtls" started=$SECONDS
  if [ -x "$out/bin/ssl_server2" ] && [ -x "$out/bin/ssl_client2" ] && [ -f "$out/VERSION" ]; then
    echo "install-peers: mbedtls: $(cat "$out/VERSION") (cached)"; return 0
  fi
  local tools=()
  command -v python3 >/dev/null 2>&1 || tools+=(python3)
  source_ready "${tools[@]}" || return 1
  local dir
  dir=$(fetch_source mbedtls) && [ -n "$dir" ] || return 1
  echo "install-peers: building mbedtls in $dir"
  # Mbed TLS 2.28 keeps its options in include/mbedtls/config.h (3.x: mbedtls_config.h).
  (
    cd "$dir" &&
      python3 scripts/config.py set MBEDTLS_SSL_DTLS_SRTP &&
      make -j"$(nproc)" -C library >build.log 2>&1 &&
      make -j"$(nproc)" -C programs ssl/ssl_server2 ssl/ssl_client2 >>build.log 2>&1
  ) || { tail -n 30 "$dir/build.log"; return 1; }
  local version
  version=$(cd "$dir" && dpkg-parsechangelog -S Version) || return 1
  rm -rf "$out" && mkdir -p "$out/bin" &&
    cp "$dir/programs/ssl/ssl_server2" "$dir/programs/ssl/ssl_client2" "$out/bin/" || return 1
  echo "Mbed TLS ${version%%-*} (Debian $version source; MBEDTLS_SSL_DTLS_SRTP)" >"$out/VERSION"
  rm -rf "$PEERS_DIR/build/mbedtls"
  echo "install-peers: mbedtls built in $((SECONDS - started)) s"
}

# A failed source build leaves that peer skipped (the report says why), not the whole job.
if wants wolfssl; then build_wolfssl || echo "install-peers: wolfssl build FAILED" >&2; fi
if wants mbedtls; then build_mbedtls || echo "install-peers: mbedtls build FAILED" >&2; fi
if wants pion; then
  # Cached by the hash of the Go source (the same build the harness does on first use).
  DTLS_OSSL_PEERS_DIR="$PEERS_DIR" python -c 'from dtls_ossl.conformance.peer_pion import build; print("install-peers: pion:", build())' \
    || echo "install-peers: pion build FAILED" >&2
fi
rmdir "$PEERS_DIR/build" 2>/dev/null || true
echo "install-peers: done"
