"""Scripted paths for ``target``'s retransmission and hostile-record scenarios.

:class:`ScriptedPath` sits where a lossy cell's :class:`~dtls_ossl._impair.LossyPath` does
(between our connection and its socket) but follows a script instead of seeded chance: drop the
target's N-th datagram, go silent once the target's flight of interest arrived, or put garbage
and forged records in front of each of our flights. It records when each of the target's
datagrams arrived and what it held, so that retransmissions can be timed.
"""

from __future__ import annotations

import os

from dtls_ossl._impair import LossyPath
from dtls_ossl._records import (
    HANDSHAKE,
    HANDSHAKE_TYPES,
    parse_handshake_fragment_untrusted,
    split_records_untrusted,
)

__all__ = ["ScriptedPath", "describe", "first_key", "hostile_datagrams"]


def _records(datagram: bytes) -> list[tuple[int, int, int, int]]:
    """(content type, epoch, handshake type or -1, message_seq or -1) of each whole record."""
    out = []
    for r in split_records_untrusted(datagram)[0]:
        plain = r.content_type == HANDSHAKE and r.epoch == 0
        hs = parse_handshake_fragment_untrusted(r.fragment) if plain else None
        out.append(
            (
                r.content_type,
                r.epoch,
                -1 if hs is None else hs.msg_type,
                -1 if hs is None else hs.message_seq,
            )
        )
    return out


def describe(datagram: bytes) -> str:
    """Name what a datagram holds, e.g. ``ServerHello, Certificate`` or ``CCS, Finished``."""
    names = []
    for ctype, epoch, msg_type, _ in _records(datagram):
        if ctype == 20:
            names.append("ChangeCipherSpec")
        elif ctype == 22 and epoch > 0:
            names.append("Finished (encrypted)")
        elif ctype == 22:
            names.append(HANDSHAKE_TYPES.get(msg_type, f"handshake {msg_type}"))
        elif ctype == 21:
            names.append("alert")
        elif ctype == 23:
            names.append("application data")
    # A message fragmented over records appears once.
    return ", ".join(dict.fromkeys(names)) or f"{len(datagram)} bytes, no DTLS record"


def first_key(datagram: bytes) -> tuple[int, int, int, int] | None:
    """Return the first record's identity: a retransmission of the datagram starts the same."""
    records = _records(datagram)
    return records[0] if records else None


def hostile_datagrams(flight: int) -> list[bytes]:
    """Datagrams a receiver must silently discard (RFC 6347 §4.1.2.7), sent before a flight.

    Random bytes; a record whose length runs past the datagram; and forged epoch-1 application
    data, alert and handshake records (their MAC cannot verify). No record of an unknown content
    type: RFC 5246 §6 lets a receiver answer that with an unexpected_message alert.
    """
    version = b"\xfe\xfd"

    def record(ctype: int, epoch: int, seq: int, body: bytes, length: int | None = None) -> bytes:
        n = len(body) if length is None else length
        return (
            bytes([ctype])
            + version
            + epoch.to_bytes(2, "big")
            + seq.to_bytes(6, "big")
            + n.to_bytes(2, "big")
            + body
        )

    seq = 1000 + flight * 10
    return [
        os.urandom(48),
        record(22, 0, seq, os.urandom(20), length=900),
        record(23, 1, seq + 2, os.urandom(64)),
        record(21, 1, seq + 3, os.urandom(26)),
        record(22, 1, seq + 4, os.urandom(40)),
    ]


class ScriptedPath(LossyPath):
    """A scripted path: drop one of the target's datagrams, go silent, or inject garbage.

    :param drop: drop the target's ``drop``-th datagram (1-based; 0 drops none).
    :param silent_after: once a datagram of the target holding this handshake type has passed,
        drop everything both ways (:attr:`silent`), so that only the target's timer acts.
    :param hostile: send :func:`hostile_datagrams` before each of our flights.
    :param duplicate_reverse: send each of our flights in reverse order, every datagram twice.
    """

    def __init__(
        self,
        *,
        drop: int = 0,
        silent_after: int | None = None,
        hostile: bool = False,
        duplicate_reverse: bool = False,
    ) -> None:
        """Script the path; no chance involved."""
        super().__init__(0, loss=0.0, reorder=0.0)
        self.drop = drop
        self.silent_after = silent_after
        self.hostile = hostile
        self.duplicate_reverse = duplicate_reverse
        self.sent: list[int] = []
        "The size of each of our datagrams that went on the wire."
        self.silent = False
        "Whether the path went silent (nothing passes either way any more)."
        self.arrivals: list[tuple[float, bytes]] = []
        "Every datagram of the target, with its arrival time on time.monotonic()."
        self.dropped: tuple[float, bytes] | None = None
        self.injected = 0
        self._flights = 0

    def outbound(self, batch: list[bytes], now: float) -> list[bytes]:
        """Pass our datagrams, after hostile ones when scripted; nothing once silent."""
        if not self.active or not batch:
            return batch
        if self.silent:
            self.out.dropped += len(batch)
            return []
        if self.hostile:
            self._flights += 1
            garbage = hostile_datagrams(self._flights)
            self.injected += len(garbage)
            batch = [*garbage, *batch]
        if self.duplicate_reverse:
            batch = [d for d in reversed(batch) for _ in range(2)]
        self.sent += [len(d) for d in batch]
        return batch

    def inbound(self, batch: list[bytes], now: float) -> list[bytes]:
        """Record the target's datagrams; drop the scripted one, or all once silent."""
        if not self.active:
            return batch
        kept = []
        for datagram in batch:
            self.arrivals.append((now, datagram))
            if self.silent:
                self.inn.dropped += 1
                continue
            if len(self.arrivals) == self.drop:
                self.dropped = (now, datagram)
                self.inn.dropped += 1
                continue
            kept.append(datagram)
            if self.silent_after is not None and any(
                r[2] == self.silent_after for r in _records(datagram)
            ):
                self.silent = True
        return kept

    def next_release(self) -> float | None:
        """Nothing is ever held."""
        return None

    def due(self, now: float) -> tuple[list[bytes], list[bytes]]:
        """Nothing is ever held."""
        return [], []

    def stop(self) -> tuple[list[bytes], list[bytes]]:
        """Let everything pass from now on."""
        self.active = False
        return [], []

    def retransmissions(self, of: tuple[float, bytes]) -> list[float]:
        """Arrival times of later datagrams that start like ``of`` (its retransmissions)."""
        key = first_key(of[1])
        return [t for t, d in self.arrivals if t > of[0] and first_key(d) == key]

    def summary(self) -> str:
        """One line: what was scripted and what happened."""
        parts = [f"{len(self.arrivals)} datagrams from the target"]
        if self.drop:
            parts.append(f"dropped its #{self.drop}")
        if self.hostile:
            parts.append(f"{self.injected} hostile datagrams sent before our flights")
        if self.duplicate_reverse:
            parts.append(f"our {len(self.sent)} datagrams sent reversed per flight, each twice")
        if self.silent:
            parts.append("went silent")
        return ", ".join(parts)
