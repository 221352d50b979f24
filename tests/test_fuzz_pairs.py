"""The mutation campaign of ci/fuzz_pairs.py, small: a fixed run of seeds (about 15 s).

The full job is ``bash ci/fuzz.sh`` (FUZZ_SECONDS, default 180). A failure message carries one
reproducer per kind of failure: ``python ci/fuzz_pairs.py --replay SEED --only I``.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuzz

_PATH = Path(__file__).resolve().parent.parent / "ci" / "fuzz_pairs.py"
_spec = importlib.util.spec_from_file_location("fuzz_pairs", _PATH)
assert _spec is not None and _spec.loader is not None
fuzz_pairs = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_pairs"] = fuzz_pairs
_spec.loader.exec_module(fuzz_pairs)

SEEDS = 100  # about 10 s on an idle core; more seeds: bash ci/fuzz.sh


def _alert(level: int, description: int, epoch: int = 0) -> bytes:
    return bytes(fuzz_pairs.Rec(21, b"\xfe\xfd", epoch, 7, bytes([level, description])).pack())


def _handshake(msg_seq: int) -> bytes:
    body = bytes([2, 0, 0, 0]) + msg_seq.to_bytes(2, "big") + bytes(6)
    return bytes(fuzz_pairs.Rec(22, b"\xfe\xfd", 0, 3, body).pack())


def test_fuzz_pairs_excepts_only_unauthenticated_records() -> None:
    kind = fuzz_pairs.unauthenticated_kind
    # Second argument: the first message_seq the target has received nothing of.
    assert kind(_alert(2, 40), 0) == "plaintext-alert"
    assert kind(_alert(1, 0), 4) == "plaintext-alert"  # close_notify
    assert kind(_alert(1, 47), 4) is None  # a warning must not end a handshake
    assert kind(_alert(2, 40, epoch=1), 4) is None  # epoch 1 is authenticated
    assert kind(_handshake(4), 4) == "plaintext-handshake"  # the next message: unverifiable
    assert kind(_handshake(3), 4) is None  # already received: must be discarded
    assert kind(b"\x16\xfe\xfd" + bytes(10), 0) is None  # no body: not a message


def test_fuzz_pairs_record_edits_round_trip() -> None:
    recs = fuzz_pairs.parse(_alert(2, 40) + _handshake(1) + b"\x17\xfe")
    assert [(r.ctype, r.epoch, r.seq) for r in recs] == [(21, 0, 7), (22, 0, 3)]
    assert b"".join(r.pack() for r in recs) == _alert(2, 40) + _handshake(1)
    assert fuzz_pairs.Rec(23, b"\xfe\xfd", 1, fuzz_pairs.MAX_SEQ, b"").pack()[3:11] == (
        b"\x00\x01" + b"\xff" * 6
    )


def test_fuzz_pairs_campaign_finds_nothing() -> None:
    out = io.StringIO()
    summary = fuzz_pairs.campaign(120.0, 1, progress=1e9, out=out, count=SEEDS)
    fuzz_pairs.report(summary, 0.0, out=out)
    assert summary.scenarios == SEEDS
    assert set(summary.states) == set(fuzz_pairs.STATES)
    assert not summary.failures, out.getvalue()
