#!/usr/bin/env bash
# ASan + UBSan run of the test suite (issue 9): builds the extension with
# -fsanitize=address,undefined in a temporary copy of the checkout (the normal in-place build
# is not touched), then runs pytest with libasan preloaded. Fails on any sanitizer report.
#
#   PYTHONMALLOC=malloc  every Python object goes through malloc, so ASan sees small
#                        over-reads that pymalloc's arenas would hide.
#   detect_leaks=0       CPython does not free everything at exit (interned strings, static
#                        types, module state): LeakSanitizer would report those, not ours.
#                        Leaks of ours are covered by tests/test_leak.py in the normal run.
#   -m 'not rss'         the RSS tests measure resident memory; ASan's quarantine and shadow
#                        memory make RSS meaningless there.
#   -m 'not browser'     a browser started under the preloaded libasan does not come up (the
#                        cell reports it unavailable); the browser cells run in the normal
#                        suite and in the conformance step. These two are all that is skipped.
# Extra pytest arguments are passed through (e.g. `bash ci/sanitize.sh tests/test_fuzz.py`).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
start=$(date +%s)

libasan=$(gcc -print-file-name=libasan.so)
if [ ! -e "$libasan" ] || [ "$libasan" = libasan.so ]; then
  echo "sanitize: libasan not found (gcc -print-file-name=libasan.so)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dtls_ossl-sanitize.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The checkout as it is now (tracked and new files, not build outputs), outside the tree.
git ls-files -z --cached --others --exclude-standard \
  | grep -zv -e '\.so$' -e '^dtls_ossl/_openssl\.c$' -e '/node_modules/' \
  | tar -C "$src" --null -T - -cf - | tar -C "$work" -xf -

cd "$work"
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1"
echo "sanitize: building with $flags in $work"
CFLAGS="$flags" LDFLAGS="-fsanitize=address,undefined" \
  python setup.py -q build_ext --inplace --build-temp "$work/build-asan" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; exit 1; }
so=$(ls dtls_ossl/_openssl*.so)
# nm's whole output first: `nm | grep -q` under pipefail fails when grep stops reading early.
symbols=$(nm -D "$so")
grep -q __asan_ <<<"$symbols" || { echo "sanitize: $so is not instrumented" >&2; exit 1; }
echo "sanitize: built in $(( $(date +%s) - start )) s"

mkdir -p "$work/reports"
export PYTHONPATH="$work"
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:log_path=$work/reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$work/reports/ubsan"
# Mostly OpenSSL's real retransmission timers; ASan slows the rest about 2-3x.
rc=0
LD_PRELOAD="$libasan" timeout "${SANITIZE_TIMEOUT:-1200}" \
  python -m pytest -q -p no:cacheprovider -m 'not benchmark and not rss and not browser' \
  --timeout=300 "$@" || rc=$?

reports=$(ls "$work/reports" 2>/dev/null || true)
if [ -n "$reports" ]; then
  for f in "$work"/reports/*; do echo "=== sanitizer report $f"; cat "$f"; done
  echo "sanitize: FAILED: sanitizer reports above" >&2
  rc=1
fi
echo "sanitize: pytest exit $rc; total $(( $(date +%s) - start )) s"
exit "$rc"
