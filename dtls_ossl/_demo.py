"""The engine of ``dtls-ossl demo``: a WebRTC-style DTLS-SRTP handshake over loopback UDP.

Two :class:`~dtls_ossl.DtlsConnection` objects, each with its own generated certificate, learn
each other's fingerprint and role from an SDP offer/answer (RFC 8842 §5.2: the offerer says
``a=setup:actpass``, the answerer ``a=setup:active`` and becomes the DTLS client). Each owns a
UDP socket bound to 127.0.0.1 on an ephemeral port. What a connection wants to send passes
through an in-process impairment (loss, reordering, duplication; seeded, one random stream per
direction) before ``sendto``. One ``selectors`` loop on ``time.monotonic()`` waits for either
socket, the connections' ``get_timer()`` deadlines and the impairment's delayed deliveries;
no threads.

The phases: handshake, fingerprint and parameter checks, one application-data round trip (the
demo's application retries, as DTLS does not retransmit application data), the SRTP keys of
both sides, close_notify. :func:`run_demo` prints a timeline (or a JSON summary) and returns
the exit status. Key material is printed on purpose: the certificates and keys are throwaway.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from dtls_ossl import events, openssl_version
from dtls_ossl.configuration import DEFAULT_SRTP_PROFILES, DtlsConfiguration
from dtls_ossl.connection import ConnectionState, DtlsConnection
from dtls_ossl.exceptions import DtlsError, FingerprintMismatchError, InvalidStateError
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.sdp import Fingerprint, SetupRole, setup_role
from dtls_ossl.webrtc.srtp import SrtpKeys, SrtpProfile

__all__ = ["DemoOptions", "describe_datagram", "run_demo"]

_log = logging.getLogger("dtls_ossl.cli")

LOCALHOST = "127.0.0.1"
MESSAGE = b"hello from client"
"The application payload of the round trip; the server echoes it back."

_REORDER_DELAY = (0.01, 0.03)  # seconds a reordered datagram is held back: later ones overtake
_DUPLICATE_DELAY = (0.0, 0.02)  # seconds after the original that a duplicate is delivered
_ECHO_ATTEMPTS = 10
_MAX_DATAGRAM = 65535

_HANDSHAKE_TYPES = {
    0: "HelloRequest",
    1: "ClientHello",
    2: "ServerHello",
    3: "HelloVerifyRequest",
    4: "NewSessionTicket",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    20: "Finished",
}
_ALERT_LEVELS = {1: "warning", 2: "fatal"}


@dataclass(frozen=True)
class DemoOptions:
    """What ``dtls-ossl demo`` was asked to do; validated by the CLI's argument types."""

    loss: float = 0.0
    "Probability that a datagram is dropped, in each direction."
    reorder: float = 0.0
    "Probability that a datagram is held back 10-30 ms, so that later ones overtake it."
    duplicate: float = 0.0
    "Probability that a datagram is delivered twice."
    seed: int | None = None
    "Seed of the impairment; None picks one (and prints it, so a run can be replayed)."
    mtu: int = 1200
    "Largest datagram, in bytes (UDP payload)."
    profiles: tuple[SrtpProfile, ...] = DEFAULT_SRTP_PROFILES
    "SRTP profiles both sides offer, most preferred first."
    key_type: str = "ecdsa-p256"
    "Key type of both generated certificates."
    initial_timeout: float = 0.1
    "First retransmission timeout in seconds (doubling up to max(1 s, this))."
    timeout: float = 10.0
    "Overall handshake deadline in seconds."
    wrong_fingerprint: bool = False
    "Give the client a wrong expected fingerprint: the handshake must fail closed."
    json: bool = False
    "Print a JSON summary instead of the human timeline."


# --------------------------------------------------------------------------- record labels


def describe_datagram(data: bytes) -> str:
    """Name what a DTLS datagram carries, e.g. ``ServerHello+Certificate+ServerHelloDone``.

    Parses the 13-byte record headers (RFC 6347 §4.1) and, in epoch 0, the 12-byte handshake
    headers (RFC 6347 §4.2.2). Never raises: truncated input is labelled, not trusted.
    """
    labels: list[str] = []
    off = 0
    while off < len(data):
        if len(data) - off < 13:
            labels.append(f"?({len(data) - off} trailing bytes)")
            break
        ctype = data[off]
        epoch = int.from_bytes(data[off + 3 : off + 5], "big")
        length = int.from_bytes(data[off + 11 : off + 13], "big")
        body = data[off + 13 : off + 13 + length]
        off += 13 + length
        if ctype == 22 and epoch == 0:
            labels.extend(_handshake_labels(body))
        elif ctype == 22:
            labels.append("Finished (encrypted)")
        elif ctype == 20:
            labels.append("ChangeCipherSpec")
        elif ctype == 21 and epoch == 0 and len(body) == 2:
            level = _ALERT_LEVELS.get(body[0], str(body[0]))
            labels.append(f"Alert({level} {events.alert_name(body[1])})")
        elif ctype == 21:
            labels.append("Alert (encrypted)")
        elif ctype == 23:
            labels.append("ApplicationData")
        else:
            labels.append(f"ContentType{ctype}")
    return "+".join(labels) if labels else "(empty)"


def _handshake_labels(body: bytes) -> list[str]:
    """Name the handshake messages (or fragments of them) of one epoch-0 record."""
    out: list[str] = []
    pos = 0
    while pos < len(body):
        if len(body) - pos < 12:
            out.append("Handshake(truncated)")
            break
        msg_type = body[pos]
        total = int.from_bytes(body[pos + 1 : pos + 4], "big")
        frag_off = int.from_bytes(body[pos + 6 : pos + 9], "big")
        frag_len = int.from_bytes(body[pos + 9 : pos + 12], "big")
        name = _HANDSHAKE_TYPES.get(msg_type, f"Handshake{msg_type}")
        if frag_off or frag_len < total:
            name += f"[{frag_off}..{frag_off + frag_len}/{total}]"
        out.append(name)
        pos += 12 + frag_len
    return out


# ------------------------------------------------------------------------------ impairment


@dataclass(frozen=True)
class _Fate:
    dropped: bool
    delay: float
    "0 for an immediate delivery; > 0 when reordered."
    duplicate_delay: float | None
    "When a second copy is delivered, relative to now; None for no duplicate."

    @property
    def marks(self) -> list[str]:
        if self.dropped:
            return ["DROPPED"]
        out = []
        if self.delay:
            out.append("REORDERED")
        if self.duplicate_delay is not None:
            out.append("DUPLICATED")
        return out


class _Impairment:
    """One direction's loss/reorder/duplicate decisions, from its own seeded random stream."""

    def __init__(self, options: DemoOptions, seed: int, direction: str) -> None:
        self._options = options
        self._rng = random.Random(f"{seed}/{direction}")

    def fate(self) -> _Fate:
        rng = self._rng
        # Always draw the same count per datagram, so the n-th datagram of a direction meets
        # the same fate for a seed whatever the other options and timings are.
        r_loss, r_reorder, r_dup, r_delay, r_dup_delay = (rng.random() for _ in range(5))
        o = self._options
        if r_loss < o.loss:
            return _Fate(True, 0.0, None)
        delay = 0.0
        if r_reorder < o.reorder:
            lo, hi = _REORDER_DELAY
            delay = lo + r_delay * (hi - lo)
        dup = None
        if r_dup < o.duplicate:
            lo, hi = _DUPLICATE_DELAY
            dup = lo + r_dup_delay * (hi - lo)
        return _Fate(False, delay, dup)


# ----------------------------------------------------------------------------------- peers


@dataclass(eq=False)
class _Peer:
    name: str
    conn: DtlsConnection
    certificate: Certificate
    expected: Fingerprint
    sock: socket.socket
    impairment: _Impairment
    addr: tuple[str, int] = ("", 0)
    other: _Peer | None = None
    completed: events.HandshakeCompleted | None = None
    terminated: events.ConnectionTerminated | None = None
    received: list[bytes] = field(default_factory=list)
    retransmissions: int = 0
    alerts_sent: list[str] = field(default_factory=list)
    alerts_received: list[str] = field(default_factory=list)
    echo: bool = False
    "Echo every DataReceived back (the server's application)."

    def __post_init__(self) -> None:
        self.addr = self.sock.getsockname()[:2]

    @property
    def peer(self) -> _Peer:
        assert self.other is not None
        return self.other

    @property
    def ended(self) -> bool:
        return self.terminated is not None


def _hostport(addr: tuple[str, int]) -> str:
    return f"{addr[0]}:{addr[1]}"


def _short(fp: Fingerprint | str) -> str:
    """Abbreviate a fingerprint for prose: ``sha-256 AB:CD:EF:01:..:67:89``."""
    text = str(fp)
    algorithm, _, hexpart = text.partition(" ")
    pairs = hexpart.split(":")
    if len(pairs) <= 8:
        return text
    return f"{algorithm} {':'.join(pairs[:4])}:..:{':'.join(pairs[-2:])}"


def _error_name(error: DtlsError | None) -> str:
    return "clean close" if error is None else type(error).__name__


def _first_line(text: str, width: int = 90) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 3] + "..."


# ------------------------------------------------------------------------------------ demo


class _Demo:
    """One run: sockets, selector, impairment queue, output."""

    def __init__(self, options: DemoOptions, out: TextIO) -> None:
        self.o = options
        self.out = out
        self.seed = options.seed if options.seed is not None else random.randrange(1 << 31)
        self.arrow = _arrow(out)
        self.sel = selectors.DefaultSelector()
        self.queue: list[tuple[float, int, _Peer, bytes]] = []
        self.counter = itertools.count()
        self.trace: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.peers: list[_Peer] = []
        self.counts = {"sent": 0, "dropped": 0, "reordered": 0, "duplicated": 0}
        self.echo_sent = 0
        self.echoed = False
        self.close_notify_seen = False

    # -------------------------------------------------------------------------- output

    def say(self, line: str = "") -> None:
        if not self.o.json:
            print(line.rstrip(), file=self.out, flush=True)

    def rel(self, now: float) -> float:
        return now - self.t0

    def event_line(self, peer: _Peer, now: float, text: str, kind: str) -> None:
        self.trace.append(
            {"t": round(self.rel(now), 4), "peer": peer.name, "event": kind, "detail": text}
        )
        self.say(f"{self.rel(now):7.3f}  {peer.name + ':':<16}  * {text}")

    # ---------------------------------------------------------------------------- setup

    def setup(self) -> None:
        o = self.o
        # SDP offer/answer: the offerer says actpass, the answerer active (RFC 8842 §5.2).
        offer_setup, answer_setup = SetupRole.ACTPASS.value, SetupRole.ACTIVE.value
        offerer_role = setup_role(offer_setup, answer_setup)
        answerer_role = setup_role(answer_setup, offer_setup)
        offerer_cert = Certificate.generate(o.key_type)
        answerer_cert = Certificate.generate(o.key_type)
        offer_fp = offerer_cert.fingerprint("sha-256")
        answer_fp = answerer_cert.fingerprint("sha-256")
        self.offer = {"setup": offer_setup, "fingerprint": offer_fp.sdp_attribute()}
        self.answer = {"setup": answer_setup, "fingerprint": answer_fp.sdp_attribute()}
        # Each side expects the fingerprint from the other side's SDP.
        answerer_expects = offer_fp
        if o.wrong_fingerprint:
            answerer_expects = Fingerprint(
                offer_fp.algorithm, bytes(b ^ 0x5A for b in offer_fp.value)
            )
        self.roles = {"offerer": offerer_role.value, "answerer": answerer_role.value}
        sides = [
            ("offerer", offerer_role, offerer_cert, answer_fp),
            ("answerer", answerer_role, answerer_cert, answerer_expects),
        ]
        for _, role, cert, expects in sides:
            config = DtlsConfiguration(
                certificate=cert,
                srtp_profiles=o.profiles,
                mtu=o.mtu,
                initial_retransmit_timeout=o.initial_timeout,
                max_retransmit_timeout=max(1.0, o.initial_timeout),
                handshake_timeout=o.timeout,
            )
            conn = DtlsConnection(config, role=role, remote_fingerprints=[expects])
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((LOCALHOST, 0))
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            name = role.value
            direction = "c2s" if name == "client" else "s2c"
            peer = _Peer(name, conn, cert, expects, sock, _Impairment(o, self.seed, direction))
            self.peers.append(peer)
            self.sel.register(sock, selectors.EVENT_READ, peer)
        a, b = self.peers
        a.other, b.other = b, a
        self.client = next(p for p in self.peers if p.name == "client")
        self.server = next(p for p in self.peers if p.name == "server")
        self.server.echo = True
        self.wrong_expected = answerer_expects if o.wrong_fingerprint else None

    def close(self) -> None:
        for p in self.peers:
            self.sel.unregister(p.sock)
            p.sock.close()
        self.sel.close()

    def print_header(self) -> None:
        o = self.o
        c, s = self.client, self.server
        arrow = self.arrow
        pct = "{:.0%}".format
        self.say(f"dtls-ossl demo: a WebRTC-style DTLS-SRTP handshake on {openssl_version()}")
        self.say(
            f"impairment each way: loss {pct(o.loss)}, reorder {pct(o.reorder)}, "
            f"duplicate {pct(o.duplicate)} (seed {self.seed})"
        )
        self.say(
            f"mtu {o.mtu}; retransmit timeout {o.initial_timeout:g} s doubling to "
            f"{max(1.0, o.initial_timeout):g} s; handshake deadline {o.timeout:g} s; "
            f"keys {o.key_type}"
        )
        self.say()
        self.say(f"SDP offer (offerer {arrow} DTLS {self.roles['offerer']}):")
        self.say(f"a=setup:{self.offer['setup']}")
        self.say(self.offer["fingerprint"])
        self.say(f"SDP answer (answerer {arrow} DTLS {self.roles['answerer']}):")
        self.say(f"a=setup:{self.answer['setup']}")
        self.say(self.answer["fingerprint"])
        self.say(
            f"setup_role('actpass', 'active') = {self.roles['offerer']}, "
            f"setup_role('active', 'actpass') = {self.roles['answerer']}"
        )
        if self.wrong_expected is not None:
            self.say(
                f"--wrong-fingerprint: the client expects {_short(self.wrong_expected)} "
                "instead of the offer's"
            )
        self.say(
            f"client on udp {_hostport(c.addr)}, server on udp {_hostport(s.addr)}; "
            f"the impairment sits between them"
        )
        self.say()
        self.say(f"{'time':>7}  {'direction':<16}  {'bytes':>5}  carries")

    # ----------------------------------------------------------------------------- I/O

    def transmit(self, src: _Peer, data: bytes, now: float) -> None:
        fate = src.impairment.fate()
        marks = fate.marks
        self.counts["sent"] += 1
        for mark in marks:
            self.counts[mark.lower()] += 1
        label = describe_datagram(data)
        dst = src.peer
        self.trace.append(
            {
                "t": round(self.rel(now), 4),
                "from": src.name,
                "to": dst.name,
                "bytes": len(data),
                "carries": label,
                "impairment": [m.lower() for m in marks],
            }
        )
        self.say_datagram(now, src, dst, len(data), label, marks)
        if fate.dropped:
            return
        if fate.delay:
            self.schedule(now + fate.delay, src, data)
        else:
            self.sendto(src, data)
        if fate.duplicate_delay is not None:
            self.schedule(now + fate.duplicate_delay, src, data)

    def say_datagram(
        self, now: float, src: _Peer, dst: _Peer, size: int, label: str, marks: list[str]
    ) -> None:
        direction = f"{src.name} {self.arrow} {dst.name}"
        prefix = f"{self.rel(now):7.3f}  {direction:<16}  {size:5d}  "
        tail = f"  {'+'.join(marks)}" if marks else ""
        width = 99 - len(prefix)
        lines: list[str] = []
        current = ""
        for part in label.split("+"):
            piece = part if not current else "+" + part
            if current and len(current) + len(piece) > width:
                lines.append(current)
                current = "+" + part
            else:
                current += piece
        lines.append(current)
        if len(lines[-1]) + len(tail) > width:
            lines.append("")
        lines[-1] += tail
        self.say(prefix + lines[0])
        for line in lines[1:]:
            self.say(" " * len(prefix) + line.lstrip() if line.strip() else " " * len(prefix))

    def schedule(self, at: float, src: _Peer, data: bytes) -> None:
        heapq.heappush(self.queue, (at, next(self.counter), src, data))

    def sendto(self, src: _Peer, data: bytes) -> None:
        try:
            src.sock.sendto(data, src.peer.addr)
        except BlockingIOError:  # pragma: no cover - loopback socket buffers do not fill up
            _log.debug("%s: socket buffer full, datagram lost", src.name)

    def receive(self, peer: _Peer) -> None:
        while True:
            try:
                data, addr = peer.sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:  # ICMP port unreachable from an earlier sendto
                continue
            if addr[:2] != peer.peer.addr:
                _log.debug("%s: ignored a datagram from %s", peer.name, addr)
                continue
            now = time.monotonic()
            peer.conn.receive_datagram(data, now)
            self.pump(peer, now)

    def pump(self, peer: _Peer, now: float) -> None:
        """Send what ``peer`` produced and handle its events, until it has nothing more."""
        conn = peer.conn
        while True:
            event = conn.next_event()
            if event is None or isinstance(
                event, (events.HandshakeCompleted, events.ConnectionTerminated)
            ):
                # Show the datagrams before the news of a completion or an end; after a
                # retransmission or an alert event, which announce them.
                datagrams = conn.datagrams_to_send(now)
                for data in datagrams:
                    self.transmit(peer, data, now)
                if event is None:
                    if not datagrams:
                        return
                    continue
            self.on_event(peer, event, now)

    def on_event(self, peer: _Peer, event: events.DtlsEvent, now: float) -> None:
        if isinstance(event, events.FlightRetransmitted):
            peer.retransmissions = event.count
            nxt = "" if event.next_timeout is None else f"; next timeout {event.next_timeout:.2f} s"
            self.event_line(
                peer, now, f"retransmitted its last flight (#{event.count}{nxt})", "retransmit"
            )
        elif isinstance(event, events.HandshakeCompleted):
            peer.completed = event
            self.event_line(
                peer,
                now,
                f"handshake completed; fingerprint matches {_short(peer.expected)}",
                "handshake_completed",
            )
        elif isinstance(event, events.DataReceived):
            peer.received.append(event.data)
            text = event.data[:40].decode("utf-8", "replace")
            self.event_line(peer, now, f"received {len(event.data)} bytes: {text!r}", "data")
            if peer.echo and conn_open(peer.conn):
                peer.conn.send(event.data, now)
                self.event_line(peer, now, "echoes them back", "echo")
        elif isinstance(event, events.AlertSent):
            level = _ALERT_LEVELS.get(event.level, str(event.level))
            peer.alerts_sent.append(event.name)
            self.event_line(peer, now, f"sent {level} alert {event.name}", "alert_sent")
        elif isinstance(event, events.AlertReceived):
            level = _ALERT_LEVELS.get(event.level, str(event.level))
            peer.alerts_received.append(event.name)
            if event.description == 0:
                self.close_notify_seen = self.close_notify_seen or peer is self.server
            self.event_line(peer, now, f"received {level} alert {event.name}", "alert_received")
        elif isinstance(event, events.ConnectionTerminated):
            peer.terminated = event
            who = "by the peer" if event.by_peer else "locally"
            detail = _error_name(event.error)
            if event.error is not None:
                message = _first_line(str(event.error), 200)
                if len(detail) + len(message) <= 36:
                    detail += f": {message}"
            self.event_line(peer, now, f"connection ended {who} ({detail})", "terminated")
        elif isinstance(event, events.DatagramsHeld):  # pragma: no cover - fingerprints known
            self.event_line(peer, now, f"holding {event.count} datagram(s)", "held")

    def step(self, until: float) -> None:
        """Wait for a datagram, a timer or a delayed delivery (at most until ``until``)."""
        now = time.monotonic()
        wake = until
        for p in self.peers:
            t = p.conn.get_timer()
            if t is not None:
                wake = min(wake, t)
        if self.queue:
            wake = min(wake, self.queue[0][0])
        for key, _ in self.sel.select(max(0.0, wake - now)):
            peer: _Peer = key.data
            self.receive(peer)
        now = time.monotonic()
        while self.queue and self.queue[0][0] <= now:
            _, _, src, data = heapq.heappop(self.queue)
            self.sendto(src, data)
        for p in self.peers:
            t = p.conn.get_timer()
            if t is not None and t <= now:
                p.conn.handle_timer(now)
                self.pump(p, now)

    def run_until(self, done: Callable[[], bool], deadline: float) -> bool:
        while not done():
            if time.monotonic() >= deadline:
                return False
            self.step(deadline)
        return True

    # ---------------------------------------------------------------------------- phases

    def handshake(self) -> None:
        c, s = self.client, self.server
        now = time.monotonic()
        self.t0 = now
        c.conn.connect(now)
        self.pump(c, now)
        # The connections enforce the handshake deadline; ours is only a backstop.
        deadline = now + self.o.timeout + 1.0
        self.run_until(
            lambda: (c.completed is not None and s.completed is not None) or c.ended or s.ended,
            deadline,
        )
        if c.ended or s.ended:
            # Let the other side see the alert (or time out on its own) for a moment.
            grace = time.monotonic() + max(0.5, 5 * self.o.initial_timeout)
            self.run_until(lambda: c.ended and s.ended, grace)

    def round_trip(self) -> None:
        c = self.client
        interval = max(0.2, 2 * self.o.initial_timeout)
        for attempt in range(1, _ECHO_ATTEMPTS + 1):
            now = time.monotonic()
            if not conn_open(c.conn):
                return
            if attempt > 1:
                self.event_line(
                    c,
                    now,
                    f"no echo after {interval:g} s; application resends (#{attempt})",
                    "app_retry",
                )
            c.conn.send(MESSAGE, now)
            self.echo_sent += 1
            self.pump(c, now)
            if self.run_until(lambda: MESSAGE in c.received, now + interval):
                self.echoed = True
                return

    def shutdown(self) -> None:
        c, s = self.client, self.server
        now = time.monotonic()
        if not c.ended:
            c.conn.close(now)
            self.pump(c, now)
        grace = now + max(0.3, 3 * self.o.initial_timeout)
        self.run_until(lambda: s.ended and not self.queue, grace)
        now = time.monotonic()
        if not s.ended:
            if s.completed is not None:
                text = "no close_notify arrived (DTLS does not retransmit alerts); closing"
            else:
                text = "the client has given up; closing too"
            self.event_line(s, now, text, "close")
            s.conn.close(now)
            self.pump(s, now)
        # Deliver what is still queued (e.g. a reordered close_notify), then stop.
        self.run_until(lambda: not self.queue, time.monotonic() + 0.1)

    # ---------------------------------------------------------------------------- checks

    def verdict(self) -> tuple[bool, str]:
        if self.o.wrong_fingerprint:
            return self.verdict_fail_closed()
        c, s = self.client, self.server
        for p in (c, s):
            if p.completed is None:
                why = _error_name(p.terminated.error) if p.terminated else "no answer in time"
                return False, f"the {p.name} handshake did not complete ({why})"
        cc, sc = c.completed, s.completed
        assert cc is not None and sc is not None
        for what, a, b in (
            ("version", cc.protocol_version, sc.protocol_version),
            ("cipher", cc.cipher, sc.cipher),
            ("SRTP profile", cc.srtp_profile, sc.srtp_profile),
        ):
            if a != b:
                return False, f"the sides disagree on the {what}: client {a}, server {b}"
        for p, info in ((c, cc), (s, sc)):
            if not self.fingerprint_verified(p, info):
                return False, f"the {p.name} did not verify the peer's fingerprint"
        ck, sk = cc.srtp_keys, sc.srtp_keys
        if ck is None or sk is None:
            return False, "no SRTP profile was negotiated, so there are no SRTP keys"
        if not ck.mirrors(sk):
            return False, "the SRTP keys do not mirror (client.local != server.remote)"
        if not self.echoed:
            return False, (
                f"the echo of {MESSAGE.decode()!r} did not come back "
                f"after {self.echo_sent} attempt(s)"
            )
        profile = cc.srtp_profile.openssl_name if cc.srtp_profile else "no SRTP"
        return True, (
            f"{cc.protocol_version} + {profile} agreed, fingerprints verified, "
            "SRTP keys mirror, echo returned"
        )

    def verdict_fail_closed(self) -> tuple[bool, str]:
        c, s = self.client, self.server
        if c.completed is not None or s.completed is not None:
            return False, "a handshake completed despite the wrong fingerprint (NOT fail-closed)"
        if c.terminated is None:
            return False, "the client neither completed nor failed: no verdict in time"
        error = c.terminated.error
        if not isinstance(error, FingerprintMismatchError):
            return False, (
                f"the client failed with {_error_name(error)}, expected FingerprintMismatchError"
            )
        try:
            c.conn.srtp_keys()
        except InvalidStateError:
            pass
        else:  # pragma: no cover - srtp_keys() needs a completed handshake
            return False, "the client has SRTP keys after a failed handshake"
        if c.received or s.received:
            return False, "application data flowed after a failed handshake"
        return True, "failed closed as expected: FingerprintMismatchError, no SRTP keys, no data"

    @staticmethod
    def fingerprint_verified(p: _Peer, info: events.HandshakeCompleted) -> bool:
        return (
            info.peer_fingerprint is not None
            and info.peer_fingerprint == p.expected
            and p.expected.matches(info.peer_certificate.der)
            and info.peer_certificate == p.peer.certificate
        )

    # ---------------------------------------------------------------------------- report

    def print_results(self) -> None:
        c, s = self.client, self.server
        self.say()
        if c.completed is not None and s.completed is not None:
            self.print_parameters(c.completed, s.completed)
            return
        for p in (c, s):
            t = p.terminated
            if p.completed is not None:
                self.say(f"{p.name}: handshake completed")
                continue
            if t is None or t.error is None:
                why = "still handshaking" if t is None else f"closed after the {p.peer.name} ended"
                self.say(f"{p.name}: handshake did not complete: {why}")
            else:
                name = _error_name(t.error)
                message = _first_line(str(t.error), 200)
                if isinstance(t.error, FingerprintMismatchError):
                    self.say(f"{p.name}: handshake failed: {name}")
                    for e in t.error.expected:
                        self.say(f"  expected {_short(e)} (from the SDP)")
                    for a in t.error.actual:
                        self.say(f"  got      {_short(a)} (the {p.peer.name}'s certificate)")
                elif len(name) + len(message) < 70:
                    self.say(f"{p.name}: handshake failed: {name}: {message}")
                else:
                    self.say(f"{p.name}: handshake failed: {name}")
                    self.say(f"  {_first_line(message, 96)}")
            try:
                p.conn.srtp_keys()
            except InvalidStateError as exc:
                self.say(f"  srtp_keys() raises InvalidStateError: {_first_line(str(exc), 50)}")

    def print_parameters(
        self, cc: events.HandshakeCompleted, sc: events.HandshakeCompleted
    ) -> None:
        def row(label: str, a: str, b: str) -> None:
            mark = "same" if a == b else "DIFFERENT"
            self.say(f"  {label:<17} {a:<31} {b:<31} {mark}")

        def profile(info: events.HandshakeCompleted) -> str:
            return info.srtp_profile.openssl_name if info.srtp_profile else "(none)"

        def verified(p: _Peer, info: events.HandshakeCompleted) -> str:
            ok = self.fingerprint_verified(p, info)
            return "fingerprint verified" if ok else "fingerprint NOT VERIFIED"

        self.say(f"{'negotiated':<19} {'client':<31} {'server':<31}")
        row("version", cc.protocol_version, sc.protocol_version)
        row("cipher", cc.cipher, sc.cipher)
        row("SRTP profile", profile(cc), profile(sc))
        fc, fs = verified(self.client, cc), verified(self.server, sc)
        self.say(f"  {'peer certificate':<17} {fc:<31} {fs:<31}")

    def print_keys(self) -> None:
        c, s = self.client, self.server
        if c.completed is None or s.completed is None:
            return
        ck, sk = c.completed.srtp_keys, s.completed.srtp_keys
        if ck is None or sk is None:
            self.say("SRTP keys: none (no SRTP profile was negotiated)")
            return
        self.say()
        self.say(f"SRTP master keys, {ck.profile.openssl_name} (RFC 5764 §4.2; throwaway, hex):")
        self.say(f"{'':<15}{'client':<40}{'server':<40}")
        a = self.arrow
        rows = [
            (f"c{a}s key", "local ", ck.local_key, "remote", sk.remote_key),
            (f"c{a}s salt", "local ", ck.local_salt, "remote", sk.remote_salt),
            (f"s{a}c key", "remote", ck.remote_key, "local ", sk.local_key),
            (f"s{a}c salt", "remote", ck.remote_salt, "local ", sk.local_salt),
        ]
        for label, ca, cv, sa, sv in rows:
            ch, sh = cv.hex(), sv.hex()
            mark = "==" if cv == sv else "!="
            chunks = max(1, (len(ch) + 31) // 32)
            for i in range(chunks):
                lab = label if i == 0 else ""
                la, lb = (ca, sa) if i == 0 else ("", "")
                m = mark if i == chunks - 1 else ""
                self.say(
                    f"  {lab:<12} {la:<6} {ch[32 * i : 32 * i + 32]:<32}  "
                    f"{lb:<6} {sh[32 * i : 32 * i + 32]:<32}  {m}".rstrip()
                )
        verdict = "mirror" if ck.mirrors(sk) else "DO NOT mirror"
        self.say(f"  client.local == server.remote and server.local == client.remote: {verdict}")

    def summary(self, ok: bool, reason: str, elapsed: float) -> dict[str, Any]:
        def side(p: _Peer) -> dict[str, Any]:
            info = p.completed
            t = p.terminated
            keys: SrtpKeys | None = info.srtp_keys if info else None
            return {
                "address": _hostport(p.addr),
                "handshake_completed": info is not None,
                "protocol_version": info.protocol_version if info else None,
                "cipher": info.cipher if info else None,
                "srtp_profile": (
                    info.srtp_profile.openssl_name if info and info.srtp_profile else None
                ),
                "expected_fingerprint": str(p.expected),
                "fingerprint_verified": bool(info and self.fingerprint_verified(p, info)),
                "srtp_keys": keys.to_dict() if keys else None,
                "retransmissions": p.retransmissions,
                "alerts_sent": p.alerts_sent,
                "alerts_received": p.alerts_received,
                "received": [d.decode("utf-8", "replace") for d in p.received],
                "error": (
                    None
                    if t is None or t.error is None
                    else {"type": type(t.error).__name__, "message": str(t.error)}
                ),
                "terminated": t is not None,
                "terminated_by_peer": bool(t and t.by_peer),
                "stats": {
                    "datagrams_sent": p.conn.stats.datagrams_sent,
                    "datagrams_received": p.conn.stats.datagrams_received,
                    "datagrams_dropped": p.conn.stats.datagrams_dropped,
                },
            }

        o = self.o
        ck = self.client.completed.srtp_keys if self.client.completed else None
        sk = self.server.completed.srtp_keys if self.server.completed else None
        return {
            "ok": ok,
            "result": "OK" if ok else "FAILED",
            "reason": reason,
            "expected_outcome": "fail-closed" if o.wrong_fingerprint else "success",
            "openssl": openssl_version(),
            "elapsed": round(elapsed, 4),
            "options": {
                "loss": o.loss,
                "reorder": o.reorder,
                "duplicate": o.duplicate,
                "seed": self.seed,
                "mtu": o.mtu,
                "profiles": [p.openssl_name for p in o.profiles],
                "key_type": o.key_type,
                "initial_timeout": o.initial_timeout,
                "timeout": o.timeout,
                "wrong_fingerprint": o.wrong_fingerprint,
            },
            "sdp": {"offer": self.offer, "answer": self.answer, "roles": self.roles},
            "datagrams": dict(self.counts),
            "client": side(self.client),
            "server": side(self.server),
            "keys_mirror": bool(ck and sk and ck.mirrors(sk)),
            "echo_returned": self.echoed,
            "echo_attempts": self.echo_sent,
            "close_notify_received": self.close_notify_seen,
            "timeline": self.trace,
        }


def conn_open(conn: DtlsConnection) -> bool:
    """Whether ``conn`` can send application data."""
    return conn.state is ConnectionState.ESTABLISHED


def _arrow(out: TextIO) -> str:
    """``→`` if the output stream can encode it, else ``->``."""
    try:
        "→".encode(getattr(out, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "->"
    return "→"


def run_demo(options: DemoOptions, out: TextIO) -> int:
    """Run the demo, print its timeline (or JSON summary) to ``out``, return the exit status.

    :returns: 0 if the outcome is the expected one (success, or a fail-closed handshake with
        ``wrong_fingerprint``), 1 otherwise.
    :raises DtlsError: for a configuration the library refuses (MTU, timeouts...).
    :raises OSError: if the loopback sockets cannot be created.
    """
    demo = _Demo(options, out)
    started = time.monotonic()
    try:
        demo.setup()
        demo.print_header()
        demo.handshake()
        c, s = demo.client, demo.server
        if c.completed is not None and s.completed is not None and not (c.ended or s.ended):
            demo.print_results()
            demo.say()
            demo.say(f"application data: the client sends {MESSAGE.decode()!r}, the server echoes")
            demo.round_trip()
            demo.print_keys()
            demo.say()
            demo.say("close: the client sends close_notify")
            demo.shutdown()
        else:
            demo.shutdown()
            demo.print_results()
        demo.say()
    finally:
        demo.close()
    ok, reason = demo.verdict()
    elapsed = time.monotonic() - started
    _log.debug("demo finished in %.3f s: %s", elapsed, reason)
    if options.json:
        print(json.dumps(demo.summary(ok, reason, elapsed), indent=2), file=out)
    else:
        n = demo.counts
        stats = (
            f"{n['sent']} datagrams, {n['dropped']} dropped, {n['reordered']} reordered, "
            f"{n['duplicated']} duplicated; retransmissions: client "
            f"{demo.client.retransmissions}, server {demo.server.retransmissions}; "
            f"{elapsed:.2f} s"
        )
        demo.say(stats)
        demo.say(f"{'OK' if ok else 'FAILED'}: {reason}")
    return 0 if ok else 1
