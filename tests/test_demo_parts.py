"""The demo's parts through their own seams: the impairment and the record printer."""

from __future__ import annotations

from dtls_ossl._demo import describe_datagram as reexported
from dtls_ossl._demo_impair import _Impairment
from dtls_ossl._demo_wire import describe_datagram


def test_impairment_same_seed_same_fates_per_direction() -> None:
    def fates(direction: str) -> list[tuple[bool, float, float | None]]:
        imp = _Impairment(0.3, 0.3, 0.3, 42, direction)
        return [(f.dropped, f.delay, f.duplicate_delay) for f in (imp.fate() for _ in range(50))]

    assert fates("c2s") == fates("c2s")
    assert fates("c2s") != fates("s2c")


def test_impairment_extremes() -> None:
    dropped = _Impairment(1.0, 0.0, 0.0, 1, "c2s")
    assert [dropped.fate().marks for _ in range(3)] == [["DROPPED"]] * 3
    clean = _Impairment(0.0, 0.0, 0.0, 1, "c2s")
    assert [clean.fate().marks for _ in range(3)] == [[]] * 3
    every = _Impairment(0.0, 1.0, 1.0, 1, "c2s")
    fate = every.fate()
    assert fate.marks == ["REORDERED", "DUPLICATED"]
    assert 0.01 <= fate.delay <= 0.03
    assert fate.duplicate_delay is not None and 0.0 <= fate.duplicate_delay <= 0.02


def test_record_printer_labels() -> None:
    assert reexported is describe_datagram
    alert = bytes([21, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 2, 40])
    assert describe_datagram(alert) == "Alert(fatal handshake_failure)"
    assert (
        describe_datagram(alert + b"\x17") == "Alert(fatal handshake_failure)+?(1 trailing bytes)"
    )
    assert describe_datagram(b"") == "(empty)"
