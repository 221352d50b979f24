"""The C of dtls_ossl._openssl lives in _cffi_src/, not in build_ffi.py (issue 10).

One concern per file, none over 800 lines, and build_ffi.py reads every one of them. The OpenSSL
glue (engine.c, screen.c, driver.c) has no Python.h; only the Python-facing files include it
(through pyglue.h). Every .c file compiles alone with the module's warning flags; the built
module, one translation unit, exports PyInit__openssl and nothing else. ci/cfiles.sh runs the
same checks and compiles, plus clang-format.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

from dtls_ossl import _openssl

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "_cffi_src"
C_FILES = sorted(p.name for p in SRC.glob("*.[ch]"))
# The files tied to CPython; ci/cfiles.sh lists the same ones.
PYTHON_FACING = ["conninit.c", "fastpath.c", "module.c", "pool.c", "pyglue.h", "step.c"]
OPENSSL_ONLY = ["driver.c", "dtls_ossl.h", "engine.c", "screen.c"]
MAX_LINES = 800  # ../shared/ARCHITECTURE.md: files by concern, under 800 lines


def build_ffi() -> ModuleType:
    """build_ffi.py as a module (it is not a package module; importing it only builds a cdef)."""
    spec = importlib.util.spec_from_file_location("build_ffi_under_test", ROOT / "build_ffi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_c_files_are_the_ones_build_ffi_reads() -> None:
    """No file forgotten: build_ffi.py reads (and compiles) every file in _cffi_src/."""
    assert sorted(PYTHON_FACING + OPENSSL_ONLY) == C_FILES
    module = build_ffi()
    assert sorted(module.C_FILES) == C_FILES
    assert len(set(module.C_FILES)) == len(module.C_FILES)
    # One translation unit, every .c file once in C_FILES order, with DTLSOSSL_ONE_TU: the
    # names the files share with one another stay static there (dtls_ossl.h: DTLSOSSL_SHARED).
    included = re.findall(r'#include "([^"]+)"', module.SOURCE)
    assert included == ["dtls_ossl.h", *(n for n in module.C_FILES if n.endswith(".c"))]
    assert module.SOURCE.startswith("#define DTLSOSSL_ONE_TU 1\n")


@pytest.mark.parametrize("name", C_FILES)
def test_c_file_is_under_the_line_limit(name: str) -> None:
    assert len((SRC / name).read_text().splitlines()) < MAX_LINES


def test_python_h_only_in_the_python_facing_files() -> None:
    including = [
        name
        for name in C_FILES
        if re.search(r"#include\s*[<\"](Python|pyglue)\.h", (SRC / name).read_text())
    ]
    assert including == PYTHON_FACING


def test_build_ffi_stays_short_and_holds_no_c_bodies() -> None:
    text = (ROOT / "build_ffi.py").read_text()
    assert len(text.splitlines()) <= 300
    # A C function body ("{" alone on a line after a signature) belongs in _cffi_src/.
    assert not re.search(r"\)\n\{\n", text)
    assert "Section" not in text


def test_module_exports_only_its_init() -> None:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run(
        [nm, "-D", "--defined-only", _openssl.__file__],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert [line.split()[-1] for line in out.splitlines() if line.strip()] == ["PyInit__openssl"]


@pytest.mark.parametrize("name", [n for n in C_FILES if n.endswith(".c")])
def test_c_file_compiles_alone_with_the_warning_flags(name: str, tmp_path: Path) -> None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    if shutil.which(cc[0]) is None:
        pytest.skip(f"no C compiler ({cc[0]})")
    module = build_ffi()
    assert {"-Wall", "-Wextra", "-Wconversion", "-fvisibility=hidden"} <= set(module.COMPILE_ARGS)
    includes = [f"-I{d}" for d in module._pkg_config()[0]]
    if name in PYTHON_FACING:
        includes.append(f"-I{sysconfig.get_paths()['include']}")
    result = subprocess.run(
        [
            *cc,
            *module.COMPILE_ARGS,
            "-Werror",
            *includes,
            "-c",
            str(SRC / name),
            "-o",
            str(tmp_path / "out.o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
