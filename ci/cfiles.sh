#!/usr/bin/env bash
# The C in _cffi_src/ on its own, without cffi: each .c file compiles alone with the module's
# flags (build_ffi.COMPILE_ARGS) and -Werror, engine.c against the OpenSSL headers only (no
# Python.h anywhere but fastpath.c), and clang-format (the checked-in .clang-format) has
# nothing to change.
set -euo pipefail
cd "$(dirname "$0")/.."

cc=${CC:-gcc}
read -r -a flags <<<"$(python -c 'import build_ffi; print(" ".join(build_ffi.COMPILE_ARGS))')"
read -r -a ssl <<<"$(pkg-config --cflags openssl 2>/dev/null || true)"
py_include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')

with_python=$(grep -l '#include <Python.h>' _cffi_src/*.c _cffi_src/*.h || true)
if [ "$with_python" != "_cffi_src/fastpath.c" ]; then
  echo "cfiles: Python.h must be included by _cffi_src/fastpath.c only, found in: ${with_python:-none}" >&2
  exit 1
fi

echo "cfiles: $cc ${flags[*]} -Werror -c _cffi_src/engine.c"
"$cc" "${flags[@]}" -Werror "${ssl[@]}" -c _cffi_src/engine.c -o /dev/null
echo "cfiles: $cc ${flags[*]} -Werror -c _cffi_src/fastpath.c"
"$cc" "${flags[@]}" -Werror "${ssl[@]}" -I"$py_include" -c _cffi_src/fastpath.c -o /dev/null

command -v clang-format >/dev/null || {
  echo "cfiles: clang-format is not installed (ci/run.sh installs it)" >&2
  exit 1
}
echo "cfiles: clang-format --dry-run --Werror _cffi_src/*"
clang-format --dry-run --Werror _cffi_src/*.c _cffi_src/*.h
