"""A small synchronous driver for one :class:`DtlsConnection` on a real UDP socket.

The socket is bound to 127.0.0.1 on an ephemeral port. As a client it is connected to the peer
at once; as a server it is connected to the address of the first datagram that arrives, so a
connected socket only ever talks to one peer. The loop waits in ``select`` until a datagram
arrives or the connection's timer (``conn.get_timer()``, on ``time.monotonic()``) is due, feeds
the connection, sends what it produced and collects its events. Every wait is bounded by an
overall deadline; running past it raises an AssertionError that lists the events seen.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

from dtls_ossl import Certificate, DtlsConnection, Fingerprint, events

LOCALHOST = "127.0.0.1"
_POLL = 0.05  # re-check the stop condition at least this often (it may watch a subprocess)

Condition = Callable[[list[events.DtlsEvent]], bool]

# The ``certificates`` fixture of conftest.py: (ours, the peer's) per key type.
Certificates = dict[str, tuple[Certificate, Certificate]]


def free_udp_port() -> int:
    """Return a UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCALHOST, 0))
        port: int = s.getsockname()[1]
        return port


def has_event(kind: type[events.DtlsEvent]) -> Condition:
    """Condition: an event of type ``kind`` has been seen."""
    return lambda seen: any(isinstance(e, kind) for e in seen)


def terminated(seen: list[events.DtlsEvent]) -> bool:
    """Condition: the connection ended (ConnectionTerminated is always the last event)."""
    return bool(seen) and isinstance(seen[-1], events.ConnectionTerminated)


def data_received(count: int = 1) -> Condition:
    """Condition: at least ``count`` DataReceived events have been seen."""
    return lambda seen: sum(isinstance(e, events.DataReceived) for e in seen) >= count


class UdpDriver:
    """Drive ``conn`` over a UDP socket on 127.0.0.1.

    :param conn: the connection to drive (either role).
    :param peer: the peer's address for a client; None for a server, which connects its socket
        to the first sender.
    """

    def __init__(self, conn: DtlsConnection, peer: tuple[str, int] | None = None) -> None:
        self.conn = conn
        self.events: list[events.DtlsEvent] = []
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.refused = 0  # ICMP port unreachable reports (peer not listening yet or gone)
        self.drop_received: Callable[[int, bytes], bool] | None = None
        "Loss filter: called with (arrival index, datagram); True drops the datagram."
        self.drop_sent: Callable[[int, bytes], bool] | None = None
        "Loss filter on output: called with (index in ``sent``, datagram); True drops it."
        self.batch = False
        "Feed all datagrams waiting on the socket at once with ``receive_datagrams``."
        self.batches: list[int] = []
        "Sizes of the batches given to ``receive_datagrams``."
        self.dropped = 0
        self.dropped_sent = 0
        self._arrivals = 0
        self.peer = peer
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCALHOST, 0))
        self.sock.setblocking(False)
        if peer is not None:
            self.sock.connect(peer)

    @property
    def address(self) -> tuple[str, int]:
        """Our bound address, to give to the peer."""
        host, port = self.sock.getsockname()
        return host, port

    def close(self) -> None:
        """Close the socket (the connection is left as it is)."""
        self.sock.close()

    def __enter__(self) -> UdpDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------- the verbs

    def connect(self) -> None:
        """Start the handshake as the client and send the ClientHello."""
        self.conn.connect(time.monotonic())
        self._flush()

    def send(self, data: bytes) -> None:
        """Send application data now."""
        self.conn.send(data, time.monotonic())
        self._flush()

    def flush(self) -> None:
        """Send what the connection has queued (after calling one of its inputs directly)."""
        self._flush()

    def set_remote_fingerprints(self, fingerprints: list[Fingerprint]) -> None:
        """Give the peer's fingerprints late (WebRTC answer after the first flight)."""
        self.conn.set_remote_fingerprints(fingerprints, time.monotonic())
        self._flush()

    def shutdown(self) -> None:
        """close() the connection and send its close_notify, if any."""
        self.conn.close(time.monotonic())
        self._flush()

    def run_until(self, condition: Condition, timeout: float = 5.0) -> list[events.DtlsEvent]:
        """Run the loop until ``condition(events)`` holds; return every event seen so far.

        The condition is checked after every step and at least every 50 ms, so it may also
        look at something other than the events (a subprocess's output).

        :raises AssertionError: after ``timeout`` seconds, listing the events seen.
        """
        deadline = time.monotonic() + timeout
        while not condition(self.events):
            now = time.monotonic()
            if now >= deadline:
                raise AssertionError(
                    f"UDP driver: condition not met within {timeout:g} s "
                    f"(state={self.conn.state.value}, sent {len(self.sent)} and received "
                    f"{len(self.received)} datagrams, {self.refused} refused); "
                    f"events: {self.events!r}"
                )
            wait = min(deadline - now, _POLL)
            timer = self.conn.get_timer()
            if timer is not None:
                wait = max(0.0, min(wait, timer - now))
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                self._read_all()
            timer = self.conn.get_timer()
            if timer is not None and time.monotonic() >= timer:
                self.conn.handle_timer(time.monotonic())
            self._flush()
        return self.events

    # ------------------------------------------------------------------------- internals

    def _read_all(self) -> None:
        batch: list[bytes] = []
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                self.refused += 1
                continue
            if self.peer is None:
                self.peer = addr
                self.sock.connect(addr)
            elif addr != self.peer:
                continue  # a connected socket filters these; keep it explicit anyway
            index = self._arrivals
            self._arrivals += 1
            if self.drop_received is not None and self.drop_received(index, data):
                self.dropped += 1
                continue
            self.received.append(data)
            if self.batch:
                batch.append(data)
                continue
            self.conn.receive_datagram(data, time.monotonic())
            self._flush()
        if batch:
            self.batches.append(len(batch))
            self.conn.receive_datagrams(batch, time.monotonic())
            self._flush()

    def _flush(self) -> None:
        for datagram in self.conn.datagrams_to_send(time.monotonic()):
            index = len(self.sent)
            self.sent.append(datagram)
            if self.drop_sent is not None and self.drop_sent(index, datagram):
                self.dropped_sent += 1
                continue
            if self.peer is None:  # pragma: no cover - a server only answers after a read
                raise AssertionError("a server produced output before any peer was known")
            try:
                self.sock.send(datagram)
            except ConnectionRefusedError:
                self.refused += 1
        while (event := self.conn.next_event()) is not None:
            self.events.append(event)
