# Debian roots of other suites, each with its own native OpenSSL: shared by ci/openssl-matrix.sh
# and ci/openssl-bench.sh (sourced, not run). A root of SUITE is a minimal debootstrap of it
# (sid for experimental) with python3, gcc, pkg-config, the newest libssl-dev the suite has
# (experimental: sid plus `-t experimental libssl-dev`), Debian's Python test dependencies and a
# /venv over them; it is cached as a zstd tarball under $roots, keyed by the recipe below, so a
# cached run needs no network.
#
# The sourcing script sets `roots_tool` (its name, for `say`), and `work` (a scratch directory)
# and `logs` (where debootstrap's log goes) before calling make_root or ensure_root.

roots=${DTLS_OSSL_ROOTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dtls_ossl/roots}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# debootstrap installs the toolchain; the Python packages are installed after it, chrooted with
# /proc mounted (their byte-compiling fails inside debootstrap's own configure step).
base_packages=python3,python3-venv,gcc,libc6-dev,libssl-dev,pkg-config
# A venv over them (/venv, with the system site packages) adds what Debian does not package or
# the tests' lint checks of the examples need: pylibsrtp, ruff, mypy (pip, when the root is made).
venv_packages="pylibsrtp ruff mypy"
py_packages="openssl python3-dev python3-cffi python3-cryptography python3-openssl python3-pytest python3-pytest-timeout python3-hypothesis python3-setuptools"
# A root's cache key: its suite and what goes into it, so a change of the recipe remakes it.
recipe=$(printf '%s\n' "$base_packages" "$py_packages" "$venv_packages" | sha256sum | cut -c1-8)

say() { echo "${roots_tool:-roots}: $*"; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }'; }

# root_tarball SUITE: the cache file of SUITE's root under the current recipe.
root_tarball() { echo "$roots/$1-$recipe.tar.zst"; }

need_debootstrap() {
  command -v debootstrap >/dev/null 2>&1 || {
    say "installing debootstrap"
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  }
}

# in_root DIR COMMAND: run COMMAND (bash -c) chrooted into DIR, with /proc, /dev and a fresh
# /tmp mounted in a private mount namespace (gone when the command ends, whatever happens).
in_root() {
  local dir=$1
  shift
  unshare --mount --propagation private -- bash -c '
    set -e
    dir=$1; shift
    mount -t proc proc "$dir/proc"
    mount --rbind /dev "$dir/dev"
    mount -t tmpfs tmpfs "$dir/tmp"
    exec chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
      LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive bash -c "$1"' _ "$dir" "$@"
}

# make_root SUITE: debootstrap the suite (sid for experimental), install the packages, pack it.
make_root() {
  local suite=$1 base=$1 dir=$work/make-$1 start=$EPOCHREALTIME tarball
  tarball=$(root_tarball "$suite")
  [ "$suite" != experimental ] || base=sid
  need_debootstrap
  mkdir -p "$roots" "$logs"
  say "$suite: debootstrap $base (first run only; about 2 minutes)"
  debootstrap --variant=minbase --include="$base_packages" "$base" "$dir" "$mirror" >"$logs/debootstrap-$suite.log" 2>&1 || {
    tail -n 20 "$logs/debootstrap-$suite.log" >&2
    return 1
  }
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  local sources="deb $mirror $base main"
  case $suite in
    experimental) sources+=$'\n'"deb $mirror experimental main" ;;
    sid | unstable) ;;
    *) sources+=$'\n'"deb $mirror $suite-updates main"$'\n'"deb ${mirror%/debian}/debian-security $suite-security main" ;;
  esac
  printf '%s\n' "$sources" >"$dir/etc/apt/sources.list"
  local target=""
  [ "$suite" != experimental ] || target="-t experimental"
  # The newest libssl-dev of the suite (its updates and security pockets, or experimental).
  # Valid-Until is not checked: a mirror that is a snapshot serves sid's Release file past the
  # date it names (seen here: "expired since 29 days"); the signatures are still checked.
  in_root "$dir" "apt-get -o Acquire::Check-Valid-Until=false update -q >/dev/null && apt-get install -y -q $py_packages >/dev/null && apt-get install -y -q $target libssl-dev openssl >/dev/null && apt-get clean" || return 1
  # pip in the root trusts what pip here is configured to trust (a machine behind a TLS proxy
  # names its CA bundle in pip's config); otherwise its own certifi bundle.
  local cert="" ca
  ca=$(python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.cert='\(.*\)'\$/\1/p" | head -n 1)
  if [ -n "$ca" ] && [ -f "$ca" ]; then
    cp "$ca" "$dir/etc/ssl/pip-ca.crt"
    cert="--cert /etc/ssl/pip-ca.crt"
  fi
  in_root "$dir" "python3 -m venv --system-site-packages /venv && /venv/bin/python -m pip install -q --disable-pip-version-check $cert $venv_packages && rm -rf /root/.cache" || return 1
  rm -rf "$dir"/var/lib/apt/lists/*
  rm -f "$roots/$suite"-*.tar.zst
  tar -C "$dir" -cf - . | zstd -q -T0 -3 -o "$tarball.part"
  mv "$tarball.part" "$tarball"
  rm -rf "$dir"
  say "$suite: root made and cached in $(elapsed "$start") s ($(du -h "$tarball" | cut -f1))"
}

# ensure_root SUITE [MAX_DAYS]: make SUITE's root unless it is cached (and, with MAX_DAYS, no
# older than that; MATRIX_REFRESH=1 always remakes it). Non-zero if it could not be made.
ensure_root() {
  local suite=$1 max_days=${2:-} tarball
  tarball=$(root_tarball "$suite")
  local fresh=$tarball
  [ -z "$max_days" ] || fresh=$(find "$tarball" -mtime "-$max_days" 2>/dev/null || true)
  if [ "${MATRIX_REFRESH:-0}" = 1 ] || [ -z "$fresh" ] || [ ! -f "$tarball" ]; then
    make_root "$suite"
  else
    say "$suite: cached root $tarball"
  fi
}

# extract_root SUITE DIR SRC_TAR: unpack SUITE's cached root into DIR and the tree (a tar of
# the sources, e.g. `git archive HEAD`) into DIR/src.
extract_root() {
  local suite=$1 dir=$2 src=$3
  mkdir -p "$dir/src"
  zstd -q -dc "$(root_tarball "$suite")" | tar -C "$dir" -xf -
  tar -C "$dir/src" -xf "$src"
}
