"""The C of dtls_ossl._openssl lives in _cffi_src/, not in build_ffi.py (issue 10).

engine.c (the OpenSSL glue) has no Python.h and compiles on its own; fastpath.c is the only file
tied to CPython; both compile alone with the module's warning flags; the built module exports
PyInit__openssl and nothing else. ci/cfiles.sh runs the same compiles plus clang-format.
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


def build_ffi() -> ModuleType:
    """build_ffi.py as a module (it is not a package module; importing it only builds a cdef)."""
    spec = importlib.util.spec_from_file_location("build_ffi_under_test", ROOT / "build_ffi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_c_files_are_the_ones_build_ffi_reads() -> None:
    assert C_FILES == ["dtls_ossl.h", "engine.c", "fastpath.c"]
    assert sorted(build_ffi().C_FILES) == C_FILES


def test_python_h_only_in_fastpath() -> None:
    including = [
        name
        for name in C_FILES
        if re.search(r"#include\s*[<\"]Python\.h", (SRC / name).read_text())
    ]
    assert including == ["fastpath.c"]


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


@pytest.mark.parametrize("name", ["engine.c", "fastpath.c"])
def test_c_file_compiles_alone_with_the_warning_flags(name: str, tmp_path: Path) -> None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    if shutil.which(cc[0]) is None:
        pytest.skip(f"no C compiler ({cc[0]})")
    module = build_ffi()
    assert {"-Wall", "-Wextra", "-Wconversion", "-fvisibility=hidden"} <= set(module.COMPILE_ARGS)
    includes = [f"-I{d}" for d in module._pkg_config()[0]]
    if name == "fastpath.c":
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
