#!/usr/bin/env bash
# The C in _cffi_src/ on its own, without cffi: build_ffi.py reads every file there, each .c
# file compiles alone with the module's flags (build_ffi.COMPILE_ARGS) and -Werror, the OpenSSL
# glue against the OpenSSL headers only (no Python.h anywhere but the Python-facing files listed
# below), and clang-format (the checked-in .clang-format) has nothing to change. Compiled alone,
# without DTLSOSSL_ONE_TU, the names the files share are extern: each file needs only headers.
set -euo pipefail
cd "$(dirname "$0")/.."

# The files that may include Python.h (or pyglue.h, which does); the rest is OpenSSL glue.
# tests/test_c_sources.py pins the same list.
python_facing=(conninit.c fastpath.c module.c pool.c pyglue.h step.c)

cc=${CC:-gcc}
read -r -a flags <<<"$(python -c 'import build_ffi; print(" ".join(build_ffi.COMPILE_ARGS))')"
read -r -a ssl <<<"$(pkg-config --cflags openssl 2>/dev/null || true)"
py_include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')

read_by_build=$(python -c 'import build_ffi; print(" ".join(sorted(build_ffi.C_FILES)))')
present=$(cd _cffi_src && ls -- *.c *.h | sort | tr '\n' ' ')
if [ "$read_by_build" != "${present% }" ]; then
  echo "cfiles: build_ffi.C_FILES ($read_by_build) is not what _cffi_src/ holds (${present% })" >&2
  exit 1
fi

with_python=$(cd _cffi_src && { grep -lE '#include [<"](Python|pyglue)\.h' -- *.c *.h || true; } | sort | tr '\n' ' ')
if [ "${with_python% }" != "${python_facing[*]}" ]; then
  echo "cfiles: Python.h must be included by ${python_facing[*]} only, found in: ${with_python:-none}" >&2
  exit 1
fi

is_python_facing() {
  local f
  for f in "${python_facing[@]}"; do
    [ "$f" = "$1" ] && return 0
  done
  return 1
}

for path in _cffi_src/*.c; do
  name=$(basename "$path")
  if is_python_facing "$name"; then
    extra=(-I"$py_include")
  else
    extra=()
  fi
  echo "cfiles: $cc ${flags[*]} -Werror ${extra[*]:+${extra[*]} }-c $path"
  "$cc" "${flags[@]}" -Werror "${ssl[@]}" "${extra[@]}" -c "$path" -o /dev/null
done

command -v clang-format >/dev/null || {
  echo "cfiles: clang-format is not installed (ci/run.sh installs it)" >&2
  exit 1
}
echo "cfiles: clang-format --dry-run --Werror _cffi_src/*"
clang-format --dry-run --Werror _cffi_src/*.c _cffi_src/*.h
