"""The demo's parts through their own seams: the impairment and the record printer."""

from __future__ import annotations

from dtls_ossl._demo import describe_datagram as reexported
from dtls_ossl._demo_model import DemoOptions, demo_link
from dtls_ossl._demo_wire import describe_datagram


def test_impairment_same_seed_same_fates_per_direction() -> None:
    def fates(direction: str) -> list[tuple[bool, float, float | None]]:
        imp = demo_link(DemoOptions(loss=0.3, reorder=0.3, duplicate=0.3), 42, direction)
        return [(f.dropped, f.delay, f.duplicate_delay) for f in (imp.fate() for _ in range(50))]

    assert fates("c2s") == fates("c2s")
    assert fates("c2s") != fates("s2c")


def test_impairment_extremes() -> None:
    dropped = demo_link(DemoOptions(loss=1.0), 1, "c2s")
    assert [dropped.fate().marks for _ in range(3)] == [["DROPPED"]] * 3
    clean = demo_link(DemoOptions(), 1, "c2s")
    assert [clean.fate().marks for _ in range(3)] == [[]] * 3
    every = demo_link(DemoOptions(reorder=1.0, duplicate=1.0), 1, "c2s")
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
