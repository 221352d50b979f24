#!/usr/bin/env bash
# The conformance tool as a user gets it (issue 13, "CI proves it from a wheel"): build the
# library's wheel and the harness's wheel from a clone of the committed HEAD, install both into
# a fresh venv (no system site packages, no PYTHONPATH), and from a directory outside any
# checkout, so no source tree can shadow them:
#   1. check that both packages import from the venv and the library wheel has no harness in it;
#   2. `dtls-ossl-conformance install-peers` for a few quick peers (into the same peer cache
#      CI's other steps use, so nothing is rebuilt);
#   3. `run` of those peers' cells and one `target` run against `openssl s_server`; each must
#      exit 0 and write report.json and junit.xml.
# Uncommitted changes are not tested: commit first. Usage: ci/conformance-wheels.sh [PEER ...]
# (default peers: openssl pyopenssl gnutls). Takes ~1 minute here (the extension's compile and
# ~20 s of cells).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
peers=("$@")
[ "${#peers[@]}" -gt 0 ] || peers=(openssl pyopenssl gnutls)

work=$(mktemp -d "${TMPDIR:-/tmp}/dtls_ossl-conformance-wheels.XXXXXX")
trap 'rm -rf "$work"' EXIT
say() { echo "conformance-wheels: $*"; }

head=$(git rev-parse HEAD)
git clone --quiet --no-checkout "$repo" "$work/clone"
git -C "$work/clone" checkout --quiet --detach "$head"

# None of this checkout's Python settings leak into the build or the venv.
unset PYTHONPATH PYTHONHOME PYTHONSAFEPATH PYTHONUSERBASE VIRTUAL_ENV PIP_USER
say "building both wheels from $head"
(cd "$work/clone" && "$python" -m pip wheel -q --no-deps -w "$work/wheels" . ./conformance)
lib=$(ls "$work"/wheels/dtls_ossl-*.whl)
harness=$(ls "$work"/wheels/dtls_ossl_conformance-*.whl)
say "built $(basename "$lib") and $(basename "$harness")"
if unzip -Z1 "$lib" | grep -E '(^dtls_ossl_conformance/|^dtls_ossl/conformance/)'; then
  echo "conformance-wheels: the library wheel contains the harness" >&2
  exit 1
fi

"$python" -m venv "$work/venv"
venv_python=$work/venv/bin/python
"$venv_python" -m pip install -q "$lib" "$harness"
rm -rf "$work/clone" # nothing may come from the sources from here on
mkdir "$work/run"
cd "$work/run"

where=$("$venv_python" -c '
import dtls_ossl, dtls_ossl_conformance
print(dtls_ossl.__file__); print(dtls_ossl_conformance.__file__)')
say "imports: $(echo "$where" | tr '\n' ' ')"
case "$where" in
  *"$repo"*)
    echo "conformance-wheels: imported from the checkout, not the wheels" >&2
    exit 1
    ;;
esac
if echo "$where" | grep -v "^$work/venv/" >/dev/null; then
  echo "conformance-wheels: a package is not the venv's" >&2
  exit 1
fi

tool=$work/venv/bin/dtls-ossl-conformance
"$tool" install-peers "${peers[@]}"

# expect_reports NAME DIR COMMAND...: the command must exit 0 and leave both reports in DIR.
expect_reports() {
  local name=$1 dir=$2 status=0
  shift 2
  "$@" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "conformance-wheels: $name exited with status $status" >&2
    exit 1
  fi
  for f in report.json junit.xml; do
    if [ ! -s "$dir/$f" ]; then
      echo "conformance-wheels: $name wrote no $dir/$f" >&2
      exit 1
    fi
  done
  say "$name: exit 0, $dir/report.json and junit.xml written"
}

peer_list=$(
  IFS=,
  echo "${peers[*]}"
)
expect_reports run reports/run "$tool" run --peers "$peer_list" --report reports/run
# OpenSSL's own server as the endpoint under test, as conformance/README.md shows it.
server_cmd='openssl s_server -dtls1_2 -accept {host}:{port} -naccept 1 -cert {cert} -key {key}'
server_cmd+=' -verify 1 -use_srtp {profiles} -keymatexport EXTRACTOR-dtls_srtp'
server_cmd+=' -keymatexportlen {keymatlen}'
expect_reports target reports/target "$tool" target --report reports/target \
  --scenarios handshake,lossy --server-cmd "$server_cmd"
say "the tool runs from its wheels in a fresh venv"
