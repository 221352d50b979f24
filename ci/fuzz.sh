#!/usr/bin/env bash
# Mutation campaign against real in-memory DtlsConnection pairs (issue 9): every state, both
# roles, ECDSA and RSA, with and without SRTP and the cookie exchange, default and CBC ciphers.
# Bounded by FUZZ_SECONDS (default 180); FUZZ_SEED picks the first seed (default 1, so CI runs
# are reproducible); FUZZ_CIPHER=default|cbc restricts the variants. Exit 1 on any failure,
# with one reproducer per kind of failure (python ci/fuzz_pairs.py --replay SEED --only I).
# FUZZ_ALLOW_FAILURES=1 reports failures without failing the step (for a branch where known
# cases are still open; the merged tree should run without it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
rc=0
python ci/fuzz_pairs.py --seconds "${FUZZ_SECONDS:-180}" --seed "${FUZZ_SEED:-1}" || rc=$?
if [ "$rc" -ne 0 ] && [ "${FUZZ_ALLOW_FAILURES:-0}" = 1 ]; then
  echo "fuzz: failures reported above, not failing the step (FUZZ_ALLOW_FAILURES=1)"
  exit 0
fi
exit "$rc"
