#!/usr/bin/env python3
"""Mutation campaign against real in-memory DtlsConnection pairs (issue 9).

Each scenario is one seed. From the seed it picks a variant (certificate key ECDSA or RSA, SRTP
on or off, cookie exchange through ``CookieVerifier`` + ``accept_verified_hello`` or not,
default ciphers or a CBC suite asked for by the client), a state, a target side and a handful
of mutated datagrams. It then runs a genuine handshake, data exchange and close_notify, and at
the chosen state injects the mutated datagrams into the target between the genuine ones.

States (where the injection happens):
    new          neither side started (client not connected, server NEW)
    flight1..4   the genuine flight N is on its way (before, between or after its datagrams)
    established  both established, data is being exchanged
    closing      the client closed; its close_notify is on its way to the server
    closed       both ended

Mutation classes (what is injected): see ``CLASSES``. Genuine sources are datagrams this pair
already exchanged and datagrams of a reference handshake of *another* pair (same certificates).

Invariants, checked on every scenario:
    exception      no exception escapes the API (receive_datagram, handle_timer, the cookie layer)
    forged-event   no HandshakeCompleted or DataReceived produced by a forged datagram; every
                   DataReceived is exactly one payload the genuine peer sent, at most once
    events         ConnectionTerminated is the last event; its error says why (not "no detail")
    broken         the genuine handshake, data exchange and close still complete, and nothing
                   is sent or emitted by a connection that already ended
Excepted from "broken" (inherent to DTLS 1.2, where nothing is authenticated before the peer's
Finished): while the target still reads epoch 0 (before the peer's ChangeCipherSpec),
    plaintext-alert      an epoch-0 alert record that is fatal (level 2) or close_notify;
    plaintext-handshake  an epoch-0 handshake record for a message_seq the target has not
                         received whole yet (a forged next message, or fragment of one, is
                         indistinguishable from the real one until Finished fails).
Anything else that breaks the pair is a failure, e.g. a forged epoch-1 record, a record number
pushed to 2**48-1 on an already-received message, a replay, junk or a truncated record.

A scenario that needed extra retransmission rounds to complete is reported as "delayed" (a
warning, not a failure). Exit status 1 if any failure. Reproduce one with
``python ci/fuzz_pairs.py --replay SEED`` (add ``--only I`` for the I-th injected datagram).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dtls_ossl import (
    Certificate,
    ConfigurationError,
    ConnectionState,
    DtlsConfiguration,
    DtlsConnection,
    Role,
    events,
)
from dtls_ossl.cookies import CookieVerifier, parse_client_hello_untrusted

STATES = (
    "new",
    "flight1",
    "flight2",
    "flight3",
    "flight4",
    "established",
    "closing",
    "closed",
)
CLASSES = (
    "bitflip",  # 1..8 random bits of a genuine datagram flipped
    "truncate",  # a genuine datagram cut short
    "extend",  # random bytes appended to a genuine datagram
    "epoch",  # a record's epoch rewritten (0, 1, 2, 0xffff, random)
    "seq",  # a record's sequence number rewritten (random 48-bit, +/- small)
    "seq_max",  # a record's sequence number set to 2**48-1
    "length",  # a record's length field rewritten
    "ctype",  # a record's content type rewritten (20..26)
    "version",  # a record's version rewritten
    "duplicate",  # a genuine datagram replayed unchanged
    "resplit",  # a genuine datagram's records re-sent one per datagram
    "reorder",  # the genuine datagrams of this step delivered in another order
    "fragment",  # a forged epoch-0 handshake fragment (random offsets, lengths, body)
    "next_epoch",  # a forged record of the current or next epoch with a random body
    "junk",  # random bytes
    "junk_header",  # a plausible DTLS record header followed by random bytes
    "alert",  # a forged plaintext (epoch-0) alert, any level and description
    "other_session",  # a datagram of another pair's handshake, unchanged
)
GENUINE_CONTENT = frozenset({"duplicate", "resplit", "reorder"})
MAX_SEQ = (1 << 48) - 1
NO_DETAIL = "no detail from OpenSSL"


# ---------------------------------------------------------------------------- records


@dataclass
class Rec:
    """One DTLS record as parsed from a datagram (untrusted)."""

    ctype: int
    version: bytes
    epoch: int
    seq: int
    body: bytes

    def pack(self, length: int | None = None) -> bytes:
        """Serialise, with an optional (possibly false) length field."""
        n = len(self.body) if length is None else length
        return (
            bytes([self.ctype])
            + self.version
            + self.epoch.to_bytes(2, "big")
            + self.seq.to_bytes(6, "big")
            + n.to_bytes(2, "big")
            + self.body
        )


def parse(data: bytes) -> list[Rec]:
    """Split a datagram on record headers; stops at the first record that does not fit."""
    out: list[Rec] = []
    off = 0
    while len(data) - off >= 13:
        n = int.from_bytes(data[off + 11 : off + 13], "big")
        if off + 13 + n > len(data):
            break
        out.append(
            Rec(
                data[off],
                data[off + 1 : off + 3],
                int.from_bytes(data[off + 3 : off + 5], "big"),
                int.from_bytes(data[off + 5 : off + 11], "big"),
                data[off + 13 : off + 13 + n],
            )
        )
        off += 13 + n
    return out


def handshake_fragments(data: bytes) -> list[tuple[int, int, int, int]]:
    """(message_seq, length, fragment_offset, fragment_length) of every epoch-0 handshake record."""
    return [
        (
            int.from_bytes(r.body[4:6], "big"),
            int.from_bytes(r.body[1:4], "big"),
            int.from_bytes(r.body[6:9], "big"),
            int.from_bytes(r.body[9:12], "big"),
        )
        for r in parse(data)
        if r.ctype == 22 and r.epoch == 0 and len(r.body) >= 12
    ]


def _covered(length: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether the fragment ranges cover a message of ``length`` bytes."""
    end = 0
    for off, flen in sorted(ranges):
        if off > end:
            return False
        end = max(end, off + flen)
    return end >= length


def unauthenticated_kind(data: bytes, next_msg_seq: int) -> str | None:
    """Which excepted class a datagram falls in for a target still reading epoch 0, if any.

    ``next_msg_seq`` is the first message_seq the target has not received any of yet.
    """
    for r in parse(data):
        if r.epoch != 0:
            continue
        if r.ctype == 21 and len(r.body) >= 2 and (r.body[0] == 2 or r.body[1] == 0):
            return "plaintext-alert"
        if (
            r.ctype == 22
            and len(r.body) >= 12
            and int.from_bytes(r.body[4:6], "big") >= next_msg_seq
        ):
            return "plaintext-handshake"
    return None


# ---------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """What the pair is made of."""

    key: str  # "ecdsa" or "rsa"
    srtp: bool
    cookie: bool
    cipher: str  # "default" or "cbc"

    def __str__(self) -> str:
        return (
            f"{self.key}/{'srtp' if self.srtp else 'nosrtp'}/"
            f"{'cookie' if self.cookie else 'nocookie'}/{self.cipher}"
        )


VARIANTS = tuple(
    Variant(k, s, c, ci)
    for k in ("ecdsa", "rsa")
    for s in (True, False)
    for c in (False, True)
    for ci in ("default", "cbc")
)
CBC = {"ecdsa": "ECDHE-ECDSA-AES128-SHA", "rsa": "ECDHE-RSA-AES128-SHA"}
KEY_TYPES = {"ecdsa": "ecdsa-p256", "rsa": "rsa-2048"}
# Retransmission timers short enough to settle a stalled handshake quickly, long enough that
# a loaded machine does not retransmit during a genuine step.
TIMERS: dict[str, Any] = {
    "initial_retransmit_timeout": 0.25,
    "max_retransmit_timeout": 0.5,
    "handshake_timeout": None,
}
SETTLE_ROUNDS = 3


class World:
    """Certificates, configurations and reference datagrams shared by every scenario."""

    def __init__(self) -> None:
        self.certs = {
            (k, side): Certificate.generate(KEY_TYPES[k])
            for k in ("ecdsa", "rsa")
            for side in ("client", "server")
        }
        self.configs: dict[Variant, tuple[DtlsConfiguration, DtlsConfiguration] | None] = {}
        self.reference: dict[Variant, list[bytes]] = {}

    def config(self, v: Variant) -> tuple[DtlsConfiguration, DtlsConfiguration] | None:
        """Client and server configurations of a variant; None if the library refuses it."""
        if v not in self.configs:
            extra: dict[str, Any] = dict(TIMERS)
            if not v.srtp:
                extra["srtp_profiles"] = ()
            if v.cipher == "cbc":  # asked for explicitly on both sides (defaults may be AEAD-only)
                extra["ciphers"] = CBC[v.key]
            try:
                c = DtlsConfiguration(certificate=self.certs[(v.key, "client")], **extra)
                s = DtlsConfiguration(certificate=self.certs[(v.key, "server")], **extra)
                self.configs[v] = (c, s)
            except ConfigurationError:
                self.configs[v] = None
        return self.configs[v]

    def reference_datagrams(self, v: Variant) -> list[bytes]:
        """Every datagram of another pair's handshake, data and close (same certificates)."""
        if v not in self.reference:
            p = Pair(self, v, random.Random(0), Scenario(0, v, "closed", Role.CLIENT, 0, 0.0))
            p.run()
            self.reference[v] = list(p.genuine)
        return self.reference[v]


# ---------------------------------------------------------------------------- scenario


@dataclass
class Scenario:
    """Everything a seed decides, for the reproducer line."""

    seed: int
    variant: Variant
    state: str
    target: Role
    count: int
    position: float

    def __str__(self) -> str:
        return (
            f"seed={self.seed} variant={self.variant} state={self.state} "
            f"target={self.target.value} n={self.count}"
        )


@dataclass
class Injected:
    """One injected datagram and its origin."""

    index: int
    cls: str
    detail: str
    data: bytes
    excepted: str | None = None


@dataclass
class Failure:
    """One invariant violation, with what is needed to reproduce it."""

    kind: str
    scenario: Scenario
    message: str
    culprit: Injected | None = None
    # Why each side ended ("" if alive); whether the pair was left stalled (both alive); whether
    # the culprit carried an epoch-0 record numbered far ahead of the target's genuine ones;
    # whether the fatal error came in the same call as HandshakeCompleted.
    ends: tuple[str, str] = ("", "")
    stalled: bool = False
    seq_jump: bool = False
    with_completion: bool = False
    alone: bool = False  # found with --only (the culprit alone breaks the pair)

    def diagnosis(self) -> str:
        """Name the failure by symptom, and by which of issue 9's cases it matches, if any."""
        own = [e for e in self.ends if e and not e.startswith("peer sent")]
        reason = own[0] if own else (self.ends[0] or self.ends[1])
        if self.kind in ("exception", "forged-event"):
            return self.kind
        if self.kind == "events" and NO_DETAIL in self.message:
            if self.with_completion:
                return (
                    "case 4: fatal error in the call that completed the handshake lost its detail"
                )
            return "lost detail: fatal error without OpenSSL reason (not at completion)"
        if self.kind == "events":
            return "events: " + self.message
        if self.scenario.variant.cipher == "cbc" and any(
            m in e for e in self.ends for m in ("bad record mac", "bad_record_mac")
        ):
            return "case 1: forged record with a bad MAC kills a CBC connection"
        if self.stalled and self.seq_jump:
            return "case 3: epoch-0 record numbered far ahead stalls the handshake"
        if "too many warn alerts" in reason or "no renegotiation" in reason:
            return f"forged epoch-0 warning alert ends the handshake ({reason})"
        if self.stalled:
            return "stall: neither side ended, no progress"
        if reason:
            return f"forged record ends a connection ({reason})"
        return self.kind + ": " + self.message

    def reproducer(self) -> str:
        """Describe the failure and the command that replays it."""
        c = self.culprit
        head = (
            f"{self.kind}: {self.message}\n    reproduce: python ci/fuzz_pairs.py --replay "
            f"{self.scenario.seed}"
        )
        if c is not None:
            head += (
                (f" --only {c.index}" if self.alone else "")
                + f"\n    {self.scenario}\n    mutation #{c.index}: {c.cls} "
                f"({c.detail}); {len(c.data)} bytes: {c.data[:40].hex()}"
                + ("..." if len(c.data) > 40 else "")
            )
        else:
            head += f"\n    {self.scenario}"
        return head


class Broken(Exception):
    """The genuine exchange could not go on (the reason is in the pair's failures)."""


class Pair:
    """One client/server pair driven through the genuine exchange, with injections."""

    def __init__(
        self,
        world: World,
        v: Variant,
        rng: random.Random,
        sc: Scenario,
        only: int | None = None,
        verbose: bool = False,
    ) -> None:
        cfg = world.config(v)
        assert cfg is not None
        ccert, scert = world.certs[(v.key, "client")], world.certs[(v.key, "server")]
        self.world, self.v, self.rng, self.sc, self.only, self.verbose = (
            world,
            v,
            rng,
            sc,
            only,
            verbose,
        )
        self.client = DtlsConnection(
            cfg[0], role=Role.CLIENT, remote_fingerprints=[scert.fingerprint()]
        )
        self.server = DtlsConnection(
            cfg[1], role=Role.SERVER, remote_fingerprints=[ccert.fingerprint()]
        )
        self.verifier = CookieVerifier(b"k" * 32) if v.cookie else None
        self.genuine: list[bytes] = []
        self.sent: dict[Role, list[bytes]] = {Role.CLIENT: [], Role.SERVER: []}
        self.got: dict[Role, list[bytes]] = {Role.CLIENT: [], Role.SERVER: []}
        self.completed: dict[Role, int] = {Role.CLIENT: 0, Role.SERVER: 0}
        self.ended: dict[Role, events.ConnectionTerminated | None] = {
            Role.CLIENT: None,
            Role.SERVER: None,
        }
        # message_seq of the genuine handshake fragments each side received (out of order too).
        # message_seq -> (length, received fragment ranges), genuine epoch-0 handshake only
        self.msg_frags: dict[Role, dict[int, tuple[int, list[tuple[int, int]]]]] = {
            Role.CLIENT: {},
            Role.SERVER: {},
        }
        self.max_seq0: dict[Role, int] = {Role.CLIENT: -1, Role.SERVER: -1}
        self.injected: list[Injected] = []
        self.failures: list[Failure] = []
        self.excepted: str | None = None
        self.settle_rounds = 0
        self.counts: Counter[str] = Counter()
        self.pending: dict[Role, list[bytes]] = {Role.CLIENT: [], Role.SERVER: []}

    # ------------------------------------------------------------------ plumbing

    def conn(self, role: Role) -> DtlsConnection:
        """Return the connection of one side."""
        return self.client if role is Role.CLIENT else self.server

    def fail(
        self,
        kind: str,
        message: str,
        culprit: Injected | None = None,
        with_completion: bool = False,
    ) -> None:
        """Record an invariant violation."""
        ends = (self._reason(Role.CLIENT), self._reason(Role.SERVER))
        stalled = not any(ends) and not (
            self.both(ConnectionState.ESTABLISHED) or self.both(ConnectionState.CLOSED)
        )
        jump = culprit is not None and any(
            r.epoch == 0 and r.seq > self.max_seq0[self.sc.target] + 256
            for r in parse(culprit.data)
        )
        self.failures.append(
            Failure(
                kind,
                self.sc,
                message,
                culprit,
                ends,
                stalled,
                jump,
                with_completion,
                self.only is not None,
            )
        )

    def next_msg_seq(self, role: Role) -> int:
        """Return the first message_seq this side has not received whole (genuine).

        A forged fragment of a message still being reassembled is as indistinguishable from
        the real one as a forged next message: which fragment OpenSSL keeps is arbitrary.
        """
        n = 0
        while n in self.msg_frags[role] and _covered(*self.msg_frags[role][n]):
            n += 1
        return n

    def _reason(self, role: Role) -> str:
        e = self.ended[role]
        return "" if e is None or e.error is None else str(e.error)

    def call(self, what: str, fn: Any, *args: Any, culprit: Injected | None = None) -> bool:
        """Call the API; an exception escaping it is a failure."""
        try:
            fn(*args)
        except Exception as e:
            tb = traceback.format_exc(limit=3).strip().splitlines()[-1]
            self.fail("exception", f"{what} raised {type(e).__name__}: {e} ({tb})", culprit)
            return False
        return True

    def drain(self, role: Role, culprit: Injected | None) -> None:
        """Check and record the events of one side after one input."""
        conn = self.conn(role)
        completed_now = False
        while (e := conn.next_event()) is not None:
            if self.ended[role] is not None:
                self.fail("events", f"{role.value}: {type(e).__name__} after the end", culprit)
            if isinstance(e, events.HandshakeCompleted):
                completed_now = True
                self.completed[role] += 1
                if culprit is not None and culprit.cls not in GENUINE_CONTENT:
                    self.fail("forged-event", f"{role.value}: HandshakeCompleted", culprit)
                if self.completed[role] > 1:
                    self.fail("forged-event", f"{role.value}: second HandshakeCompleted", culprit)
            elif isinstance(e, events.DataReceived):
                peer = Role.SERVER if role is Role.CLIENT else Role.CLIENT
                if e.data not in self.sent[peer] or e.data in self.got[role]:
                    self.fail(
                        "forged-event",
                        f"{role.value}: DataReceived {e.data[:32]!r} the peer did not send "
                        "(or twice)",
                        culprit,
                    )
                self.got[role].append(e.data)
            elif isinstance(e, events.ConnectionTerminated):
                self.ended[role] = e
                if e.error is not None and NO_DETAIL in str(e.error):
                    self.fail(
                        "events",
                        f"{role.value}: ConnectionTerminated({type(e.error).__name__}"
                        f"({str(e.error)!r})) lost the reason",
                        culprit,
                        with_completion=completed_now,
                    )
                if culprit is not None and self.verbose:
                    print(f"  {role.value} ended by #{culprit.index}: {e.error!r}")
            if self.verbose:
                print(f"  {role.value} <- {type(e).__name__}")

    def feed(self, role: Role, data: bytes, culprit: Injected | None) -> None:
        """Give one datagram to one side, as the application would."""
        conn = self.conn(role)
        if culprit is None:
            self.genuine.append(data)
            for seq, length, off, flen in handshake_fragments(data):
                self.msg_frags[role].setdefault(seq, (length, []))[1].append((off, flen))
            seqs0 = [r.seq for r in parse(data) if r.epoch == 0]
            self.max_seq0[role] = max([self.max_seq0[role], *seqs0])
        if role is Role.SERVER and self.verifier is not None and conn.state is ConnectionState.NEW:
            self.stateless(data, culprit)
            return
        was_ended = self.ended[role] is not None
        what = f"{role.value}.receive_datagram"
        ok = self.call(what, conn.receive_datagram, data, time.monotonic(), culprit=culprit)
        if ok:
            self.drain(role, culprit)
        self.collect(role, was_ended, culprit)

    def collect(self, role: Role, was_ended: bool, culprit: Injected | None) -> None:
        """Queue what one side sends for its peer (a forger spoofs the peer's address)."""
        out = self.conn(role).datagrams_to_send(time.monotonic())
        if out and was_ended:
            self.fail("broken", f"{role.value}: sent {len(out)} datagram(s) after its end", culprit)
        peer = Role.SERVER if role is Role.CLIENT else Role.CLIENT
        self.pending[peer] += out

    def stateless(self, data: bytes, culprit: Injected | None) -> None:
        """Pass a datagram through the cookie layer in front of a NEW server (as serve() does)."""
        assert self.verifier is not None
        try:
            info = parse_client_hello_untrusted(data)
            if info is None:
                return
            if not self.verifier.check(info, ("192.0.2.1", 5000), 1_800_000_000.0):
                hvr = self.verifier.hello_verify_request(info, ("192.0.2.1", 5000), 1_800_000_000.0)
                # Sent to the (spoofed) source address: the genuine client.
                self.feed(Role.CLIENT, hvr, None)
                return
        except Exception as e:
            self.fail("exception", f"cookie layer raised {type(e).__name__}: {e}", culprit)
            return
        ok = self.call(
            "server.accept_verified_hello",
            self.server.accept_verified_hello,
            data,
            time.monotonic(),
            culprit=culprit,
        )
        if ok:
            self.drain(Role.SERVER, culprit)
        self.collect(Role.SERVER, False, culprit)

    def outputs(self, role: Role) -> list[bytes]:
        """Return what a side queued outside receive_datagram (connect, send, close, timers)."""
        return self.conn(role).datagrams_to_send(time.monotonic())

    # ------------------------------------------------------------------ injection

    def pool(self) -> list[bytes]:
        """Return the genuine datagrams mutations start from."""
        return self.genuine or self.world.reference.get(self.v, [])

    def mutate(self, index: int, step: list[bytes]) -> Injected:
        """Make the index-th injected datagram (class and recipe drawn from the seed)."""
        rng = self.rng
        cls = rng.choice(CLASSES)
        pool = self.pool()
        ref = self.world.reference.get(self.v, [])
        src_i = rng.randrange(len(pool)) if pool else 0
        src = pool[src_i] if pool else os.urandom(60)
        recs = parse(src)
        ri = rng.randrange(len(recs)) if recs else 0
        detail = f"from genuine #{src_i}" if self.genuine else f"from reference #{src_i}"

        def rec_edit(fn: Any, what: str) -> tuple[bytes, str]:
            if not recs:
                return src, detail + ", no record to edit"
            r = recs[ri]
            packed = fn(r)
            return (
                b"".join(x.pack() for x in recs[:ri])
                + packed
                + b"".join(x.pack() for x in recs[ri + 1 :]),
                f"{detail}, record {ri} (type {r.ctype} epoch {r.epoch} seq {r.seq}): {what}",
            )

        if cls == "bitflip":
            b = bytearray(src)
            bits = sorted(rng.sample(range(len(b) * 8), min(len(b) * 8, rng.randint(1, 8))))
            for bit in bits:
                b[bit // 8] ^= 1 << (bit % 8)
            data, detail = bytes(b), f"{detail}, bits {bits}"
        elif cls == "truncate":
            n = rng.randrange(len(src)) if src else 0
            data, detail = src[:n], f"{detail}, cut to {n} of {len(src)}"
        elif cls == "extend":
            extra = rng.randbytes(rng.randint(1, 64))
            data, detail = src + extra, f"{detail}, +{len(extra)} random bytes"
        elif cls == "epoch":
            e = rng.choice((0, 1, 2, 0xFFFF, rng.randrange(1 << 16)))
            data, detail = rec_edit(
                lambda r: Rec(r.ctype, r.version, e, r.seq, r.body).pack(), f"epoch={e}"
            )
        elif cls == "seq":
            delta = rng.choice((rng.randint(-3, 3), rng.randint(64, 1 << 20), None))
            data, detail = rec_edit(
                lambda r: Rec(
                    r.ctype,
                    r.version,
                    r.epoch,
                    rng.randrange(1 << 48) if delta is None else (r.seq + delta) % (1 << 48),
                    r.body,
                ).pack(),
                f"seq {'random' if delta is None else f'{delta:+d}'}",
            )
        elif cls == "seq_max":
            data, detail = rec_edit(
                lambda r: Rec(r.ctype, r.version, r.epoch, MAX_SEQ, r.body).pack(), "seq=2**48-1"
            )
        elif cls == "length":
            n = rng.choice((0, 1, 12, 0xFFFF, rng.randrange(1 << 16)))
            data, detail = rec_edit(lambda r: r.pack(length=n), f"length field={n}")
        elif cls == "ctype":
            t = rng.randint(20, 26)
            data, detail = rec_edit(
                lambda r: Rec(t, r.version, r.epoch, r.seq, r.body).pack(), f"type={t}"
            )
        elif cls == "version":
            ver = rng.choice((b"\xfe\xff", b"\xfe\xfc", b"\x03\x03", rng.randbytes(2)))
            data, detail = rec_edit(
                lambda r: Rec(r.ctype, ver, r.epoch, r.seq, r.body).pack(), f"version={ver.hex()}"
            )
        elif cls == "duplicate":
            data, detail = src, detail
        elif cls == "resplit":
            r = recs[ri] if recs else Rec(22, b"\xfe\xfd", 0, 0, b"")
            data, detail = r.pack(), f"{detail}, record {ri} alone"
        elif cls == "reorder":
            # The step's genuine datagrams are shuffled (see inject()); the extra datagram is a
            # replay of one of them, or of the last genuine one.
            data = rng.choice(step) if step else src
            detail = "a genuine datagram of this step replayed, step order shuffled"
        elif cls == "fragment":
            msg_seq = max(0, self.next_msg_seq(self.sc.target) + rng.randint(-1, 3))
            total = rng.choice((rng.randint(1, 2000), rng.randint(1, (1 << 24) - 1)))
            off = rng.randrange(total)
            flen = min(total - off, rng.randint(0, 200))
            body = (
                bytes([rng.choice((1, 2, 3, 11, 12, 13, 14, 15, 16, 20))])
                + total.to_bytes(3, "big")
                + msg_seq.to_bytes(2, "big")
                + off.to_bytes(3, "big")
                + flen.to_bytes(3, "big")
                + rng.randbytes(flen)
            )
            seq = rng.choice((rng.randint(0, 20), rng.randrange(1 << 48)))
            data = Rec(22, b"\xfe\xfd", 0, seq, body).pack()
            detail = f"msg_seq={msg_seq} length={total} offset={off} frag={flen} seq={seq}"
        elif cls == "next_epoch":
            e = rng.choice((1, 1, 2))
            t = rng.choice((23, 23, 22, 21, 20))
            body = rng.randbytes(rng.choice((rng.randint(0, 80), 64, 48, 32)))
            seq = rng.choice((rng.randint(0, 1000), rng.randrange(1 << 48)))
            data = Rec(t, b"\xfe\xfd", e, seq, body).pack()
            detail = f"type={t} epoch={e} seq={seq} body={len(body)} random bytes"
        elif cls == "junk":
            data = rng.randbytes(rng.randint(0, 300))
            detail = "random bytes"
        elif cls == "junk_header":
            t = rng.randint(20, 26)
            body = rng.randbytes(rng.randint(0, 200))
            seq = rng.randrange(1 << 48)
            data = Rec(t, b"\xfe\xfd", rng.choice((0, 1)), seq, body).pack()
            detail = f"type={t} header, random body of {len(body)}"
        elif cls == "alert":
            level = rng.choice((1, 2))
            desc = rng.choice((0, 10, 20, 40, 42, 47, 50, 70, 80, 90, 100, rng.randrange(256)))
            seq = rng.choice((rng.randint(0, 10), rng.randrange(1 << 48)))
            data = Rec(21, b"\xfe\xfd", 0, seq, bytes([level, desc])).pack()
            detail = f"epoch-0 alert level={level} description={desc} seq={seq}"
        else:  # other_session
            j = rng.randrange(len(ref)) if ref else 0
            data = ref[j] if ref else src
            detail = f"reference datagram #{j}"
        return Injected(index, cls, detail, data)

    def inject(self, step: list[bytes], target: Role) -> list[Injected]:
        """Draw this scenario's injected datagrams (may reorder the step's genuine ones)."""
        muts = [self.mutate(i, step) for i in range(self.sc.count)]
        if any(m.cls == "reorder" for m in muts) and len(step) > 1:
            self.rng.shuffle(step)
        return muts

    def deliver(self, src: Role, dst: Role, step: list[bytes], state: str) -> None:
        """Deliver a step's genuine datagrams, with the injection if this is the state."""
        muts: list[Injected] = []
        at = 0
        if state == self.sc.state:
            muts = self.inject(step, self.sc.target)
            at = round(self.sc.position * len(step))
        for i, d in enumerate(step):
            if i == at:
                self.inject_now(muts)
            self.feed(dst, d, None)
        if at >= len(step):
            self.inject_now(muts)

    def inject_now(self, muts: list[Injected]) -> None:
        """Feed the injected datagrams to the target, noting which are excepted."""
        target = self.sc.target
        for m in muts:
            if self.only is not None and m.index != self.only:
                continue
            self.injected.append(m)
            self.counts[m.cls] += 1
            conn = self.conn(target)
            if conn.state in (ConnectionState.NEW, ConnectionState.HANDSHAKING):
                m.excepted = unauthenticated_kind(m.data, self.next_msg_seq(target))
            if self.verbose:
                print(
                    f"inject #{m.index} {m.cls} -> {target.value} ({conn.state.value}): "
                    f"{m.detail}; excepted={m.excepted}"
                )
            before = self.ended[target]
            self.feed(target, m.data, m)
            if before is None and self.ended[target] is not None:
                self.blame = m

    blame: Injected | None = None

    # ------------------------------------------------------------------ the exchange

    def flight(self, src: Role, state: str) -> None:
        """Deliver what ``src`` has for its peer, as the step of ``state``."""
        dst = Role.SERVER if src is Role.CLIENT else Role.CLIENT
        step = self.pending[dst] + self.outputs(src)
        self.pending[dst] = []
        self.deliver(src, dst, step, state)

    def pump(self) -> int:
        """Deliver both ways until quiet; return how many datagrams moved."""
        moved = 0
        for _ in range(20):
            n = 0
            for src, dst in ((Role.CLIENT, Role.SERVER), (Role.SERVER, Role.CLIENT)):
                out = self.pending[dst] + self.outputs(src)
                self.pending[dst] = []
                for d in out:
                    self.feed(dst, d, None)
                n += len(out)
            moved += n
            if n == 0:
                break
        return moved

    def settle(self, goal: Any) -> bool:
        """Pump until quiet; then let retransmission timers run a few rounds until ``goal()``."""
        self.pump()
        rounds = 0
        while not goal() and rounds < SETTLE_ROUNDS:
            alive = [r for r in Role if self.ended[r] is None]
            timers = [t for r in alive if (t := self.conn(r).get_timer()) is not None]
            if not timers:
                break
            time.sleep(max(0.0, min(timers) - time.monotonic()) + 0.005)
            rounds += 1
            for r in alive:
                self.call(f"{r.value}.handle_timer", self.conn(r).handle_timer, time.monotonic())
                self.drain(r, None)
            self.pump()
        self.settle_rounds += rounds
        return bool(goal())

    def both(self, state: ConnectionState) -> bool:
        """Tell whether both sides are in ``state``."""
        return self.client.state is state and self.server.state is state

    def run(self) -> None:
        """Run the genuine exchange with the injection; failures end up in ``failures``."""
        with contextlib.suppress(Broken):
            self._run()

    def check(self, ok: bool, what: str) -> None:
        """Stop the exchange if ``ok`` is false: excepted, or a failure blamed on a datagram."""
        if ok:
            return
        culprit = self.blame
        if culprit is None:
            excepted = [m for m in self.injected if m.excepted]
            culprit = excepted[0] if excepted else (self.injected[-1] if self.injected else None)
        if culprit is not None and culprit.excepted:
            self.excepted = culprit.excepted
            raise Broken
        self.fail(
            "broken",
            f"{what} (client {self.client.state.value}, server {self.server.state.value}; "
            f"client end: {self._end(Role.CLIENT)}; server end: {self._end(Role.SERVER)})",
            culprit,
        )
        raise Broken

    def _end(self, role: Role) -> str:
        e = self.ended[role]
        return "-" if e is None else repr(e.error)

    def _run(self) -> None:
        now = time.monotonic
        # new: nobody started. The injection goes straight in.
        if self.sc.state == "new":
            self.inject_now(self.inject([], self.sc.target))
        self.call("client.connect", self.client.connect, now())
        self.drain(Role.CLIENT, None)
        self.flight(Role.CLIENT, "flight1")
        if self.v.cookie:
            # HelloVerifyRequest went to the client through the cookie layer; its second
            # ClientHello is part of flight 1 too.
            self.flight(Role.CLIENT, "-")
        self.flight(Role.SERVER, "flight2")
        self.flight(Role.CLIENT, "flight3")
        self.flight(Role.SERVER, "flight4")
        self.check(
            self.settle(lambda: self.both(ConnectionState.ESTABLISHED)),
            "handshake did not complete",
        )
        self.check(self.completed[Role.CLIENT] == 1, "client: no HandshakeCompleted")
        self.check(self.completed[Role.SERVER] == 1, "server: no HandshakeCompleted")
        # established: one payload each way, with the injection among them.
        tag = f"{self.sc.seed}".encode()
        for role, name in ((Role.CLIENT, b"client"), (Role.SERVER, b"server")):
            payload = b"%s payload %s" % (name, tag)
            self.sent[role].append(payload)
            self.call(f"{role.value}.send", self.conn(role).send, payload, now())
        self.flight(Role.CLIENT, "established")
        self.flight(Role.SERVER, "-")
        self.check(
            self.settle(
                lambda: (
                    self.got[Role.SERVER] == self.sent[Role.CLIENT]
                    and self.got[Role.CLIENT] == self.sent[Role.SERVER]
                )
            ),
            "data did not arrive",
        )
        self.check(self.both(ConnectionState.ESTABLISHED), "a side ended after the data")
        # closing: the client closes; its close_notify is on its way.
        self.call("client.close", self.client.close, now())
        self.drain(Role.CLIENT, None)
        self.flight(Role.CLIENT, "closing")
        self.flight(Role.SERVER, "-")
        self.check(
            self.settle(lambda: self.both(ConnectionState.CLOSED)), "close_notify did not end both"
        )
        end = self.ended[Role.SERVER]
        self.check(end is not None and end.by_peer and end.error is None, "server not closed")
        # closed: both ended; anything injected now must change nothing.
        if self.sc.state == "closed":
            self.inject_now(self.inject([], self.sc.target))
            self.flight(Role.CLIENT, "-")
            self.flight(Role.SERVER, "-")


# ---------------------------------------------------------------------------- campaign


def scenario_for(seed: int) -> Scenario:
    """Return what a seed decides (variant, state, target, count, position)."""
    rng = random.Random(seed)
    return Scenario(
        seed,
        rng.choice(VARIANTS),
        rng.choice(STATES),
        rng.choice((Role.CLIENT, Role.SERVER)),
        rng.choice((1, 1, 2, 3, 4, 8)),
        rng.random(),
    )


def run_one(world: World, seed: int, only: int | None = None, verbose: bool = False) -> Pair | None:
    """Run the scenario of one seed; None if the library refuses the variant."""
    sc = scenario_for(seed)
    if world.config(sc.variant) is None:
        return None
    world.reference_datagrams(sc.variant)
    rng = random.Random(seed * 7919 + 1)
    pair = Pair(world, sc.variant, rng, sc, only=only, verbose=verbose)
    pair.run()
    return pair


def shrink(world: World, pair: Pair) -> list[Failure]:
    """Re-run a scenario once per non-excepted injected datagram, that datagram alone."""
    out: list[Failure] = []
    for m in pair.injected:
        if m.excepted is None:
            single = run_one(world, pair.sc.seed, only=m.index)
            out += single.failures if single is not None else []
    return out


@dataclass
class Summary:
    """Totals of a campaign."""

    scenarios: int = 0
    datagrams: int = 0
    refused: int = 0
    states: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)
    variants: Counter[str] = field(default_factory=Counter)
    excepted: Counter[str] = field(default_factory=Counter)
    delayed: list[Scenario] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def campaign(
    seconds: float,
    first_seed: int,
    progress: float = 15.0,
    out: Any = sys.stdout,
    count: int | None = None,
) -> Summary:
    """Run scenarios from ``first_seed`` on until ``seconds`` have passed (or ``count`` ran)."""
    world = World()
    s = Summary()
    start = last = time.monotonic()
    seed = first_seed
    only_cipher = os.environ.get("FUZZ_CIPHER")  # "default" or "cbc": the others are skipped
    while time.monotonic() - start < seconds and (count is None or s.scenarios < count):
        if only_cipher and scenario_for(seed).variant.cipher != only_cipher:
            seed += 1
            continue
        pair = run_one(world, seed)
        seed += 1
        if pair is None:
            s.refused += 1
            continue
        s.scenarios += 1
        s.datagrams += len(pair.injected)
        s.states[pair.sc.state] += 1
        s.variants[str(pair.sc.variant)] += 1
        s.classes.update(pair.counts)
        if pair.excepted:
            s.excepted[pair.excepted] += 1
        if pair.settle_rounds and not pair.failures and not pair.excepted:
            s.delayed.append(pair.sc)
        failures = pair.failures
        if len(pair.injected) > 1 and (
            failures or (pair.excepted and any(m.excepted is None for m in pair.injected))
        ):
            # Several datagrams were injected: find which one alone breaks the pair, so the
            # reproducer names one mutation (and an excepted one cannot hide another).
            single = shrink(world, pair)
            if single:
                failures = single
            elif any(m.excepted for m in pair.injected):
                # No datagram breaks the pair alone, and one of them is an inherent forgery
                # (e.g. a foreign ClientHello that started the server): excepted.
                failures = []
                s.excepted[
                    "combined with " + next(m.excepted for m in pair.injected if m.excepted)
                ] += 1
        s.failures += failures
        if time.monotonic() - last >= progress:
            last = time.monotonic()
            print(
                f"fuzz: {last - start:5.0f} s  {s.scenarios} scenarios  {s.datagrams} "
                f"datagrams  {len(s.failures)} failures  {len(s.delayed)} delayed",
                file=out,
                flush=True,
            )
    return s


def report(s: Summary, seconds: float, out: Any = sys.stdout) -> None:
    """Print the summary and one reproducer per kind of failure."""
    p = print
    p(
        f"fuzz: {s.scenarios} scenarios, {s.datagrams} injected datagrams in {seconds:.0f} s",
        file=out,
    )
    if s.refused:
        p(f"  variants refused by the configuration: {s.refused} scenarios", file=out)
    p("  states: " + ", ".join(f"{k} {s.states[k]}" for k in STATES), file=out)
    p("  classes: " + ", ".join(f"{k} {s.classes[k]}" for k in CLASSES), file=out)
    p("  variants: " + ", ".join(f"{k} {n}" for k, n in sorted(s.variants.items())), file=out)
    p(
        "  excepted (inherent to DTLS 1.2, target still reading epoch 0): "
        + (", ".join(f"{k} {n}" for k, n in sorted(s.excepted.items())) or "none"),
        file=out,
    )
    if s.delayed:
        p(f"  delayed (completed only after retransmission rounds): {len(s.delayed)}", file=out)
        for sc in s.delayed[:5]:
            p(f"    python ci/fuzz_pairs.py --replay {sc.seed}   # {sc}", file=out)
    groups: dict[str, list[Failure]] = {}
    for f in s.failures:
        groups.setdefault(f.diagnosis(), []).append(f)
    p(f"  failures: {len(s.failures)} in {len(groups)} kinds", file=out)
    for name, fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        by_class = Counter(f.culprit.cls if f.culprit else "-" for f in fs)
        by_state = Counter(f.scenario.state for f in fs)
        p(f"--- {name}: {len(fs)}x", file=out)
        p("    classes: " + ", ".join(f"{k} {n}" for k, n in by_class.most_common()), file=out)
        p("    states: " + ", ".join(f"{k} {n}" for k, n in by_state.most_common()), file=out)
        shown: set[str] = set()
        for f in fs:  # one reproducer per mutation class, three at most
            cls = f.culprit.cls if f.culprit else "-"
            if cls in shown or len(shown) == 3:
                continue
            shown.add(cls)
            p("  " + f.reproducer(), file=out)


def main(argv: list[str] | None = None) -> int:
    """Command line: a timed campaign, or the replay of one seed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", "180")))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "1")))
    ap.add_argument("--replay", type=int, help="run one seed verbosely and report it")
    ap.add_argument("--only", type=int, help="with --replay: inject only mutation #ONLY")
    args = ap.parse_args(argv)
    if args.replay is not None:
        world = World()
        print(scenario_for(args.replay))
        pair = run_one(world, args.replay, only=args.only, verbose=True)
        if pair is None:
            print("variant refused by the configuration")
            return 0
        print(f"excepted: {pair.excepted}; settle rounds: {pair.settle_rounds}")
        for f in pair.failures:
            print(f.reproducer())
        return 1 if pair.failures else 0
    start = time.monotonic()
    print(f"fuzz: budget {args.seconds:g} s from seed {args.seed}", flush=True)
    s = campaign(args.seconds, args.seed)
    report(s, time.monotonic() - start)
    return 1 if s.failures else 0


if __name__ == "__main__":
    sys.exit(main())
