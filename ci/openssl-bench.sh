#!/usr/bin/env bash
# dtls_ossl against C on newer OpenSSL releases: benchmarks/handshake.py and benchmarks/records.py
# run on this machine (its OpenSSL) and in the Debian root of each suite (default: trixie, sid,
# experimental; OpenSSL 3.5, 3.6 and 4.0), where the benchmarks compile their C baseline with the
# root's gcc against the root's libssl-dev, so C and dtls_ossl always share one OpenSSL. The
# roots are ci/openssl-matrix.sh's (ci/_roots.sh: the cached tarball is used whatever its age,
# made if missing, remade with MATRIX_REFRESH=1); each run builds dtls_ossl from the committed
# tree (git archive HEAD) in a fresh copy. For the callgrind instruction counts, valgrind is
# installed into that copy at run time (apt-get, so this needs the network), never into the
# cached root, whose key stays valid; without it the benchmarks skip those figures and the
# table says so.
#
# Writes reports/openssl-bench.md (one row per OpenSSL: rates, ratios, instructions; parsed by
# ci/openssl_bench_table.py) and keeps every run's output under reports/openssl-bench/. A hand
# run, not part of CI: a full run takes about half an hour, and its rates depend on what else
# the machine runs (the instruction counts do not).
#
# Usage: ci/openssl-bench.sh [--quick] [--seconds S] [--generations G] [--rounds N] [--no-host]
#                            [SUITE...]
#   --quick          passes --quick to the benchmarks (smoke run)
#   --seconds S      passes --seconds S (the paired chunks' time budget; default 18)
#   --generations G  passes --generations G (fresh workers G times; default 6)
#   --rounds N       passes --rounds N (whole-process rounds: --whole-process, memory figures)
#   --no-host        only the roots, not this machine's own OpenSSL
# Needs root (chroot, mount namespaces), like the matrix.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
roots_tool=openssl-bench
# shellcheck source=ci/_roots.sh
source ci/_roots.sh

bench_args=()
host=1
suites=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) bench_args+=(--quick) ;;
    --rounds | --seconds | --generations)
      [ $# -ge 2 ] || {
        echo "$1 needs a value (see --help)" >&2
        exit 2
      }
      bench_args+=("$1" "$2")
      shift
      ;;
    --no-host) host=0 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "unknown option $1 (see --help)" >&2
      exit 2
      ;;
    *) suites+=("$1") ;;
  esac
  shift
done
[ "${#suites[@]}" -gt 0 ] || suites=(trixie sid experimental)
report=$repo/reports/openssl-bench.md
logs=$repo/reports/openssl-bench
rm -rf "$logs"
mkdir -p "$logs"
work=$(mktemp -d "${TMPDIR:-/tmp}/dtls_ossl-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
git -C "$repo" archive --format=tar HEAD >"$work/src.tar"
commit=$(git -C "$repo" rev-parse --short HEAD)
all_start=$EPOCHREALTIME
status=0

# run_in WHERE COMMAND: COMMAND (bash -c) in the tree of WHERE ("host" or a root's directory),
# with that tree on PYTHONPATH.
run_in() {
  local where=$1
  shift
  if [ "$where" = host ]; then
    (cd "$work/host/src" && PYTHONPATH=$work/host/src bash -c "$1")
  else
    in_root "$where" "cd /src && export PYTHONPATH=/src && $1"
  fi
}

# step LABEL NAME LOG WHERE COMMAND: run_in, output to LOG, one line with the step's duration.
step() {
  local label=$1 name=$2 log=$3 where=$4 start=$EPOCHREALTIME rc=0
  run_in "$where" "$5" >"$log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    say "$label: $name ($(elapsed "$start") s)"
  else
    say "$label: $name FAILED, exit status $rc ($(elapsed "$start") s; $log)"
    tail -n 5 "$log" | sed 's/^/    /' >&2
  fi
  return "$rc"
}

# bench LABEL WHERE OUT: build dtls_ossl in WHERE's tree and run both benchmarks there, their
# stdout (the figures) into OUT/NAME.txt, stderr (progress) into OUT/NAME.log.
bench() {
  local label=$1 where=$2 out=$3 python=python3 load
  [ "$where" = host ] || python=/venv/bin/python
  # The matrix's build command: the root's venv python is its python3 with Debian's packages.
  step "$label" "build dtls_ossl" "$out/build.log" "$where" \
    "$python setup.py -q build_ext --inplace" || {
    echo "dtls_ossl did not build (build.log)" >>"$out/notes.txt"
    return 1
  }
  for name in handshake records; do
    local opts=() help
    help=$(run_in "$where" "python3 benchmarks/$name.py --help" 2>&1 || true)
    # The table needs neither memory nor import time; the handshake benchmark skips them.
    for opt in --skip-memory --skip-import; do
      ! grep -q -- "$opt" <<<"$help" || opts+=("$opt")
    done
    if grep -q -- '--json' <<<"$help"; then opts+=(--json "bench-out/$name.json"); fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    local rc=0 start=$EPOCHREALTIME
    run_in "$where" "mkdir -p bench-out && timeout 3600 python3 benchmarks/$name.py ${bench_args[*]} ${opts[*]} 2>bench-out/$name.log" \
      >"$out/$name.txt" || rc=$?
    local inside=$work/host/src
    [ "$where" = host ] || inside=$where/src
    cp "$inside/bench-out/$name".* "$out/" 2>/dev/null || true
    echo "$name: \`$(echo python3 "benchmarks/$name.py" "${bench_args[@]}" "${opts[@]}")\`; load average $load at the start, $(cut -d' ' -f1 /proc/loadavg) at the end (2 cores)" >>"$out/notes.txt"
    if [ "$rc" -eq 0 ]; then
      say "$label: benchmarks/$name.py ($(elapsed "$start") s)"
    else
      say "$label: benchmarks/$name.py exit status $rc ($(elapsed "$start") s; $out/$name.txt)"
      echo "$name: exit status $rc" >>"$out/notes.txt"
      tail -n 5 "$out/$name.log" "$out/$name.txt" 2>/dev/null | sed 's/^/    /' >&2
      status=1
    fi
  done
}

labels=()
[ "$host" = 0 ] || labels+=(host)
labels+=("${suites[@]}")
n=0
for label in "${labels[@]}"; do
  n=$((n + 1))
  start=$EPOCHREALTIME
  out=$logs/$label
  mkdir -p "$out"
  if [ "$label" = host ]; then
    say "[$n/${#labels[@]}] host: $(python3 -c 'import ssl; print(ssl.OPENSSL_VERSION)'), $(python3 --version)"
    mkdir -p "$work/host/src"
    tar -C "$work/host/src" -xf "$work/src.tar"
    command -v valgrind >/dev/null || echo "valgrind not installed here: no callgrind figures" >>"$out/notes.txt"
    bench host host "$out" || status=1
    rm -rf "$work/host"
  else
    if ! ensure_root "$label"; then
      say "[$n/${#labels[@]}] $label: no root (see above)"
      echo "no root: it could not be made" >>"$out/notes.txt"
      status=1
      continue
    fi
    root=$work/root-$label
    t=$EPOCHREALTIME
    extract_root "$label" "$root" "$work/src.tar"
    say "$label: root extracted ($(elapsed "$t") s)"
    say "[$n/${#labels[@]}] $label: libssl-dev $(in_root "$root" "dpkg-query -W -f '\${Version}' libssl-dev"), $(in_root "$root" 'python3 --version')"
    # valgrind in this copy only (the cached root and its key stay as the matrix made them).
    if ! step "$label" "apt-get install valgrind" "$out/valgrind.log" "$root" \
      "timeout 900 apt-get -o Acquire::Check-Valid-Until=false update -q && timeout 900 apt-get install -y -q --no-install-recommends valgrind"; then
      echo "valgrind could not be installed in the root ($(tail -n 1 "$out/valgrind.log")): no callgrind figures" >>"$out/notes.txt"
    fi
    bench "$label" "$root" "$out" || status=1
    rm -rf "$root"
  fi
  say "[$n/${#labels[@]}] $label: done in $(elapsed "$start") s"
done

args=()
for label in "${labels[@]}"; do args+=("$label=$logs/$label"); done
table=$(python3 ci/openssl_bench_table.py "${args[@]}")
{
  echo "# dtls_ossl and C on each OpenSSL"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, \`ci/openssl-bench.sh ${bench_args[*]} ${suites[*]}\`" \
    "($(elapsed "$all_start") s in all). Machine: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)," \
    "$(nproc) cores. Rates are medians of paired chunks; each ratio is the benchmark's target" \
    "figure (the median of the per-pair ratios dtls_ossl / C, with the 95 % confidence interval" \
    "of that median in brackets where the benchmark printed one); instructions are callgrind's" \
    "(PYTHONHASHSEED=0, the difference of two run lengths), C / dtls_ossl with dtls_ossl's" \
    "multiple of C. Records are 1200 bytes, one direction; the batch is 64 records per call."
  echo
  echo "$table"
  echo
  echo "Each run's output: reports/openssl-bench/LABEL/{handshake,records}.txt."
} >"$report"
echo
cat "$report"
say "all done in $(elapsed "$all_start") s"
exit "$status"
