"""Instructions per handshake pair and per record, counted by callgrind: the stable figure.

Wall-clock rates swing with whatever else the machine runs; instruction counts do not. Each
implementation's own benchmark process (the C baseline, benchmarks/_dtls_ossl_peer.py) runs
under ``valgrind --tool=callgrind`` twice, with N1 and N2 units of work, and the figure is
(I(N2) - I(N1)) / (N2 - N1): start-up, certificate generation, warm-up and the final report
cancel out. ``PYTHONHASHSEED=0`` keeps the interpreter's own work repeatable.

    python benchmarks/_callgrind.py                  # handshakes and records, C and dtls_ossl
    python benchmarks/_callgrind.py handshake        # one mode: handshake, records, records-batch

handshake.py and records.py print these lines too (``--no-callgrind`` skips them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from _common import DTLS_OSSL, BenchError, C, Impl, discover, with_mtu
from _dtls_ossl_peer import records_mtu

# (N1, N2) per mode: large enough that the difference dwarfs any run-to-run wobble (the ECDSA
# signatures' lengths vary by a byte or two; a full collection of Python's cyclic GC falling in
# or out of the window moves a record's figure by a few hundred instructions at 10,000
# records), small enough for a minute or two under callgrind.
_UNITS = {
    "handshake": (10, 40),
    "records": (2000, 32000),
    "records-batch": (2000, 32000),
}
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
RECORD_SIZE = 1200
BATCH = 64


def available() -> str:
    """Empty if callgrind can run, else why not."""
    return "" if shutil.which("valgrind") else "valgrind not found (apt-get install valgrind)"


def _instructions(argv: Sequence[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONHASHSEED="0")
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/out",
                *argv,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
    m = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or m is None:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise BenchError(f"callgrind failed: {tail[0]}")
    return int(m.group(1))


def _args(mode: str, n: int) -> list[str]:
    if mode == "handshake":
        return ["handshake", str(n)]
    if mode == "records":
        return ["records", str(n), str(RECORD_SIZE)]
    return ["records-batch", str(n), str(RECORD_SIZE), str(BATCH)]


def per_unit(impl: Impl, mode: str) -> float:
    """Instructions per unit of ``mode`` (a handshake pair, or one record) for impl."""
    if impl.argv is None:
        raise BenchError(impl.unavailable)
    argv = list(impl.argv)
    if argv[0] == sys.executable:
        argv[0] = os.path.realpath(sys.executable)  # the interpreter, not a version-manager shim
    n1, n2 = _UNITS[mode]
    i1 = _instructions([*argv, *_args(mode, n1)])
    i2 = _instructions([*argv, *_args(mode, n2)])
    return (i2 - i1) / (n2 - n1)


def report(impls: dict[str, Impl], modes: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Print, per mode, instructions per unit for dtls_ossl and C; return {mode: (lib, C)}."""
    why = available()
    if why:
        print(f"Callgrind instructions: skipped ({why})\n")
        return {}
    out: dict[str, tuple[float, float]] = {}
    print("Callgrind instructions (PYTHONHASHSEED=0; (I(N2) - I(N1)) / (N2 - N1), deterministic):")
    for mode in modes:
        unit = "handshake pair" if mode == "handshake" else f"{RECORD_SIZE}-byte record"
        c_impl = impls[C] if mode == "handshake" else with_mtu(impls[C], records_mtu(RECORD_SIZE))
        lib_impl = impls[DTLS_OSSL]
        if mode != "handshake":
            lib_impl = with_mtu(lib_impl, records_mtu(RECORD_SIZE))
        try:
            print(f"  {mode:14} ...", end="", flush=True, file=sys.stderr)
            lib = per_unit(lib_impl, mode)
            c = per_unit(c_impl, "records" if mode == "records-batch" else mode)
            print(" done", file=sys.stderr)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            print(f"  {mode:14} unavailable: {exc}")
            continue
        out[mode] = (lib, c)
        label = f"{DTLS_OSSL}{' batch x' + str(BATCH) if mode == 'records-batch' else ''}"
        print(
            f"  per {unit:16} {label:18} {lib:12,.0f}   C {c:12,.0f}   "
            f"({lib / c:.3f} x C's instructions)"
        )
    print(f"  reproduce: python benchmarks/_callgrind.py {' '.join(modes)}\n")
    return out


def main(argv: list[str]) -> int:
    modes = argv or ["handshake", "records", "records-batch"]
    if any(m not in _UNITS for m in modes):
        print(f"usage: _callgrind.py [{' | '.join(_UNITS)}]...", file=sys.stderr)
        return 2
    impls = {impl.name: impl for impl in discover(quiet=True)}
    report(impls, modes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
