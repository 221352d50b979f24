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
from typing import Any, TextIO

from dtls_ossl import events, openssl_version
from dtls_ossl._demo_model import (
    LOCALHOST,
    MESSAGE,
    DemoOptions,
    _arrow,
    _error_name,
    _first_line,
    _hostport,
    _Peer,
    _short,
    conn_open,
    demo_link,
)
from dtls_ossl._demo_report import _Report
from dtls_ossl._demo_wire import _ALERT_LEVELS, describe_datagram
from dtls_ossl.configuration import DtlsConfiguration
from dtls_ossl.connection import DtlsConnection
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.sdp import Fingerprint, SetupRole, setup_role

__all__ = ["DemoOptions", "describe_datagram", "run_demo"]

_log = logging.getLogger("dtls_ossl.cli")

_ECHO_ATTEMPTS = 10
_MAX_DATAGRAM = 65535

# ------------------------------------------------------------------------------------ demo


class _Demo(_Report):
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
            peer = _Peer(
                name,
                conn,
                cert,
                expects,
                sock,
                demo_link(o, self.seed, direction),
            )
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
