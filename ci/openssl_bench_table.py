"""The table of ci/openssl-bench.sh: one row per OpenSSL, from each run's benchmark output.

    python ci/openssl_bench_table.py LABEL=DIR [LABEL=DIR ...]

Each DIR holds one run's ``handshake.txt`` and ``records.txt`` (the benchmarks' stdout), and,
where the benchmark has a ``--json FILE`` option, ``handshake.json`` and ``records.json``; an
optional ``notes.txt`` adds lines to that run's notes (why callgrind did not run, say). Prints
the Markdown table and its notes. A figure is taken from the JSON when the JSON has it, else
from the text: the benchmarks' output is read tolerantly (target lines by the regex below, the
rate tables by their header's column positions, the callgrind lines by their labels), so a
change of layout loses a figure, shown as "-", rather than the table.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

C = "C"
DTLS_OSSL = "dtls_ossl"
TARGET = re.compile(r"\[(PASS|FAIL|INCONCLUSIVE)\] (.*?): ([0-9.]+)")
_INTERVAL = re.compile(r"95% CI of the median ([0-9.]+)\.\.([0-9.]+)")
_CALLGRIND = re.compile(
    r"per (handshake pair|\d+-byte record)\s+(\S+(?: batch x\d+)?)\s+([\d,]+)\s+C\s+([\d,]+)"
)
_CALLGRIND_SKIPPED = re.compile(r"Callgrind instructions: skipped \((.*)\)")
_CALLGRIND_UNAVAILABLE = re.compile(r"^\s+(handshake|records(?:-batch)?)\s+unavailable: (.*)$")
_IMPLEMENTATION = re.compile(r"^\s+(C|dtls_ossl)\s{2,}(?:OpenSSL (\S+).*|unavailable: (.*))$")
_PYTHON = re.compile(r"^Machine: .*python (\S+)")
_NUMBER = re.compile(r"^-?[\d,]+(?:\.\d+)?$")
_NAME_KEYS = ("row", "name", "implementation", "impl", "label")
_VALUE_KEYS = ("median", "value", "rate")
_VERDICT_KEYS = ("verdict", "status", "result")
_RATIO_KEYS = ("ratio", "median_ratio", "value", "median")


@dataclass
class Run:
    """What one benchmark's output says (the parts the table uses)."""

    openssl: str = ""
    python: str = ""
    like_for_like: bool | None = None
    """the configuration check's verdict on dtls_ossl against C (None: not found)"""
    target_lines: list[str] = field(default_factory=list)
    targets: dict[str, tuple[str, float]] = field(default_factory=dict)
    """target label -> (PASS, FAIL or INCONCLUSIVE, the figure on its line)"""
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """target label -> the 95 % confidence interval of its median ratio, where printed"""
    rates: dict[str, float] = field(default_factory=dict)
    """row of the rate table (C, dtls_ossl, ...) -> its median"""
    instructions: dict[str, tuple[float, float]] = field(default_factory=dict)
    """callgrind mode (handshake, records, records-batch) -> (dtls_ossl, C) per unit"""
    notes: list[str] = field(default_factory=list)
    source: str = "text"


def _number(text: str) -> float | None:
    text = text.strip()
    return float(text.replace(",", "")) if _NUMBER.match(text) else None


def _rate_tables(lines: list[str]) -> Iterator[tuple[str, str, float]]:
    """Yield (unit, row, median) for every row of every rate table.

    A table is a header line starting with ``implementation`` whose columns are padded to a
    common width, then its rows up to a blank line; the rate is the column whose heading ends
    in ``/s``, read at that heading's position in each row.
    """
    for i, line in enumerate(lines):
        head = line.strip()
        if not head.startswith("implementation"):
            continue
        unit_at = next(
            (m for m in re.finditer(r"\S+(?: \S+)*", line) if m.group().endswith("/s")), None
        )
        if unit_at is None:
            continue
        for row in lines[i + 1 :]:
            if not row.strip():
                break
            name = re.split(r"\s{2,}", row.strip())[0]
            cell = row[unit_at.start() :].split()
            value = _number(cell[0]) if cell else None
            if value is not None:
                yield unit_at.group(), name, value


def parse_text(text: str) -> Run:
    """Read a benchmark's stdout: target lines, rate tables, callgrind lines, OpenSSL."""
    run = Run()
    lines = text.splitlines()
    for line in lines:
        if py := _PYTHON.match(line):
            run.python = py.group(1)
        if line.strip().startswith(f"{DTLS_OSSL}: identical to C"):
            run.like_for_like = True
        m = _IMPLEMENTATION.match(line)
        if m and m.group(1) == C:
            if m.group(2):
                run.openssl = run.openssl or m.group(2)
            else:
                run.notes.append(f"C baseline unavailable: {m.group(3)}")
        elif m and m.group(1) == DTLS_OSSL and m.group(3):
            run.notes.append(f"dtls_ossl unavailable: {m.group(3)}")
        if t := TARGET.search(line):
            run.targets[t.group(2)] = (t.group(1), float(t.group(3).rstrip(".")))
            if ci := _INTERVAL.search(line):
                run.intervals[t.group(2)] = (float(ci.group(1)), float(ci.group(2)))
            if "x C" in t.group(2):
                run.target_lines.append(line.strip())
        if cg := _CALLGRIND.search(line):
            unit, label = cg.group(1), cg.group(2)
            mode = "handshake" if unit == "handshake pair" else "records"
            if "batch" in label:
                mode = "records-batch"
            lib, c = (float(cg.group(k).replace(",", "")) for k in (3, 4))
            run.instructions[mode] = (lib, c)
        if sk := _CALLGRIND_SKIPPED.search(line):
            run.notes.append(f"callgrind skipped: {sk.group(1)}")
        if un := _CALLGRIND_UNAVAILABLE.match(line):
            run.notes.append(f"callgrind {un.group(1)} unavailable: {un.group(2)}")
        if "NOT like-for-like with C" in line and line.strip().startswith(DTLS_OSSL):
            run.like_for_like = False
            run.notes.append(line.strip())
    for _unit, name, value in _rate_tables(lines):
        run.rates.setdefault(name, value)
    return run


def _dicts(obj: object) -> Iterator[dict[str, object]]:
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _dicts(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _dicts(v)


def _first(
    d: dict[str, object], keys: tuple[str, ...], kind: type | tuple[type, ...]
) -> object | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, kind) and not isinstance(v, bool):
            return v
    return None


def parse_json(obj: object) -> Run:
    """Read a benchmark's ``--json`` file, whatever its nesting.

    Rates: any object naming a row (``row``/``name``/...) with a numeric ``median`` (or
    ``value``, ``rate``). Targets: any object with a PASS/FAIL/INCONCLUSIVE ``verdict`` (or
    ``status``, ``result``), a label and a numeric ratio. The OpenSSL of C: an object named
    ``C`` with an ``openssl`` string. Callgrind figures are left to the text.
    """
    run = Run(source="json")
    for d in _dicts(obj):
        name = _first(d, _NAME_KEYS, str)
        verdict = _first(d, _VERDICT_KEYS, str)
        if isinstance(verdict, str) and verdict.strip().upper() in ("PASS", "FAIL", "INCONCLUSIVE"):
            ratio = _first(d, _RATIO_KEYS, (int, float))
            label = _first(d, ("label", "target", "name"), str)
            if isinstance(ratio, int | float) and isinstance(label, str):
                run.targets[label] = (verdict.strip().upper(), float(ratio))
                low, high = d.get("ci_low"), d.get("ci_high")
                if isinstance(low, int | float) and isinstance(high, int | float):
                    run.intervals[label] = (float(low), float(high))
            continue
        if isinstance(name, str):
            value = _first(d, _VALUE_KEYS, (int, float))
            if isinstance(value, int | float):
                run.rates.setdefault(name, float(value))
            ossl = d.get("openssl")
            if name == C and isinstance(ossl, str) and not run.openssl:
                run.openssl = ossl.replace("OpenSSL ", "").split(" ")[0]
    return run


def load(directory: Path, bench: str) -> Run:
    """One benchmark's figures from DIR: the text, overridden by the JSON where it has them."""
    txt = directory / f"{bench}.txt"
    run = parse_text(txt.read_text(errors="replace")) if txt.exists() else Run()
    if not txt.exists():
        run.notes.append("no output")
    js = directory / f"{bench}.json"
    if js.exists():
        try:
            from_json = parse_json(json.loads(js.read_text()))
        except ValueError as exc:
            run.notes.append(f"{bench}.json unreadable ({exc}); figures from the text")
        else:
            if from_json.rates or from_json.targets:
                run.source = "json"
            run.rates.update(from_json.rates)
            run.targets.update(from_json.targets)
            run.intervals.update(from_json.intervals)
            run.openssl = from_json.openssl or run.openssl
    if run.like_for_like is None and txt.exists():
        run.notes.append("no configuration check verdict for dtls_ossl against C in the output")
    return run


def _label(run: Run, words: tuple[str, ...], exclude: tuple[str, ...]) -> str | None:
    for label in run.targets:
        if all(w in label for w in words) and not any(x in label for x in exclude):
            return label
    return None


def target(run: Run, *words: str, exclude: tuple[str, ...] = ("pyOpenSSL",)) -> float | None:
    """Return the figure of the first target whose label has every word and none excluded."""
    label = _label(run, words, exclude)
    return None if label is None else run.targets[label][1]


def ratio_cell(run: Run, *words: str, exclude: tuple[str, ...] = ("pyOpenSSL",)) -> str:
    """Render a ratio target's cell: its figure, and its median's 95 % interval if printed."""
    label = _label(run, words, exclude)
    if label is None:
        return "-"
    if label not in run.intervals:
        return _fmt(run.targets[label][1], 2)
    # Three decimals: the intervals are often narrower than 0.01.
    low, high = run.intervals[label]
    return f"{run.targets[label][1]:.3f} [{low:.3f}..{high:.3f}]"


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _instr(run: Run, mode: str) -> str:
    pair = run.instructions.get(mode)
    if pair is None:
        return "-"
    lib, c = pair
    return f"{_fmt(c)} / {_fmt(lib)} ({lib / c:.3f} x)"


HEADER = (
    "| OpenSSL | C handshakes/s | dtls_ossl handshakes/s | ratio | C records/s | "
    "dtls_ossl records/s (per datagram) | ratio | batch ratio | "
    "instructions per pair C / dtls_ossl | instructions per record C / dtls_ossl |"
)


def row(label: str, hs: Run, rec: Run) -> str:
    """One Markdown row: LABEL names the run (host, a Debian suite)."""
    version = hs.openssl or rec.openssl or "?"
    python = hs.python or rec.python
    cells = [
        f"{version} ({label}{', Python ' + python if python else ''})",
        _fmt(hs.rates.get(C)),
        _fmt(hs.rates.get(DTLS_OSSL)),
        ratio_cell(hs, "x C"),
        _fmt(rec.rates.get(C)),
        _fmt(rec.rates.get(DTLS_OSSL)),
        ratio_cell(rec, "x C", exclude=("pyOpenSSL", "batch")),
        ratio_cell(rec, "batch", "x C"),
        _instr(hs, "handshake"),
        _instr(rec, "records"),
    ]
    return "| " + " | ".join(cells) + " |"


def table(runs: list[tuple[str, Path]]) -> str:
    """Render the Markdown table and the runs' notes."""
    rows = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    notes: list[str] = []
    for label, directory in runs:
        hs, rec = load(directory, "handshake"), load(directory, "records")
        rows.append(row(label, hs, rec))
        extra = directory / "notes.txt"
        mine = [n for n in extra.read_text().splitlines() if n.strip()] if extra.exists() else []
        mine += [f"handshake: {n}" for n in dict.fromkeys(hs.notes)]
        mine += [f"handshake target: {n}" for n in hs.target_lines]
        mine += [f"records: {n}" for n in dict.fromkeys(rec.notes)]
        mine += [f"records target: {n}" for n in rec.target_lines]
        if "json" in (hs.source, rec.source):
            mine.append(f"figures read from --json (handshake: {hs.source}, records: {rec.source})")
        notes += [f"- {label}: {n}" for n in mine]
    return "\n".join(rows) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def main(argv: list[str]) -> int:
    """Print the table of the runs named ``LABEL=DIR`` on the command line."""
    runs: list[tuple[str, Path]] = []
    for arg in argv:
        label, sep, directory = arg.partition("=")
        if not sep:
            print(__doc__, file=sys.stderr)
            return 2
        runs.append((label, Path(directory)))
    if not runs:
        print(__doc__, file=sys.stderr)
        return 2
    sys.stdout.write(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
