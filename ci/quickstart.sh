#!/usr/bin/env bash
# The README's Quickstart, as a newcomer runs it: clone the committed HEAD of this checkout into
# a temporary directory, make a fresh venv (no system site packages), then run every command line
# of README.md's "## Quickstart" section (its indented code lines) verbatim, in order, in the
# clone with the venv activated. Each line is printed with its duration and bounded in time
# ($QUICKSTART_TIMEOUT seconds, default 900); the first failing line fails the script.
# The commands are read from the README at run time, so the two cannot drift apart.
# Uncommitted changes are not tested: commit first. Usage: ci/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
limit=${QUICKSTART_TIMEOUT:-900}
python=${PYTHON:-python3}

work=$(mktemp -d "${TMPDIR:-/tmp}/dtls_ossl-quickstart.XXXXXX")
trap 'rm -rf "$work"' EXIT
head=$(git rev-parse HEAD)
git clone --quiet --no-checkout "$repo" "$work/clone"
git -C "$work/clone" checkout --quiet --detach "$head"

# The commands: indented code lines between "## Quickstart" and the next "## " heading.
mapfile -t commands < <(
  awk '
    /^## / { inside = ($0 == "## Quickstart"); next }
    inside && /^    [^ ]/ { sub(/^    /, ""); print }' "$work/clone/README.md"
)
if [ "${#commands[@]}" -eq 0 ]; then
  echo "quickstart: no command lines (4-space indented) under '## Quickstart' in README.md" >&2
  exit 1
fi

echo "quickstart: $head cloned into $work/clone; ${#commands[@]} command lines from README.md"

# A newcomer's shell: none of this checkout's Python settings leak into the venv.
unset PYTHONPATH PYTHONHOME PYTHONSAFEPATH PYTHONUSERBASE VIRTUAL_ENV PIP_USER
"$python" -m venv "$work/venv"
# shellcheck disable=SC1091 # created just above
source "$work/venv/bin/activate"
cd "$work/clone"

for line in "${commands[@]}"; do
  echo "quickstart: \$ $line"
  start=$EPOCHREALTIME
  status=0
  timeout --kill-after=10 "$limit" bash -c "$line" || status=$?
  took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  if [ "$status" -ne 0 ]; then
    [ "$status" -ne 124 ] || echo "quickstart: timed out after $limit s" >&2
    echo "quickstart: FAILED (exit $status after $took s): $line" >&2
    exit 1
  fi
  echo "quickstart: ok in $took s: $line"
done
echo "quickstart: all ${#commands[@]} README Quickstart lines passed"
