#!/usr/bin/env bash
# dtls_ossl on every OpenSSL Debian has, not only this machine's: for each suite (default:
# trixie, sid, experimental), a minimal Debian root of that suite where its OpenSSL is native
# (its binaries need that suite's glibc), with python3, gcc, pkg-config and the newest
# libssl-dev the suite has (experimental: sid plus `-t experimental libssl-dev`). In each root,
# build dtls_ossl from the committed tree (warnings counted: any is a failure), run the tests
# and the demo; then a dtls_ossl of this machine and one of the newest root talk over loopback
# UDP (the CLI server and client), both directions. Prints a table and writes it to
# reports/openssl-matrix.md; exit 1 if any cell failed.
#
# Roots are cached as tarballs under $DTLS_OSSL_ROOTS_DIR (default ~/.cache/dtls_ossl/roots),
# one per suite, rebuilt when older than MATRIX_ROOT_MAX_DAYS (7) so a new OpenSSL shows up
# without a change here, or when MATRIX_REFRESH=1. The Python test dependencies are Debian's
# own packages of each suite, so a cached run needs no network.
# MATRIX_FULL: which suites run the whole test suite (default: the last one, the newest
# OpenSSL); the others run the core subset ($MATRIX_CORE_TESTS). "all" or "none" also work.
# Needs root (debootstrap, chroot, mount namespaces). Usage: ci/openssl-matrix.sh [SUITE...]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
roots_tool=openssl-matrix
# shellcheck source=ci/_roots.sh
source ci/_roots.sh
suites=("$@")
[ "${#suites[@]}" -gt 0 ] || suites=(trixie sid experimental)
max_days=${MATRIX_ROOT_MAX_DAYS:-7}
full=${MATRIX_FULL:-${suites[-1]}}
core_tests=${MATRIX_CORE_TESTS:-tests/test_connection.py tests/test_binding.py tests/test_records.py tests/test_framing.py tests/test_cookies.py tests/test_values.py tests/test_webrtc_srtp.py tests/test_webrtc_certificate.py tests/test_hostile.py tests/test_aio.py tests/test_cli.py tests/test_dtls13.py}
# Files that need this machine's services or tools (nginx in namespaces, browsers and built
# peers, git); they run in the main pytest step.
not_in_roots=(tests/test_loadbalancer.py tests/test_aiortc.py tests/conformance tests/interop)
report=$repo/reports/openssl-matrix.md
logs=$repo/reports/openssl-matrix # each build, pytest, demo and interop log, kept for reading
need_debootstrap
rm -rf "$logs"
mkdir -p "$roots" "$logs"
work=$(mktemp -d "${TMPDIR:-/tmp}/dtls_ossl-matrix.XXXXXX")
server_pid=""
cleanup() {
  [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The committed tree, as CI sees it.
git -C "$repo" archive --format=tar HEAD >"$work/src.tar"

rows=()
status=0
newest_root=""
for suite in "${suites[@]}"; do
  start=$EPOCHREALTIME
  if ! ensure_root "$suite" "$max_days"; then
    say "$suite: could not make the root (see above)"
    rows+=("| $suite | - | no root | - | - | - | $(elapsed "$start") s |")
    status=1
    continue
  fi
  root=$work/root-$suite
  extract_root "$suite" "$root" "$work/src.tar"
  ssl=$(in_root "$root" "dpkg-query -W -f '\${Version}' libssl-dev")
  say "$suite: libssl-dev $ssl, $(in_root "$root" '/venv/bin/python --version')"

  # Build: our C must compile without a warning on every OpenSSL (CI's -Werror, counted here).
  build=fail
  if in_root "$root" "cd /src && PYTHONPATH=/src /venv/bin/python setup.py -q build_ext --inplace" >"$logs/build-$suite.log" 2>&1; then
    warnings=$(grep -c 'warning:' "$logs/build-$suite.log" || true)
    if [ "$warnings" -eq 0 ]; then build="ok, 0 warnings"; else build="$warnings warnings"; fi
  fi
  say "$suite: build $build"
  [ "$build" = "ok, 0 warnings" ] || { grep -E 'warning:|error:' "$logs/build-$suite.log" | head -n 20 >&2 || true; status=1; }

  tests="-"
  demo="-"
  version="-"
  dtls13="-"
  if [ "$build" != fail ]; then
    version=$(in_root "$root" "cd /src && PYTHONPATH=/src /venv/bin/python -c 'import dtls_ossl; print(dtls_ossl.openssl_version())'" 2>&1 | tail -n 1)
    dtls13=$(in_root "$root" "cd /src && PYTHONPATH=/src /venv/bin/python -c 'import dtls_ossl; print(dtls_ossl.HAS_DTLS_1_3)'" 2>&1 | tail -n 1)
    which="core"
    selection=$core_tests
    if [ "$full" = all ] || [ "$full" = "$suite" ]; then
      which="full"
      selection="tests $(printf -- '--ignore=%s ' "${not_in_roots[@]}")"
    fi
    say "$suite: pytest ($which) on $version"
    tstart=$EPOCHREALTIME
    in_root "$root" "cd /src && PYTHONPATH=/src timeout 1200 /venv/bin/python -m pytest -q -p no:cacheprovider $selection" \
      >"$logs/pytest-$suite.log" 2>&1 || status=1
    summary=$(grep -E '(passed|failed|error|no tests ran).* in [0-9.]+s' "$logs/pytest-$suite.log" |
      tail -n 1 | tr -d '=' | sed 's/^ *//; s/ in [0-9.]*s.*$//' || true)
    [ -n "$summary" ] || summary="no summary"
    tests="$which: $summary"
    say "$suite: $summary ($(elapsed "$tstart") s)"
    grep -E '^(FAILED|ERROR) ' "$logs/pytest-$suite.log" | head -n 20 >&2 || true
    if in_root "$root" "cd /src && PYTHONPATH=/src timeout 120 /venv/bin/python -m dtls_ossl demo" >"$logs/demo-$suite.log" 2>&1; then
      demo=ok
    else
      demo=fail
      status=1
      tail -n 20 "$logs/demo-$suite.log" >&2
    fi
    say "$suite: demo $demo"
    newest_root=$root
  fi
  rows+=("| $suite | $version | $build | $tests | $demo | $dtls13 | $(elapsed "$start") s |")
done

# Interop across versions: this machine's dtls_ossl (built in place by CI) against the newest
# root's, with the CLI server and client over loopback UDP, each side in each role.
interop="not run (no root built)"
if [ -n "$newest_root" ]; then
  here=$(python3 -c 'import dtls_ossl; print(dtls_ossl.openssl_version())' 2>/dev/null || echo "?")
  there=$(in_root "$newest_root" "cd /src && PYTHONPATH=/src /venv/bin/python -c 'import dtls_ossl; print(dtls_ossl.openssl_version())'" | tail -n 1)
  certs=$newest_root/src/certs
  mkdir -p "$certs"
  for who in server client; do
    python3 -m dtls_ossl cert --out-cert "$certs/$who.pem" --out-key "$certs/$who.key" >/dev/null 2>&1
  done
  fp() { python3 -m dtls_ossl fingerprint "$certs/$1.pem"; }
  # one_way SERVER_SIDE CLIENT_SIDE: "here" runs on this machine, "there" in the newest root.
  one_way() {
    local server_side=$1 client_side=$2 port
    port=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local serve="python3 -m dtls_ossl server --host 127.0.0.1 --port $port --cert CERTS/server.pem --key CERTS/server.key --fingerprint '$(fp client)'"
    local connect="echo interop | timeout 60 python3 -m dtls_ossl client 127.0.0.1 $port --cert CERTS/client.pem --key CERTS/client.key --fingerprint '$(fp server)'"
    if [ "$server_side" = here ]; then
      (cd "$repo" && exec timeout 90 bash -c "exec ${serve//CERTS/$certs}") >"$logs/interop-server.log" 2>&1 &
    else
      in_root "$newest_root" "cd /src && PATH=/venv/bin:\$PATH exec timeout 90 ${serve//CERTS//src/certs}" >"$logs/interop-server.log" 2>&1 &
    fi
    server_pid=$!
    sleep 3
    local ok=0
    if [ "$client_side" = here ]; then
      (cd "$repo" && bash -c "${connect//CERTS/$certs}") >"$logs/interop-client.log" 2>&1 || ok=$?
    else
      in_root "$newest_root" "cd /src && export PATH=/venv/bin:\$PATH && ${connect//CERTS//src/certs}" >"$logs/interop-client.log" 2>&1 || ok=$?
    fi
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    if [ "$ok" -eq 0 ] && grep -q interop "$logs/interop-client.log"; then
      echo ok
    else
      cat "$logs/interop-server.log" "$logs/interop-client.log" >&2
      echo fail
    fi
  }
  a=$(one_way here there)
  b=$(one_way there here)
  interop="server $here / client $there: $a; server $there / client $here: $b"
  [ "$a" = ok ] && [ "$b" = ok ] || status=1
fi

{
  echo "| suite | OpenSSL | build | tests | demo | HAS_DTLS_1_3 | time |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Interop over loopback UDP (CLI server and client): $interop"
} >"$report"
echo
cat "$report"
exit "$status"
