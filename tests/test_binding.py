"""Loading the compiled binding: a clear error without it, and the OpenSSL version checks.

Covers the build-time refusal of OpenSSL < 3.0 headers (build_ffi.py), the import-time
comparison of the headers' OPENSSL_VERSION_NUMBER with the OpenSSL that runs, the ImportError
that a source tree without its compiled module raises, and ``dtls-ossl --version``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import dtls_ossl
from dtls_ossl._binding import (
    check_runtime_version,
    ffi,
    format_version,
    lib,
    openssl_build_version_number,
    openssl_version_number,
)
from dtls_ossl.cli import main

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def v3(major: int, minor: int, patch: int) -> int:
    """OPENSSL_VERSION_NUMBER as OpenSSL 3 and later encode it: 0xMNN00PP0."""
    return major << 28 | minor << 20 | patch << 4


# ------------------------------------------------------------------ version numbers


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0x30000130, "3.0.19"),
        (0x30500040, "3.5.4"),
        (0x30600000, "3.6.0"),
        (0x40100000, "4.1.0"),
        (0x300000F0, "3.0.15"),
        (0x1010117F, "1.1.1w"),
        (0x1000215F, "1.0.2u"),
        (0x1010100F, "1.1.1"),
    ],
)
def test_format_version(number: int, text: str) -> None:
    assert format_version(number) == text


def test_v3_helper_matches_the_encoding() -> None:
    assert v3(3, 0, 19) == 0x30000130
    assert v3(3, 5, 4) == 0x30500040


@pytest.mark.parametrize(
    ("built", "running"),
    [
        (v3(3, 0, 19), v3(3, 0, 19)),  # the same release
        (v3(3, 0, 2), v3(3, 0, 19)),  # newer patch level at run time
        (v3(3, 0, 19), v3(3, 5, 0)),  # newer minor: OpenSSL 3 minors add, never remove
        (v3(3, 5, 4), v3(3, 6, 0)),
        (v3(3, 5, 15), v3(3, 6, 1)),  # patch 15 (0xF0) must not outweigh the minor
    ],
)
def test_runtime_same_or_newer_is_accepted(built: int, running: int) -> None:
    check_runtime_version(built, running)  # returns (does not raise)


FIX = (
    "rebuild dtls_ossl against the OpenSSL that runs (`pip install --force-reinstall "
    "--no-cache-dir .` without CFLAGS/LDFLAGS), or load the one it was built against first "
    "(LD_LIBRARY_PATH=<its lib directory>; Python's ssl and hashlib load the system libssl)"
)


@pytest.mark.parametrize(
    ("built", "running", "built_text", "running_text"),
    [
        (v3(3, 5, 4), v3(3, 0, 19), "3.5.4", "3.0.19"),  # Debian's 3.5 headers, system 3.0
        (v3(3, 6, 0), v3(3, 5, 15), "3.6.0", "3.5.15"),  # higher patch, lower minor
        (v3(3, 0, 19), v3(3, 0, 2), "3.0.19", "3.0.2"),  # older patch level
        (v3(4, 1, 0), v3(3, 6, 0), "4.1.0", "3.6.0"),  # older major
        (v3(3, 0, 19), v3(4, 1, 0), "3.0.19", "4.1.0"),  # another major: another ABI
    ],
)
def test_runtime_older_or_other_major_is_refused(
    built: int, running: int, built_text: str, running_text: str
) -> None:
    with pytest.raises(ImportError) as info:
        check_runtime_version(built, running)
    assert str(info.value) == (
        f"dtls_ossl was built against OpenSSL {built_text} but OpenSSL {running_text} is the "
        f"one loaded at run time: {FIX}"
    )


def test_runtime_before_3_0_is_refused() -> None:
    with pytest.raises(ImportError) as info:
        check_runtime_version(v3(3, 0, 0), 0x1010117F)
    assert str(info.value) == f"dtls_ossl needs OpenSSL >= 3.0 at run time, found 1.1.1w: {FIX}"


def test_the_loaded_binding_passed_the_check() -> None:
    assert openssl_build_version_number() == int(lib.OPENSSL_VERSION_NUMBER)
    assert openssl_version_number() == int(lib.OpenSSL_version_num())
    assert openssl_version_number() >= openssl_build_version_number() >= v3(3, 0, 0)


# --------------------------------------------------------------------------- --version


def expected_version_line() -> str:
    built = int(lib.OPENSSL_VERSION_NUMBER)
    running = ffi.string(lib.OpenSSL_version(lib.OPENSSL_VERSION)).decode("ascii")
    return (
        f"dtls-ossl {dtls_ossl.__version__} (built against OpenSSL "
        f"{built >> 28}.{built >> 20 & 0xFF}.{built >> 4 & 0xFF}, running {running})"
    )


def test_version_option_prints_both_openssl_versions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (expected_version_line() + "\n", "")
    assert expected_version_line().startswith("dtls-ossl 0.")
    assert f"running OpenSSL {format_version(openssl_version_number())} " in out


def test_version_option_is_one_line_at_any_terminal_width() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dtls_ossl", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "40"},
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        expected_version_line() + "\n",
        "",
    )


# ---------------------------------------------------------- a tree without the binding


def copy_without_binding(dest: Path) -> Path:
    """Copy the package, minus compiled files and caches, under dest; return dest."""
    shutil.copytree(
        ROOT / "dtls_ossl",
        dest / "dtls_ossl",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.c", "node_modules"),
    )
    assert not list((dest / "dtls_ossl").glob("_openssl*.so"))
    return dest


# Run with -I (no PYTHONPATH, no current directory on sys.path) and with the copy first on
# sys.path. A development machine may have an editable install whose finder would locate the
# compiled module of another checkout for any dtls_ossl.* name: drop it, as a fresh venv has none.
PRELUDE = """\
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if not f.__module__.startswith("__editable__")]
sys.path.insert(0, sys.argv.pop(1))
"""

ENTRY_POINTS = {
    "import-binding": "import dtls_ossl._binding",
    "lazy-attribute": "import dtls_ossl\ndtls_ossl.DtlsConnection",
    "connection-module": "import dtls_ossl.connection",
    "python-m-demo": "sys.argv = ['dtls-ossl', 'demo']\n"
    "runpy.run_module('dtls_ossl', run_name='__main__', alter_sys=True)",
}


def import_from(tree: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-c", PRELUDE + code, str(tree)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tree,
        check=False,
    )


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_source_tree_without_binding_says_how_to_build_it(tmp_path: Path, entry: str) -> None:
    tree = copy_without_binding(tmp_path / "clone")
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    result = import_from(tree, ENTRY_POINTS[entry])
    assert result.returncode == 1
    assert result.stdout == ""
    package = (tree / "dtls_ossl").resolve()
    assert result.stderr.splitlines()[-1] == (
        "ImportError: dtls_ossl: the compiled OpenSSL binding is missing: "
        f"{package} has no _openssl{EXTENSION_SUFFIXES[0]}, so it is a source tree that was not "
        f"built for this Python. Build it in place with `pip install -e {package.parent}`, or, "
        "after `pip install .`, run the installed `dtls-ossl` command or Python from another "
        "directory so that the installed package is imported"
    )
    assert "cannot import name" not in result.stderr
    assert "During handling" not in result.stderr


def test_installed_package_without_binding_says_reinstall(tmp_path: Path) -> None:
    tree = copy_without_binding(tmp_path / "site-packages")
    result = import_from(tree, ENTRY_POINTS["import-binding"])
    assert result.returncode == 1
    package = (tree / "dtls_ossl").resolve()
    assert result.stderr.splitlines()[-1] == (
        "ImportError: dtls_ossl: the compiled OpenSSL binding is missing: "
        f"{package} has no _openssl{EXTENSION_SUFFIXES[0]}; reinstall it for this Python with "
        "`pip install --force-reinstall dtls_ossl`"
    )


def test_binding_that_fails_to_load_names_the_cause_and_the_fix(tmp_path: Path) -> None:
    tree = copy_without_binding(tmp_path / "clone")
    module = tree / "dtls_ossl" / f"_openssl{EXTENSION_SUFFIXES[0]}"
    # dlopen fails here, as it does on a missing OPENSSL_3.x symbol version.
    module.write_bytes(b"not a shared object\n" * 256)
    result = import_from(tree, ENTRY_POINTS["import-binding"])
    assert result.returncode == 1
    package = (tree / "dtls_ossl").resolve()
    last = result.stderr.splitlines()[-1]
    prefix = f"ImportError: dtls_ossl: loading the compiled OpenSSL binding from {package} failed ("
    suffix = (
        "). If it names an OPENSSL_ symbol version, the module was built against a newer OpenSSL "
        "than the libssl/libcrypto that was loaded: run with LD_LIBRARY_PATH set to the lib "
        "directory of the OpenSSL it was built against, or rebuild it against the OpenSSL that "
        "runs (`pip install --force-reinstall --no-cache-dir .` without CFLAGS/LDFLAGS)"
    )
    assert last.startswith(prefix), last
    assert last.endswith(suffix), last
    assert last[len(prefix) : -len(suffix)] == f"{module}: invalid ELF header"


def test_import_without_binding_stays_lazy(tmp_path: Path) -> None:
    """``import dtls_ossl`` alone does not need the binding (it loads on first use)."""
    tree = copy_without_binding(tmp_path / "clone")
    result = import_from(tree, "import dtls_ossl\nprint(dtls_ossl.__version__)")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        dtls_ossl.__version__ + "\n",
        "",
    )


# ---------------------------------------------------------------------- build time


def test_build_refuses_openssl_older_than_3_in_one_line(tmp_path: Path) -> None:
    headers = tmp_path / "include" / "openssl"
    headers.mkdir(parents=True)
    (headers / "opensslv.h").write_text(
        "#define OPENSSL_VERSION_NUMBER 0x1010117fL\n"
        '#define OPENSSL_VERSION_TEXT "OpenSSL 1.1.1w  11 Sep 2023"\n'
    )
    env = {**os.environ, "CFLAGS": f"-I{tmp_path / 'include'}"}
    result = subprocess.run(
        [sys.executable, "-c", "import build_ffi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: dtls_ossl needs OpenSSL >= 3.0, but the headers found are OpenSSL 1.1.1w  "
        "11 Sep 2023: install libssl-dev (Debian/Ubuntu) or openssl-devel (Fedora/RHEL) of "
        "OpenSSL 3, or point CFLAGS/LDFLAGS at an OpenSSL >= 3.0\n"
    )


@pytest.mark.timeout(150)  # compiles the binding (about 2 s when idle)
def test_module_built_against_newer_headers_refuses_the_older_openssl(tmp_path: Path) -> None:
    """The issue's case end to end: compiled against 3.N+1 headers, loaded with 3.N."""
    running = openssl_version_number()
    major, minor, patch = running >> 28, running >> 20 & 0xFF, running >> 4 & 0xFF
    overlay = tmp_path / "include" / "openssl"
    overlay.mkdir(parents=True)
    (overlay / "opensslv.h").write_text(
        "#include_next <openssl/opensslv.h>\n"
        "#undef OPENSSL_VERSION_MINOR\n"
        f"#define OPENSSL_VERSION_MINOR {minor + 1}\n"
    )
    tree = copy_without_binding(tmp_path / "clone")
    shutil.copy(ROOT / "build_ffi.py", tree / "build_ffi.py")
    shutil.copytree(ROOT / "_cffi_src", tree / "_cffi_src")
    build = subprocess.run(
        [sys.executable, "build_ffi.py"],
        cwd=tree,
        env={**os.environ, "CFLAGS": f"-I{tmp_path / 'include'}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    result = import_from(tree, ENTRY_POINTS["import-binding"])
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"ImportError: dtls_ossl was built against OpenSSL {major}.{minor + 1}.{patch} but "
        f"OpenSSL {major}.{minor}.{patch} is the one loaded at run time: {FIX}"
    )


def test_build_accepts_the_system_openssl_3() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import build_ffi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


_BAD_SETUP = """
import dtls_ossl._binding  # adds the C functions to _openssl; connection.py is not imported
import dtls_ossl._openssl as m
class NoSlots:
    __slots__ = ("a",)
for args in [(1,) + (NoSlots,) * 4 + ({},), (NoSlots,) * 5 + ({},)]:
    try:
        m.step_setup(*args)
    except Exception as e:
        print(type(e).__name__, e)
"""


def test_step_setup_refuses_bad_classes_with_an_error() -> None:
    """The C setup names what is wrong (it once returned -1 without an exception set)."""
    out = subprocess.run(
        [sys.executable, "-c", _BAD_SETUP], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert out[0] == "TypeError step_setup: 1 is not a class"
    assert out[1].startswith("AttributeError ") and "'_ref'" in out[1]  # the first slot sought
    assert len(out) == 2
