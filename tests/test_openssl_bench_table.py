"""ci/openssl_bench_table.py, the parser behind ci/openssl-bench.sh, on sample benchmark output.

The samples are trimmed from real runs (benchmarks/handshake.py and benchmarks/records.py in the
Debian experimental root, OpenSSL 4.0.3). The benchmarks' layout may change (their target lines
keep the format ``[PASS] label: figure``): the parser must then lose single figures, not the
table. Pure text processing, well under a second.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

_PATH = Path(__file__).resolve().parent.parent / "ci" / "openssl_bench_table.py"
_spec = importlib.util.spec_from_file_location("openssl_bench_table", _PATH)
assert _spec is not None and _spec.loader is not None
obt = importlib.util.module_from_spec(_spec)
sys.modules["openssl_bench_table"] = obt
_spec.loader.exec_module(obt)

HANDSHAKE = """\
Machine: AMD EPYC, 2 CPUs; python 3.14.10

Implementations:
  C                        OpenSSL 4.0.3 29 Sep 2026  [gcc -O2]
  dtls_ossl                OpenSSL 4.0.3 29 Sep 2026  [0.1.0, python 3.14.10 (/usr/bin/python3)]
  pyOpenSSL (Debian)       OpenSSL 3.6.5 29 Sep 2026  [26.4.0, python 3.14.10]  <- its own OpenSSL

Configuration check: what each side reported after a handshake (= same as C, ...)
  key                              dtls_ossl  pyOpenSSL (Debian)  C
  client.options                   =          =                   0x405a5000
  dtls_ossl: identical to C on every line above
  pyOpenSSL (Debian): NOT like-for-like with C: not reported: max_version

In-memory DTLS 1.2 handshakes/s (the library's default configuration ...; median of 2)
  implementation           OpenSSL  handshakes/s  min..max        x C   x pyOpenSSL (Debian)*
  C                        4.0.3    1,462         1,401..1,523          1.21
  dtls_ossl                4.0.3    1,382         1,330..1,434    0.94  1.14
  pyOpenSSL (Debian)       3.6.5    1,208         1,190..1,226    0.83
  * not like-for-like: see the configuration check

Targets for dtls_ossl (same OpenSSL as C, same configuration: checked above):
  [PASS] handshakes/s >= 0.92 x C: 0.94 (median of 2 per-round ratios; quartiles 0.94..0.95)

Callgrind instructions (PYTHONHASHSEED=0; (I(N2) - I(N1)) / (N2 - N1), deterministic):
  per handshake pair   dtls_ossl             6,195,308   C    6,095,946   (1.016 x C's ...)
  reproduce: python benchmarks/_callgrind.py handshake
"""

RECORDS = """\
Machine: AMD EPYC, 2 CPUs; python 3.14.10

Implementations:
  C                        OpenSSL 4.0.3 29 Sep 2026  [gcc -O2]
  dtls_ossl                OpenSSL 4.0.3 29 Sep 2026  [0.1.0, python 3.14.10 (/usr/bin/python3)]
  dtls_ossl: identical to C on every line above

1200-byte records/s, one direction (median of 2)
  implementation           OpenSSL  records/s  min..max          x C   x pyOpenSSL (Debian)*
  C                        4.0.3    756,631    561,751..951,510        3.59
  dtls_ossl                4.0.3    410,052    352,114..467,990  0.54  1.94
  dtls_ossl batch x64      4.0.3    496,731    487,012..506,451  0.66  2.36
  pyOpenSSL (Debian)       3.6.5    210,873    195,660..226,086  0.28
  pyOpenSSL (this python)           timed out after 900 s

Targets for dtls_ossl (same OpenSSL as C, same configuration: checked above):
  [FAIL] per-datagram >= 0.70 x C: 0.56 (median of 2 per-round ratios; quartiles 0.49..0.63)
  [FAIL] per-datagram > 2 x pyOpenSSL (Debian) [OpenSSL 3.6.5 29 Sep 2026]: 1.94 x
  [FAIL] batch x64 >= 0.85 x C: 0.70 (median of 2 per-round ratios; quartiles 0.53..0.87)

Callgrind instructions (PYTHONHASHSEED=0; (I(N2) - I(N1)) / (N2 - N1), deterministic):
  per 1200-byte record dtls_ossl                23,392   C       18,033   (1.297 x C's ...)
  per 1200-byte record dtls_ossl batch x64       20,876   C       18,031   (1.158 x C's ...)
"""


def test_parse_text_reads_versions_rates_targets_and_instructions() -> None:
    hs = obt.parse_text(HANDSHAKE)
    assert (hs.openssl, hs.python, hs.like_for_like) == ("4.0.3", "3.14.10", True)
    assert hs.rates == {"C": 1462.0, "dtls_ossl": 1382.0, "pyOpenSSL (Debian)": 1208.0}
    assert hs.targets == {"handshakes/s >= 0.92 x C": ("PASS", 0.94)}
    assert hs.instructions == {"handshake": (6195308.0, 6095946.0)}
    rec = obt.parse_text(RECORDS)
    assert rec.rates["dtls_ossl batch x64"] == 496731.0
    assert "pyOpenSSL (this python)" not in rec.rates  # an error row has no figure
    assert obt.target(rec, "x C", exclude=("pyOpenSSL", "batch")) == 0.56
    assert obt.target(rec, "batch", "x C") == 0.70
    assert rec.instructions["records-batch"] == (20876.0, 18031.0)
    assert len(rec.target_lines) == 2  # the ratios to C only


def test_row_renders_every_column() -> None:
    row = obt.row("experimental", obt.parse_text(HANDSHAKE), obt.parse_text(RECORDS))
    assert row == (
        "| 4.0.3 (experimental, Python 3.14.10) | 1,462 | 1,382 | 0.94 | 756,631 | 410,052 | "
        "0.56 | 0.70 | 6,095,946 / 6,195,308 (1.016 x) | 18,033 / 23,392 (1.297 x) |"
    )
    assert row.count("|") == obt.HEADER.count("|")


def test_changed_layout_loses_figures_not_the_row(tmp_path: Path) -> None:
    # Another column in front of the rate, callgrind skipped, a target reworded.
    text = (
        "Machine: x, 2 CPUs; python 3.11.7\n"
        "  C                        unavailable: gcc not found\n"
        "  implementation  OpenSSL  chunks  handshakes/s  spread\n"
        "  dtls_ossl       3.0.19   40      990           3%\n\n"
        "Callgrind instructions: skipped (valgrind not found)\n"
        "  [PASS] handshakes per second vs C >= 0.92 x C: 1.01 (paired chunks)\n"
    )
    hs = obt.parse_text(text)
    assert hs.rates == {"dtls_ossl": 990.0}
    assert "C baseline unavailable: gcc not found" in hs.notes
    assert "callgrind skipped: valgrind not found" in hs.notes
    cells = obt.row("host", hs, obt.Run()).split(" | ")
    assert cells[1:5] == ["-", "990", "1.01", "-"]
    assert cells[-1] == "- |"


def _load_records_target(
    tmp_path: Path, verdict: str, ratio: float, interval: tuple[float, float]
) -> Any:
    """Write a records.json holding one per-datagram target, and load the run."""
    target = {"target": "per-datagram >= 0.70 x C", "verdict": verdict, "ratio": ratio}
    target["ci_low"], target["ci_high"] = interval
    (tmp_path / "records.json").write_text(json.dumps({"targets": [target]}))
    return obt.load(tmp_path, "records")


def test_ratio_cells_carry_the_interval_of_the_median(tmp_path: Path) -> None:
    line = (
        "  [PASS] handshakes/s >= 0.92 x C: 0.934 (median of 300 per-pair ratios; 95% CI of the "
        "median 0.925..0.941 by 12 generations; quartiles 0.90..0.96, min..max 0.71..1.20)\n"
    )
    hs = obt.parse_text(line)
    assert hs.intervals == {"handshakes/s >= 0.92 x C": (0.925, 0.941)}
    assert obt.ratio_cell(hs, "x C") == "0.934 [0.925..0.941]"
    (tmp_path / "records.txt").write_text(RECORDS)
    rec = _load_records_target(tmp_path, "PASS", 0.78, (0.77, 0.79))
    assert obt.ratio_cell(rec, "x C", exclude=("pyOpenSSL", "batch")) == "0.780 [0.770..0.790]"
    assert obt.ratio_cell(rec, "batch", "x C") == "0.70"  # the text printed no interval


def test_json_is_preferred_where_it_has_the_figure(tmp_path: Path) -> None:
    (tmp_path / "handshake.txt").write_text(HANDSHAKE)
    doc = {
        "rows": [{"name": "C", "openssl": "OpenSSL 4.0.3 29 Sep 2026", "median": 1500.5}],
        "targets": [{"label": "handshakes/s >= 0.92 x C", "verdict": "PASS", "ratio": 0.97}],
    }
    (tmp_path / "handshake.json").write_text(json.dumps(doc))
    run = obt.load(tmp_path, "handshake")
    assert run.source == "json"
    assert run.rates["C"] == 1500.5
    assert run.rates["dtls_ossl"] == 1382.0  # not in the JSON: from the text
    assert obt.target(run, "x C") == 0.97
    assert run.instructions["handshake"] == (6195308.0, 6095946.0)


def test_table_has_a_row_per_run_and_notes(tmp_path: Path) -> None:
    for name, text in (("handshake", HANDSHAKE), ("records", RECORDS)):
        (tmp_path / f"{name}.txt").write_text(text)
    (tmp_path / "notes.txt").write_text("valgrind installed\n")
    missing = tmp_path / "missing"
    missing.mkdir()
    out = obt.table([("experimental", tmp_path), ("sid", missing)])
    lines = out.splitlines()
    assert lines[0] == obt.HEADER
    assert lines[2].startswith("| 4.0.3 (experimental")
    assert lines[3].startswith("| ? (sid) | - |")
    assert "- experimental: valgrind installed" in out
    assert "- sid: handshake: no output" in out


def test_an_inconclusive_target_keeps_its_figure_and_interval(tmp_path: Path) -> None:
    line = (
        "  [INCONCLUSIVE] handshakes/s >= 0.92 x C: 0.920 (median of 118 per-pair ratios; 95% CI "
        "of the median 0.913..0.936 by 6 generations; quartiles 0.90..0.95)\n"
    )
    hs = obt.parse_text(line)
    assert hs.targets == {"handshakes/s >= 0.92 x C": ("INCONCLUSIVE", 0.92)}
    assert obt.ratio_cell(hs, "x C") == "0.920 [0.913..0.936]"
    rec = _load_records_target(tmp_path, "INCONCLUSIVE", 0.70, (0.69, 0.71))
    assert rec.targets == {"per-datagram >= 0.70 x C": ("INCONCLUSIVE", 0.70)}
