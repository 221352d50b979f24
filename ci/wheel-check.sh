#!/usr/bin/env bash
# The repaired wheel (ci/build-wheel.sh) needs nothing from the machine: in a private mount
# namespace where every C compiler (the drivers and gcc's cc1), the OpenSSL headers and, for
# the run, the system libssl/libcrypto are masked, install the wheel into a fresh venv (binary
# wheels only), then run `dtls-ossl --version`, the demo and the core tests from a copy of
# tests/ (so that the installed package is what they import).
# The bundled-OpenSSL tests (tests/test_bundled_openssl.py: `import ssl` first must not change
# which OpenSSL dtls_ossl uses) run while the system libssl is still visible, since that is
# what Python's ssl module loads.
# Needs root (unshare --mount). Usage: ci/wheel-check.sh [WHEEL]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
wheel=${1:-$(ls "$repo"/dist/wheelhouse/dtls_ossl-*manylinux*.whl 2>/dev/null | tail -n 1)}
[ -f "$wheel" ] || {
  echo "wheel-check: no wheel; run ci/build-wheel.sh first" >&2
  exit 1
}
# The interpreter itself, not a shim that is a shell script (pyenv's).
python=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')
core=(test_connection.py test_records.py test_framing.py test_cookies.py test_values.py
  test_webrtc_srtp.py test_webrtc_certificate.py test_webrtc_demux.py test_hostile.py
  test_aio.py test_event_queue.py test_dtls13.py)

work=$(mktemp -d "${TMPDIR:-/tmp}/dtls_ossl-wheelcheck.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/t"
cp -r "$repo/tests" "$work/t/tests"
cp "$repo/pyproject.toml" "$work/t/"
find "$work/t" -name __pycache__ -prune -exec rm -rf {} +

# What gets masked, found on this machine: compiler drivers (by their real files), gcc's
# internal programs, the OpenSSL headers, and the system libssl/libcrypto the linker cache has.
compilers=()
for name in cc c++ gcc g++ cpp clang clang++ c89 c99 tcc; do
  path=$(command -v "$name" 2>/dev/null) || continue
  compilers+=("$(realpath "$path")")
done
mapfile -t syslibs < <(ldconfig -p | awk '$1 ~ /^lib(ssl|crypto)\.so(\.[0-9]+)*$/ { print $NF }' |
  xargs -r realpath | sort -u)
echo "wheel-check: $(basename "$wheel"); masking ${#compilers[@]} compiler files, /usr/lib/gcc," \
  "/usr/include/openssl and ${syslibs[*]}"

unshare --mount --propagation private -- env -u PYTHONPATH -u PYTHONHOME -u VIRTUAL_ENV \
  WORK="$work" WHEEL="$wheel" PY="$python" CORE="${core[*]}" SYSLIBS="${syslibs[*]}" \
  COMPILERS="${compilers[*]}" bash -c '
set -euo pipefail
for f in $COMPILERS; do mount --bind /dev/null "$f"; done
for d in /usr/lib/gcc /usr/libexec/gcc /usr/include/openssl /usr/local/include/openssl; do
  [ ! -d "$d" ] || mount -t tmpfs -o ro tmpfs "$d"
done
# Prove the masks hold before relying on them.
if echo "int main(void){return 0;}" | cc -x c - -o "$WORK/a.out" 2>/dev/null; then
  echo "wheel-check: a C compiler still works" >&2; exit 1
fi
[ ! -e /usr/include/openssl/ssl.h ] || { echo "wheel-check: headers visible" >&2; exit 1; }
echo "wheel-check: no compiler, no OpenSSL headers"

"$PY" -m venv "$WORK/venv"
v="$WORK/venv/bin"
# Binary wheels only: with no compiler, anything else would fail anyway, but say it plainly.
"$v/python" -m pip install -q --only-binary :all: "$WHEEL" pytest pytest-timeout hypothesis 2>&1 |
  grep -v "^WARNING: Location" || true
"$v/python" -c "import dtls_ossl" || { echo "wheel-check: install failed" >&2; exit 1; }
cd "$WORK/t"
echo "wheel-check: import ssl first, system libssl visible (tests/test_bundled_openssl.py)"
"$v/python" -m pytest -q -p no:cacheprovider tests/test_bundled_openssl.py

for lib in $SYSLIBS; do mount --bind /dev/null "$lib"; done
if "$v/python" -c "import ctypes; ctypes.CDLL(\"libssl.so.3\")" 2>/dev/null; then
  echo "wheel-check: the system libssl still loads" >&2; exit 1
fi
echo "wheel-check: system libssl/libcrypto hidden"
"$v/dtls-ossl" --version
timeout 120 "$v/dtls-ossl" demo
tests=()
for t in $CORE; do tests+=("tests/$t"); done
"$v/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
'
echo "wheel-check: ok"
