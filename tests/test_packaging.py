"""What a newcomer meets first: the repository's root, and the package namespace.

The Quickstart itself is run verbatim by ci/quickstart.sh in a fresh clone and venv (too slow
for the test suite); here, the pieces that can drift without it noticing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import dtls_ossl

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent

# Everything the project means to have at the top of the repository.
ALLOWED_ROOT = {
    ".ci",
    ".clang-format",
    ".gitignore",
    "MANIFEST.in",
    "README.md",
    "_cffi_src",
    "benchmarks",
    "build_ffi.py",
    "ci",
    "conformance",
    "deploy",
    "dtls_ossl",
    "examples",
    "pyproject.toml",
    "setup.py",
    "tests",
}
# Without these it is not this project (examples/ may come and go with the documentation).
REQUIRED_ROOT = ALLOWED_ROOT - {"examples", "deploy"}


def tracked_root_entries() -> set[str]:
    """Top-level names of the files git tracks here; skips when this is not a git checkout."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    top = subprocess.run(
        [git, "rev-parse", "--show-toplevel"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        pytest.skip("not a git checkout of dtls_ossl (e.g. an unpacked sdist)")
    listed = subprocess.run(
        [git, "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=30, check=True
    ).stdout
    return {name.split(b"/", 1)[0].decode() for name in listed.split(b"\0") if name}


def test_tracked_root_files_are_the_allowed_set() -> None:
    tracked = tracked_root_entries()
    assert sorted(tracked - ALLOWED_ROOT) == []  # strays such as a committed cli.err
    assert sorted(REQUIRED_ROOT - tracked) == []


def test_ci_runs_the_quickstart_first() -> None:
    """ci/run.sh runs ci/quickstart.sh before its own install, lint and test steps."""
    steps = [
        line.split()[1]
        for line in (ROOT / "ci" / "run.sh").read_text().splitlines()
        if line.startswith("step ") or line.startswith("  step ")
    ]
    assert steps[:3] == ["system-packages", "quickstart", "install"]
    assert steps[-4:] == ["pytest", "conformance", "conformance-targets", "conformance-wheels"]


def test_quickstart_commands_are_what_ci_runs() -> None:
    """The README's Quickstart lines as ci/quickstart.sh extracts them (the same awk program)."""
    script = (ROOT / "ci" / "quickstart.sh").read_text()
    program = script.split("awk '", 1)[1].split("'", 1)[0]
    lines = subprocess.run(
        ["awk", program, str(ROOT / "README.md")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    assert lines == [
        "pip install . && dtls-ossl demo",
        "pip install -e '.[test]' && python -m pytest",
    ]


# ------------------------------------------------------------ what the distributions hold


def test_sdist_holds_the_build_script_and_the_c(tmp_path: Path) -> None:
    """Without build_ffi.py and _cffi_src/ an sdist cannot build the extension."""
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    (archive,) = tmp_path.glob("dtls_ossl-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    c_files = {f"_cffi_src/{p.name}" for p in (ROOT / "_cffi_src").iterdir()}
    assert {"build_ffi.py", "setup.py", "pyproject.toml", *c_files} <= names


def test_wheel_holds_the_package_only(tmp_path: Path) -> None:
    """What build_py puts in a wheel: dtls_ossl and its data, never _cffi_src/ or build_ffi.py."""
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    top = {p.name for p in tmp_path.iterdir()}
    assert top == {"dtls_ossl"}
    assert not list(tmp_path.rglob("*.c")) and not list(tmp_path.rglob("*.h"))
    # The conformance harness is its own distribution (conformance/), not in the library's.
    assert not (tmp_path / "dtls_ossl" / "conformance").exists()
    assert not [p for p in tmp_path.rglob("*") if "conformance" in p.name]


def test_conformance_wheel_holds_the_harness_and_its_peer_sources(tmp_path: Path) -> None:
    """What build_py puts in dtls-ossl-conformance's wheel: the package and the Go/Node peers."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from setuptools import setup; setup()",
            "-q",
            "build_py",
            "--build-lib",
            str(tmp_path),
        ],
        cwd=ROOT / "conformance",
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert {p.name for p in tmp_path.iterdir()} == {"dtls_ossl_conformance"}
    files = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    package = "dtls_ossl_conformance"
    assert {
        f"{package}/cli.py",
        f"{package}/target.py",
        f"{package}/py.typed",
        f"{package}/go/pion_peer.go",
        f"{package}/node/werift_peer.js",
        f"{package}/node/package-lock.json",
    } <= files
    assert not [f for f in files if "node_modules" in f or "test" in f.split("/")[-1]]


def test_cli_does_not_import_the_harness() -> None:
    """``import dtls_ossl.cli`` pays nothing for the conformance harness (issue 13).

    An editable install of the harness adds its path finder at startup (a ``.pth`` file), for
    every program: that is pip's, not an import of the harness.
    """
    loaded = fresh_interpreter(
        "import json, sys, dtls_ossl.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "    if 'conformance' in m and not m.startswith('__editable__'))))"
    )
    # An editable install's import hook is loaded by site at startup, whoever imports what.
    assert isinstance(loaded, list)
    assert [m for m in loaded if not m.startswith("__editable__")] == []


# -------------------------------------------------------------------- the namespace


def fresh_interpreter(code: str) -> object:
    """Run code in a new interpreter (nothing imported yet); return the JSON it prints."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", ["aio", "webrtc"])
def test_subpackages_are_lazy_attributes(name: str) -> None:
    loaded = fresh_interpreter(
        "import json, sys, dtls_ossl\n"
        f"before = 'dtls_ossl.{name}' in sys.modules\n"
        f"module = dtls_ossl.{name}\n"
        f"print(json.dumps([before, module is sys.modules['dtls_ossl.{name}'], module.__name__]))"
    )
    assert loaded == [False, True, f"dtls_ossl.{name}"]


def test_subpackages_import_by_from() -> None:
    names = fresh_interpreter(
        "import json\nfrom dtls_ossl import aio, webrtc\n"
        "print(json.dumps([aio.DtlsEndpoint.__name__, webrtc.Certificate.__name__]))"
    )
    assert names == ["DtlsEndpoint", "Certificate"]


def test_dir_lists_only_the_public_names() -> None:
    listed = fresh_interpreter("import json, dtls_ossl\nprint(json.dumps(dir(dtls_ossl)))")
    assert listed == sorted(dtls_ossl.__all__)
    assert "aio" in listed and "webrtc" in listed
    assert [name for name in listed if name.startswith("_")] == ["__version__"]


def test_dir_stays_public_after_everything_is_loaded() -> None:
    for name in dtls_ossl.__all__:
        getattr(dtls_ossl, name)
    assert dir(dtls_ossl) == sorted(dtls_ossl.__all__)
    assert dir(dtls_ossl.webrtc) == sorted(dtls_ossl.webrtc.__all__)
    assert not {"annotations", "TYPE_CHECKING", "lazy_attributes", "exceptions"} & set(
        dir(dtls_ossl)
    )


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError) as info:
        getattr(dtls_ossl, "nope")  # noqa: B009 - mypy knows the name is missing
    assert str(info.value) == "module 'dtls_ossl' has no attribute 'nope'"
