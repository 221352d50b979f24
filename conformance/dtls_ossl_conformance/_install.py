"""``dtls-ossl-conformance install-peers``: install each peer the matrix drives, when missing.

Every peer is a :class:`Recipe`: Debian packages (each wanted only when a program or path is
missing), Python packages (each wanted only when its module cannot be found), and for some a
build into the peer cache (:func:`~dtls_ossl_conformance._names.peers_dir`):

- ``openssl``, ``gnutls``, ``chromium``, ``firefox``: Debian packages (the browsers also need
  ``unshare`` and ``ip`` for their lo-only namespace, and pylibsrtp to decrypt their SRTP);
- ``pyopenssl``, ``aiortc``: from the Python package index, into this interpreter;
- ``wolfssl``, ``mbedtls``: built from Debian's source packages (``apt-get source``) into
  ``<cache>/<peer>/{bin,VERSION}``; a ``deb-src`` entry for bookworm main is added for that;
- ``pion``: a small Go peer built offline in GOPATH mode from Debian's pion/dtls source into
  ``<cache>/pion/<hash of the Go source>/``;
- ``werift``: the shipped Node script and its lock file copied to ``<cache>/werift/``, then
  ``npm ci`` there.

Nothing is written into the source tree or site-packages (besides the Python packages pip
installs). Each step prints one ``install-peers: <peer>: ...`` line; a step already done says
so and costs nothing, so running it again is cheap. A peer that fails to install is reported
and skipped; the others go on (exit status 1 if any failed).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from dtls_ossl_conformance._names import peers_dir

__all__ = ["RECIPES", "InstallError", "Installer", "Recipe", "install_peers"]

SOURCES_LIST = "/etc/apt/sources.list.d/dtls-ossl-src.sources"
"Where the ``deb-src`` entry for ``apt-get source`` goes."
_DEB_SRC = (
    "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\n"
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
)
BUILD_TIMEOUT = 1200.0
"Seconds one build command may take."


class InstallError(Exception):
    """One step of one peer failed; the message says which and why."""


@dataclass(frozen=True)
class Recipe:
    """How to install one peer."""

    name: str
    apt: tuple[tuple[str, str], ...] = ()
    "(program on PATH or absolute path, Debian package providing it)."
    pip: tuple[tuple[str, str], ...] = ()
    "(importable module, requirement for pip)."
    build: Callable[[Installer], str] | None = None
    "Builds into the cache (skipping when done); returns a one-line summary."


@dataclass
class Installer:
    """The state of one install-peers run: where to build, what apt already did, the output."""

    cache: Path
    out: TextIO
    sudo: list[str] = field(default_factory=list)
    apt_updated: bool = False

    def say(self, peer: str, text: str) -> None:
        """Print one progress line."""
        print(f"install-peers: {peer}: {text}", file=self.out, flush=True)

    def run(
        self,
        args: Sequence[str],
        *,
        cwd: str | Path | None = None,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run a command; raise InstallError with its last output lines if it fails."""
        try:
            done = subprocess.run(
                list(args),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise InstallError(f"{args[0]}: {exc}") from None
        output = done.stdout + done.stderr
        if log is not None:
            with log.open("a", encoding="utf-8") as f:
                f.write(f"$ {' '.join(args)}\n{output}")
        if done.returncode != 0:
            tail = "\n    ".join(output.strip().splitlines()[-15:])
            raise InstallError(f"{' '.join(args)} exited {done.returncode}\n    {tail}")
        return done.stdout

    def apt_install(self, peer: str, packages: Sequence[str]) -> None:
        """Install Debian packages (``apt-get update`` once per run first)."""
        if not packages:
            return
        if not self.apt_updated:
            self.say(peer, "apt-get update")
            self.run([*self.sudo, "apt-get", "update", "-q"])
            self.apt_updated = True
        self.say(peer, f"apt-get install {' '.join(packages)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        self.run([*self.sudo, "apt-get", "install", "-y", "-q", *packages], env=env)

    def source_ready(self, peer: str, tools: Sequence[tuple[str, str]]) -> None:
        """Make ``apt-get source`` work (a deb-src entry) and install the build tools."""
        if not os.path.exists(SOURCES_LIST):
            self.say(peer, f"adding deb-src for bookworm main ({SOURCES_LIST})")
            subprocess.run(
                [*self.sudo, "tee", SOURCES_LIST],
                input=_DEB_SRC,
                text=True,
                stdout=subprocess.DEVNULL,
                check=True,
                timeout=30,
            )
            self.apt_updated = False
        base = [
            ("dpkg-source", "dpkg-dev"),
            ("make", "make"),
            ("gcc", "gcc"),
            ("stdbuf", "coreutils"),
        ]
        self.apt_install(peer, _missing([*base, *tools]))
        if not self.apt_updated:
            self.say(peer, "apt-get update")
            self.run([*self.sudo, "apt-get", "update", "-q"])
            self.apt_updated = True

    def fetch_source(self, peer: str, package: str) -> Path:
        """``apt-get source`` into ``<cache>/build/<package>``; return the unpacked directory."""
        build = self.cache / "build" / package
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        self.say(peer, f"apt-get source {package}")
        self.run(["apt-get", "source", "-q", package], cwd=build)
        dirs = sorted(p for p in build.iterdir() if p.is_dir() and p.name.startswith(package))
        if not dirs:
            raise InstallError(f"apt-get source {package} unpacked nothing in {build}")
        return dirs[0]


def _missing(wanted: Sequence[tuple[str, str]]) -> list[str]:
    """List the packages of ``wanted`` whose program (or absolute path) is missing, once each."""
    out: list[str] = []
    for what, package in wanted:
        present = os.path.exists(what) if what.startswith("/") else shutil.which(what) is not None
        if not present and package not in out:
            out.append(package)
    return out


def _changelog_version(source: Path) -> str:
    done = subprocess.run(
        ["dpkg-parsechangelog", "-S", "Version"],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def _source_build(
    inst: Installer,
    peer: str,
    package: str,
    binaries: dict[str, str],
    steps: Sequence[Sequence[str]],
    tools: Sequence[tuple[str, str]],
    describe: Callable[[str], str],
    extra_files: dict[str, str] | None = None,
) -> str:
    """Build ``binaries`` (name in bin/ -> path in the source) from a Debian source package."""
    home = inst.cache / peer
    version_file = home / "VERSION"
    if version_file.exists() and all(os.access(home / "bin" / b, os.X_OK) for b in binaries):
        return f"{version_file.read_text().strip()} (cached in {home})"
    started = time.monotonic()
    inst.source_ready(peer, tools)
    source = inst.fetch_source(peer, package)
    log = source / "build.log"
    for step in steps:
        inst.say(peer, " ".join(step))
        inst.run(step, cwd=source, log=log)
    version = _changelog_version(source)
    shutil.rmtree(home, ignore_errors=True)
    (home / "bin").mkdir(parents=True)
    for name, path in binaries.items():
        shutil.copy2(source / path, home / "bin" / name)
    for target, path in (extra_files or {}).items():
        (home / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / path, home / target)
    version_file.write_text(describe(version) + "\n")
    shutil.rmtree(inst.cache / "build" / package, ignore_errors=True)
    return f"{describe(version)} built in {time.monotonic() - started:.0f} s into {home}"


def _build_wolfssl(inst: Installer) -> str:
    jobs = f"-j{os.cpu_count() or 1}"
    return _source_build(
        inst,
        "wolfssl",
        "wolfssl",
        {"server": "examples/server/server", "client": "examples/client/client"},
        [
            ["./autogen.sh"],
            [
                "./configure",
                "--enable-dtls",
                "--enable-dtls13",
                "--enable-srtp",
                "--disable-shared",
                "--enable-static",
                "--disable-crypttests",
                "--disable-benchmark",
            ],
            ["make", jobs, "examples/server/server", "examples/client/client"],
        ],
        [("autoreconf", "autoconf"), ("automake", "automake"), ("libtoolize", "libtool")],
        lambda v: (
            f"wolfSSL {v.split('-')[0]} (Debian {v} source; --enable-dtls "
            "--enable-dtls13 --enable-srtp)"
        ),
        {"certs/dh2048.pem": "certs/dh2048.pem"},
    )


def _build_mbedtls(inst: Installer) -> str:
    jobs = f"-j{os.cpu_count() or 1}"
    # Mbed TLS 2.28 keeps its options in include/mbedtls/config.h (3.x: mbedtls_config.h).
    return _source_build(
        inst,
        "mbedtls",
        "mbedtls",
        {"ssl_server2": "programs/ssl/ssl_server2", "ssl_client2": "programs/ssl/ssl_client2"},
        [
            [sys.executable, "scripts/config.py", "set", "MBEDTLS_SSL_DTLS_SRTP"],
            ["make", jobs, "-C", "library"],
            ["make", jobs, "-C", "programs", "ssl/ssl_server2", "ssl/ssl_client2"],
        ],
        [],
        lambda v: f"Mbed TLS {v.split('-')[0]} (Debian {v} source; MBEDTLS_SSL_DTLS_SRTP)",
    )


def _build_pion(inst: Installer) -> str:
    from dtls_ossl_conformance.peer_pion import build

    try:
        return f"built {build()}"
    except subprocess.CalledProcessError as exc:
        err = (exc.stderr or b"").decode(errors="replace").strip()
        raise InstallError(f"go build failed: {err[-2000:]}") from None


def _build_werift(inst: Installer) -> str:
    from dtls_ossl_conformance.peer_werift import NODE_FILES, NODE_SOURCE, node_dir

    home = Path(node_dir())
    home.mkdir(parents=True, exist_ok=True)
    changed = False
    for name in NODE_FILES:
        shipped = Path(NODE_SOURCE, name).read_bytes()
        target = home / name
        if not target.exists() or target.read_bytes() != shipped:
            target.write_bytes(shipped)
            changed = True
    package = home / "node_modules" / "werift-dtls" / "package.json"
    if package.exists() and not changed:
        return f"werift-dtls in {home} (cached)"
    inst.say("werift", f"npm ci in {home}")
    inst.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=home)
    return f"werift-dtls installed in {home}"


_BROWSER_APT = (("unshare", "util-linux"), ("ip", "iproute2"))
_PYLIBSRTP = (("pylibsrtp", "pylibsrtp>=0.10"),)

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("openssl", apt=(("openssl", "openssl"),)),
        Recipe("pyopenssl", pip=(("OpenSSL", "pyOpenSSL>=24"),)),
        Recipe("gnutls", apt=(("gnutls-cli", "gnutls-bin"), ("gnutls-serv", "gnutls-bin"))),
        Recipe("chromium", apt=(("chromium", "chromium"), *_BROWSER_APT), pip=_PYLIBSRTP),
        Recipe("mbedtls", build=_build_mbedtls),
        Recipe("wolfssl", build=_build_wolfssl),
        Recipe("firefox", apt=(("firefox-esr", "firefox-esr"), *_BROWSER_APT), pip=_PYLIBSRTP),
        Recipe("aiortc", pip=(("aiortc", "aiortc"),)),
        Recipe(
            "pion",
            apt=(
                ("go", "golang-go"),
                ("/usr/share/gocode/src/github.com/pion/dtls/v2", "golang-github-pion-dtls.v2-dev"),
            ),
            build=_build_pion,
        ),
        Recipe("werift", apt=(("node", "nodejs"), ("npm", "npm")), build=_build_werift),
    )
}
"Every peer install-peers knows, in the matrix's order."


def _install_one(inst: Installer, recipe: Recipe) -> None:
    packages = _missing(recipe.apt)
    if packages:
        inst.apt_install(recipe.name, packages)
    elif recipe.apt:
        inst.say(recipe.name, f"{', '.join(dict.fromkeys(p for _, p in recipe.apt))} present")
    for module, requirement in recipe.pip:
        if importlib.util.find_spec(module) is not None:
            inst.say(recipe.name, f"{requirement} present")
            continue
        inst.say(recipe.name, f"pip install {requirement}")
        inst.run([sys.executable, "-m", "pip", "install", "-q", requirement])
        importlib.invalidate_caches()
    if recipe.build is not None:
        inst.say(recipe.name, recipe.build(inst))


def install_peers(names: Sequence[str], *, out: TextIO) -> int:
    """Install the peers ``names`` (all when empty); return 0, or 1 if any failed.

    :raises ValueError: for a name that is not a peer.
    """
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise ValueError(f"unknown peer {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    cache = peers_dir()
    cache.mkdir(parents=True, exist_ok=True)
    inst = Installer(cache, out, sudo=[] if os.geteuid() == 0 else ["sudo"])
    print(f"install-peers: peer cache {cache}", file=out, flush=True)
    failed: list[str] = []
    for name in dict.fromkeys(names) or RECIPES:
        started = time.monotonic()
        try:
            _install_one(inst, RECIPES[name])
        except (InstallError, OSError, subprocess.SubprocessError) as exc:
            inst.say(name, f"FAILED: {exc}")
            failed.append(name)
        else:
            inst.say(name, f"ready ({time.monotonic() - started:.1f} s)")
    with_build = cache / "build"
    if with_build.is_dir() and not any(with_build.iterdir()):
        with_build.rmdir()
    summary = f"FAILED: {', '.join(failed)}" if failed else "done"
    print(f"install-peers: {summary}", file=out, flush=True)
    return 1 if failed else 0
