"""Writers of a conformance run: live lines, the summary table, report.json and junit.xml."""

from __future__ import annotations

import json
import os
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from dtls_ossl_conformance._model import Availability, CellKind, CellResult, CheckStatus, Status

__all__ = ["RunReport", "cell_line", "summary", "write_json", "write_junit"]

_WORD = {Status.PASSED: "PASS", Status.FAILED: "FAIL", Status.SKIPPED: "SKIP"}


@dataclass
class RunReport:
    """Everything a run produced."""

    peers: dict[str, Availability]
    "Each peer asked for, in order, and whether it could run."
    results: list[CellResult] = field(default_factory=list)
    started: str = ""
    "ISO 8601 UTC time the run started."
    duration: float = 0.0
    our_version: str = ""
    "dtls_ossl and the OpenSSL it is bound to."

    def count(self, status: Status) -> int:
        """How many cells ended with ``status``."""
        return sum(r.status is status for r in self.results)

    @property
    def exit_status(self) -> int:
        """1 if any cell failed, else 0."""
        return 1 if self.count(Status.FAILED) else 0


def cell_line(
    index: int, total: int, result: CellResult, *, explain_skip: bool = True, peer_width: int = 9
) -> str:
    """Format the live line of one cell, e.g. ``[ 3/40] openssl  client  SRTP_...  PASS  0.12 s``.

    A failed cell is followed by its failed checks; a skipped one by its reason and install
    command when ``explain_skip`` (the runner explains each skipped peer once). The peer's name
    is padded to ``peer_width`` (the runner passes its longest).
    """
    spec = result.spec
    width = len(str(total))
    line = (
        f"[{index:>{width}}/{total}] {spec.peer:<{peer_width}} {spec.role.value:<7}"
        f"{spec.column:<23} {spec.key_type:<11} {_WORD[result.status]}  {result.duration:5.2f} s"
    )
    if result.status is Status.FAILED:
        bad = [c for c in result.checks if c.status is CheckStatus.FAIL]
        reasons = [f"{c.name}: {c.detail}" for c in bad] or [result.reason]
        line += "".join(f"\n        {r}" for r in reasons)
    elif result.status is Status.SKIPPED and explain_skip:
        line += f"\n        {result.reason}\n        install: {result.install}"
    return line


def _median_ms(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.median(known) * 1000:.0f} ms" if known else "-"


def summary(report: RunReport, out: TextIO) -> None:
    """Print the table of peers and the failed and skipped cells."""
    rows = [("peer", "version", "pass", "fail", "skip", "handshake (median)", "lossy (median)")]
    for name, avail in report.peers.items():
        mine = [r for r in report.results if r.spec.peer == name]
        passed = [r for r in mine if r.status is Status.PASSED and r.handshake_time is not None]
        times = [r.handshake_time for r in passed if r.spec.kind is not CellKind.LOSSY]
        lossy = [r.handshake_time for r in passed if r.spec.kind is CellKind.LOSSY]
        version = avail.version if avail.available else "not run"
        rows.append(
            (
                name,
                version[:48],
                str(sum(r.status is Status.PASSED for r in mine)),
                str(sum(r.status is Status.FAILED for r in mine)),
                str(sum(r.status is Status.SKIPPED for r in mine)),
                _median_ms(times),
                _median_ms(lossy),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print("", file=out)
    for i, row in enumerate(rows):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        print(line.rstrip(), file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    failed = [r for r in report.results if r.status is Status.FAILED]
    if failed:
        print("\nFailed cells:", file=out)
        for r in failed:
            bad = [f"{c.name}: {c.detail}" for c in r.checks if c.status is CheckStatus.FAIL]
            print(f"  {r.spec.id}: {'; '.join(bad) or r.reason}", file=out)
    skipped = {n: a for n, a in report.peers.items() if not a.available}
    if skipped:
        print("\nSkipped peers:", file=out)
        for n, a in skipped.items():
            print(f"  {n}: {a.reason}\n      install: {a.install}", file=out)
    print(
        f"\n{report.count(Status.PASSED)} passed, {report.count(Status.FAILED)} failed, "
        f"{report.count(Status.SKIPPED)} skipped in {report.duration:.1f} s",
        file=out,
    )


def _result_json(index: int, r: CellResult) -> dict[str, object]:
    spec = r.spec
    return {
        "index": index,
        "id": spec.id,
        "peer": spec.peer,
        "role": spec.role.value,
        "kind": spec.kind.value,
        "srtp_profile": spec.profile.openssl_name if spec.profile else None,
        "key_type": spec.key_type,
        "status": r.status.value,
        "duration_s": round(r.duration, 4),
        "handshake_s": None if r.handshake_time is None else round(r.handshake_time, 4),
        "reason": r.reason,
        "install": r.install,
        "checks": [
            {"name": c.name, "status": c.status.value, "detail": c.detail} for c in r.checks
        ],
        "negotiated": {"ours": r.ours.to_json(), "peer": r.theirs.to_json()},
    }


def write_json(report: RunReport, path: str) -> None:
    """Write ``report.json``."""
    doc = {
        "tool": "dtls-ossl conformance",
        "dtls_ossl": report.our_version,
        "started": report.started,
        "duration_s": round(report.duration, 3),
        "summary": {
            "total": len(report.results),
            "passed": report.count(Status.PASSED),
            "failed": report.count(Status.FAILED),
            "skipped": report.count(Status.SKIPPED),
        },
        "peers": [
            {
                "name": n,
                "available": a.available,
                "version": a.version,
                "reason": a.reason,
                "install": a.install,
            }
            for n, a in report.peers.items()
        ],
        "cells": [_result_json(i, r) for i, r in enumerate(report.results, 1)],
    }
    _atomic_write(path, json.dumps(doc, indent=2) + "\n")


def write_junit(report: RunReport, path: str) -> None:
    """Write JUnit XML: one testsuite per peer, one testcase per cell."""
    root = ET.Element("testsuites", name="dtls-ossl conformance")
    root.set("tests", str(len(report.results)))
    root.set("failures", str(report.count(Status.FAILED)))
    root.set("skipped", str(report.count(Status.SKIPPED)))
    root.set("errors", "0")
    root.set("time", f"{report.duration:.3f}")
    for name, avail in report.peers.items():
        mine = [r for r in report.results if r.spec.peer == name]
        suite = ET.SubElement(root, "testsuite", name=f"conformance.{name}")
        suite.set("tests", str(len(mine)))
        suite.set("failures", str(sum(r.status is Status.FAILED for r in mine)))
        suite.set("skipped", str(sum(r.status is Status.SKIPPED for r in mine)))
        suite.set("errors", "0")
        suite.set("time", f"{sum(r.duration for r in mine):.3f}")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="version", value=avail.version)
        for r in mine:
            spec = r.spec
            case = ET.SubElement(suite, "testcase", classname=f"conformance.{name}")
            case.set("name", f"{spec.role.value} {spec.column} {spec.key_type}")
            case.set("time", f"{r.duration:.3f}")
            checks = "\n".join(f"{c.name}: {c.status.value} {c.detail}" for c in r.checks)
            if r.status is Status.FAILED:
                bad = [f"{c.name}: {c.detail}" for c in r.checks if c.status is CheckStatus.FAIL]
                fail = ET.SubElement(case, "failure", message="; ".join(bad) or r.reason)
                fail.text = "\n\n".join(x for x in (checks, r.reason, r.log) if x)
            elif r.status is Status.SKIPPED:
                ET.SubElement(case, "skipped", message=f"{r.reason}; install: {r.install}")
            if checks and r.status is not Status.FAILED:
                ET.SubElement(case, "system-out").text = checks
    ET.indent(root)
    _atomic_write(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
