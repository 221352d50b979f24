"""The README's code blocks run as written (so the documentation cannot rot).

A ``python`` block right after an ``<!-- excerpt: PATH -->`` comment is an excerpt of that
file instead (the file itself is run by test_examples.py): ``...`` lines mark what is left
out, and every other line must be the file's text, in order. The error hierarchy, the logger
names and the command lines of the CLI section are checked against the code.
"""

from __future__ import annotations

import ast
import pathlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import dtls_ossl.exceptions
from dtls_ossl.cli import COMMANDS, build_parser

ROOT = pathlib.Path(__file__).resolve().parent.parent
README_TEXT = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"(?:<!-- excerpt: (?P<source>\S+) -->\n)?```python\n(?P<code>.*?)```", re.S)
BLOCKS = [m["code"] for m in FENCE.finditer(README_TEXT) if m["source"] is None]
EXCERPTS = [(m["source"], m["code"]) for m in FENCE.finditer(README_TEXT) if m["source"]]


def section(title: str) -> str:
    """The README text from the ``## title`` heading to the next ``## `` heading."""
    start = README_TEXT.index(f"\n## {title}\n")
    end = README_TEXT.find("\n## ", start + 1)
    return README_TEXT[start : end if end != -1 else None]


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 1
    assert [source for source, _ in EXCERPTS] == ["examples/sansio_udp.py"]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), {"__name__": "readme"})
    if "print(" in BLOCKS[index] and "asyncio.run" in BLOCKS[index]:
        assert "b'hello'" in capsys.readouterr().out


def excerpt_pieces(code: str) -> list[str]:
    """Split an excerpt at its ``...`` lines into the runs of lines that must be verbatim."""
    pieces = re.split(r"^[ \t]*\.\.\.[ \t]*$", code, flags=re.M)
    return [p.strip("\n") for p in pieces if p.strip()]


@pytest.mark.parametrize(("source", "code"), EXCERPTS, ids=[s for s, _ in EXCERPTS])
def test_readme_excerpt_is_the_example_text(source: str, code: str) -> None:
    ast.parse(code)  # valid Python as shown, elisions included
    text = (ROOT / source).read_text(encoding="utf-8")
    position = 0
    pieces = excerpt_pieces(code)
    assert len(pieces) >= 3
    for piece in pieces:
        found = text.find(piece + "\n", position)
        assert found != -1, f"not in {source} (after offset {position}):\n{piece}"
        position = found + len(piece)


def test_excerpt_pieces_split_on_elisions_only() -> None:
    code = "a = 1\n...\n    b = 2\n\n    ...\nc = '...'\n"
    assert excerpt_pieces(code) == ["a = 1", "    b = 2", "c = '...'"]


def error_tree() -> str:
    """Render the DtlsError hierarchy of dtls_ossl.exceptions as the README shows it."""
    lines = ["DtlsError"]

    def walk(cls: type[BaseException], prefix: str) -> None:
        subs = [c for c in cls.__subclasses__() if c.__module__ == dtls_ossl.exceptions.__name__]
        for i, sub in enumerate(subs):
            last = i == len(subs) - 1
            extra = [b.__name__ for b in sub.__bases__ if not issubclass(b, dtls_ossl.DtlsError)]
            also = f" (also a {', '.join(extra)})" if extra else ""
            lines.append(f"{prefix}{'└── ' if last else '├── '}{sub.__name__}{also}")
            walk(sub, prefix + ("    " if last else "│   "))

    walk(dtls_ossl.DtlsError, "")
    return "\n".join(lines) + "\n"


def test_readme_error_hierarchy_is_complete() -> None:
    tree = error_tree()
    assert "ConnectionClosedError" in tree and "IdleTimeoutError" in tree
    assert f"```text\n{tree}```" in section("Using it")


def test_readme_names_every_logger() -> None:
    names = set()
    for path in (ROOT / "dtls_ossl").rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        names.update(re.findall(r"getLogger\(\"([\w.]+)\"\)", source))
        names.update(re.findall(r"debug_logger\(\"([\w.]+)\"\)", source))
        if re.search(r"^\s+log = .*debug_logger\(__name__\)", source, re.M):
            names.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert names >= {"dtls_ossl.aio", "dtls_ossl.cli", "dtls_ossl.connection"}
    documented = set(re.findall(r"^- `(dtls_ossl[\w.]*)`:", section("Using it"), re.M))
    assert documented == names


SAMPLE_FINGERPRINT = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32)


def cli_command_lines() -> list[list[str]]:
    """Every ``dtls-ossl ...`` command in the CLI section's shell blocks, as argv lists."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section("Command line"), re.S):
        # "$(dtls-ossl fingerprint x.pem)": a command of its own, and a fingerprint in its place
        inner = re.findall(r"\$\((dtls-ossl [^)]*)\)", block)
        block = re.sub(r"\$\(dtls-ossl fingerprint [^)]*\)", SAMPLE_FINGERPRINT, block)
        for line in [*inner, *block.replace("\\\n", " ").splitlines()]:
            for part in re.split(r"\s[|&]\s?", line):
                words = shlex.split(part, comments=True)
                if words and words[0] == "dtls-ossl":
                    commands.append(words[1:])
    return commands


def test_readme_cli_section_shows_every_command_and_each_parses() -> None:
    commands = cli_command_lines()
    assert {argv[0] for argv in commands if not argv[0].startswith("-")} == {
        c.name for c in COMMANDS
    }
    for argv in commands:
        if argv[0] == "conformance":
            # An alias: the harness's own parser reads what follows (its own distribution).
            from dtls_ossl_conformance.cli import SUBCOMMANDS
            from dtls_ossl_conformance.cli import build_parser as harness_parser

            rest = argv[1:] if argv[1:2] and argv[1] in SUBCOMMANDS else ["run", *argv[1:]]
            harness_parser().parse_args(rest)
            continue
        build_parser().parse_args(argv)  # SystemExit (status 2) on an unknown flag or value


@pytest.mark.timeout(60)
@pytest.mark.parametrize("index", [0, 2], ids=["cert-fingerprint", "demo"])
def test_readme_cli_blocks_without_a_fixed_port_run(index: int, tmp_path: Path) -> None:
    """The cert/fingerprint and demo blocks run as written (the server block binds port 4444)."""
    block = re.findall(r"```sh\n(.*?)```", section("Command line"), re.S)[index]
    assert "4444" not in block and "conformance" not in block
    script = re.sub(r"\bdtls-ossl\b", f"{shlex.quote(sys.executable)} -m dtls_ossl", block)
    proc = subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=50
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if index == 0:
        server, client, printed = proc.stdout.splitlines()
        assert re.fullmatch(r"a=fingerprint:sha-256 (?:[0-9A-F]{2}:){31}[0-9A-F]{2}", server)
        assert printed == server != client  # `fingerprint server.pem` repeats what `cert` said
    else:
        assert proc.stdout.count("\nOK: ") == 2
