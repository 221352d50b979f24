"""Blocking I/O for conformance cells: our connection on a UDP socket, and peer subprocesses.

:class:`UdpDriver` drives one :class:`~dtls_ossl.DtlsConnection` on a socket bound to
127.0.0.1 with a ``select()`` loop: it waits until a datagram arrives or the connection's timer
is due, feeds the connection, sends what it produced and collects its events. Every wait is
bounded by the cell's :class:`~dtls_ossl_conformance._model.Deadline`.

:class:`PeerProcess` runs a foreign program in its own process group with its output collected
by reader threads; :meth:`PeerProcess.stop` always ends it (terminate, wait, kill).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO

from dtls_ossl import events
from dtls_ossl._impair import LossyPath
from dtls_ossl.connection import DtlsConnection
from dtls_ossl_conformance._model import CellFailure, Deadline

__all__ = [
    "LOCALHOST",
    "PeerProcess",
    "UdpDriver",
    "free_udp_port",
    "udp_port_bound",
    "wait_udp_bound",
]

LOCALHOST = "127.0.0.1"
_POLL = 0.02
_FLIGHT_GAP = 0.005
"Over a lossy path, datagrams less than this apart are read as one batch (one flight)."

Condition = Callable[[list[events.DtlsEvent]], bool]


def free_udp_port() -> int:
    """Return a UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCALHOST, 0))
        port: int = s.getsockname()[1]
        return port


def udp_port_bound(port: int) -> bool:
    """Tell whether some socket is bound to UDP ``port`` (Linux: /proc/net/udp and udp6)."""
    needle = f":{port:04X} "
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        if any(needle in line.split(None, 3)[1] + " " for line in lines if line.strip()):
            return True
    return False


def wait_udp_bound(port: int, proc: PeerProcess, deadline: Deadline, what: str) -> None:
    """Wait until ``proc`` (a peer that prints nothing when ready) has bound UDP ``port``.

    :raises CellFailure: if the program exits or the deadline passes first.
    """
    while not udp_port_bound(port):
        if proc.proc.poll() is not None:
            raise CellFailure(f"{proc.name} exited ({proc.proc.returncode}) before {what}")
        deadline.check(what)
        time.sleep(0.005)


def has_event(kind: type[events.DtlsEvent]) -> Condition:
    """Condition: an event of type ``kind`` has been seen."""
    return lambda seen: any(isinstance(e, kind) for e in seen)


def ended(seen: list[events.DtlsEvent]) -> bool:
    """Condition: the connection ended (ConnectionTerminated is always the last event)."""
    return bool(seen) and isinstance(seen[-1], events.ConnectionTerminated)


def settled(seen: list[events.DtlsEvent]) -> bool:
    """Condition: the handshake completed or the connection ended."""
    return ended(seen) or any(isinstance(e, events.HandshakeCompleted) for e in seen)


def data_count(count: int) -> Condition:
    """Condition: at least ``count`` DataReceived events, or the end."""
    return lambda seen: (
        ended(seen) or (sum(isinstance(e, events.DataReceived) for e in seen) >= count)
    )


class UdpDriver:
    """Drive ``conn`` over a UDP socket on 127.0.0.1.

    :param conn: the connection (either role).
    :param peer: the peer's address for a client; None for a server, which connects its socket
        to the first sender.
    :param impairment: a lossy, reordering path between the connection and the socket.
    """

    KEEP_INBOUND = 16
    "How many of the first datagrams received are kept as they arrived (see :attr:`inbound`)."

    def __init__(
        self,
        conn: DtlsConnection,
        peer: tuple[str, int] | None = None,
        impairment: LossyPath | None = None,
    ) -> None:
        """Bind the socket (and connect it for a client)."""
        self.conn = conn
        self.impairment = impairment
        self.inbound: list[bytes] = []
        "The first datagrams from the peer, before any impairment (e.g. its ClientHello)."
        self.events: list[events.DtlsEvent] = []
        self.peer = peer
        self.started: float | None = None
        "When our handshake began: connect() for a client, the first datagram for a server."
        self.completed: float | None = None
        self.sent = 0
        self.received = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCALHOST, 0))
        self.sock.setblocking(False)
        if peer is not None:
            self.sock.connect(peer)

    @property
    def port(self) -> int:
        """Our bound UDP port, to give to the peer."""
        port: int = self.sock.getsockname()[1]
        return port

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    @property
    def handshake_time(self) -> float | None:
        """Seconds from the start of our handshake to its completion."""
        if self.started is None or self.completed is None:
            return None
        return self.completed - self.started

    def connect(self) -> None:
        """Start the handshake as the client."""
        self.started = time.monotonic()
        self.conn.connect(self.started)
        self.flush()

    def send(self, data: bytes) -> None:
        """Send one application record."""
        self.conn.send(data, time.monotonic())
        self.flush()

    def shutdown(self) -> None:
        """Close the connection and send close_notify if established."""
        self.conn.close(time.monotonic())
        self.flush()

    def run_until(
        self,
        condition: Condition,
        deadline: Deadline,
        what: str,
        also: Callable[[], bool] | None = None,
    ) -> list[events.DtlsEvent]:
        """Run the loop until ``condition(events)`` (or ``also()``) holds; return the events.

        :raises CellFailure: when the deadline passes first.
        """
        while not condition(self.events) and not (also is not None and also()):
            if deadline.expired():
                raise CellFailure(
                    f"cell timeout ({deadline.seconds:g} s) waiting for {what} "
                    f"(our state {self.conn.state.value}, sent {self.sent}, received "
                    f"{self.received} datagrams)"
                )
            self._step(min(deadline.remaining(), _POLL))
        return self.events

    def _step(self, wait: float) -> None:
        """Wait up to ``wait`` for a datagram or a timer, and handle what is due."""
        now = time.monotonic()
        release = self.impairment.next_release() if self.impairment is not None else None
        for due in (self.conn.get_timer(), release):
            if due is not None:
                wait = max(0.0, min(wait, due - now))
        readable, _, _ = select.select([self.sock], [], [], wait)
        if readable:
            self._read_all()
        if self.impairment is not None:
            to_send, to_receive = self.impairment.due(time.monotonic())
            self._put_on_wire(to_send)
            self._deliver(to_receive)
        timer = self.conn.get_timer()
        if timer is not None and time.monotonic() >= timer:
            self.conn.handle_timer(time.monotonic())
        self.flush()

    @contextlib.contextmanager
    def pumping(self) -> Iterator[None]:
        """Keep the connection running in a thread (retransmissions, late flights) meanwhile.

        For waiting on the peer after our side completed: over a lossy path the peer may still
        need our retransmitted last flight. Nothing else may touch the connection meanwhile.
        """
        stop = threading.Event()
        errors: list[BaseException] = []

        def pump() -> None:
            try:
                while not stop.is_set():
                    self._step(_POLL)
            except BaseException as exc:  # reported by the caller's thread
                errors.append(exc)

        thread = threading.Thread(target=pump, daemon=True, name="udp-driver-pump")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(5)
        if errors:
            raise errors[0]

    def stop_impairment(self) -> None:
        """Turn the impairment off, delivering and sending what it still held."""
        if self.impairment is not None and self.impairment.active:
            to_send, to_receive = self.impairment.stop()
            self._put_on_wire(to_send)
            self._deliver(to_receive)
            self.flush()

    def _read_all(self) -> None:
        batch: list[bytes] = []
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                # A lossy path reads a flight as one batch: wait a moment for the rest.
                lossy = self.impairment is not None and self.impairment.active
                if batch and lossy and select.select([self.sock], [], [], _FLIGHT_GAP)[0]:
                    continue
                break
            except ConnectionRefusedError:
                continue  # ICMP port unreachable: the peer is not listening (yet, or any more)
            if self.peer is None:
                self.peer = addr
                self.sock.connect(addr)
            elif addr != self.peer:
                continue
            if self.started is None:
                self.started = time.monotonic()
            self.received += 1
            if len(self.inbound) < self.KEEP_INBOUND:
                self.inbound.append(data)
            batch.append(data)
        if self.impairment is not None:
            batch = self.impairment.inbound(batch, time.monotonic())
        self._deliver(batch)

    def _deliver(self, datagrams: list[bytes]) -> None:
        for data in datagrams:
            self.conn.receive_datagram(data, time.monotonic())
            self.flush()

    def _put_on_wire(self, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            if self.peer is None:  # pragma: no cover - a server only answers after a read
                raise CellFailure("our server produced output before any peer was known")
            with contextlib.suppress(ConnectionRefusedError):
                self.sock.send(datagram)

    def flush(self) -> None:
        """Send what the connection queued and collect its events."""
        batch = self.conn.datagrams_to_send(time.monotonic())
        self.sent += len(batch)
        if self.impairment is not None:
            batch = self.impairment.outbound(batch, time.monotonic())
        self._put_on_wire(batch)
        while (event := self.conn.next_event()) is not None:
            if isinstance(event, events.HandshakeCompleted):
                self.completed = time.monotonic()
            self.events.append(event)


class PeerProcess:
    """A peer program in its own process group, its stdout and stderr read by threads."""

    def __init__(self, args: Sequence[str], cwd: str, env: dict[str, str] | None = None) -> None:
        """Start ``args`` in ``cwd`` with pipes for stdin, stdout and stderr."""
        self.args = list(args)
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            self.args,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stdout: IO[bytes] = self.proc.stdout  # type: ignore[assignment] # PIPE: never None
        self._reader = threading.Thread(
            target=self._read, args=(stdout,), daemon=True, name="peer-output"
        )
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        # stop() closes the pipe, which can land in the middle of a readline: that ends the
        # output, it is no error of the program.
        with contextlib.suppress(ValueError, OSError):
            for line in iter(stream.readline, b""):
                with self._lock:
                    self._chunks.append(line)

    def text(self) -> str:
        """Everything the program printed so far (stdout and stderr)."""
        with self._lock:
            return b"".join(self._chunks).decode("utf-8", "replace")

    def search(self, pattern: str) -> re.Match[str] | None:
        """Search the output so far for ``pattern`` (multi-line regex)."""
        return re.search(pattern, self.text(), re.MULTILINE)

    def wait_for(self, pattern: str, deadline: Deadline, what: str) -> re.Match[str]:
        """Wait until ``pattern`` appears in the output; return the match.

        :raises CellFailure: if the program exits or the deadline passes first.
        """
        while True:
            m = self.search(pattern)
            if m is not None:
                return m
            if self.proc.poll() is not None:
                self._reader.join(0.5)  # let the reader catch up with an exited program
                m = self.search(pattern)
                if m is not None:
                    return m
                raise CellFailure(f"{self.name} exited ({self.proc.returncode}) before {what}")
            if deadline.expired():
                raise CellFailure(f"cell timeout ({deadline.seconds:g} s) waiting for {what}")
            time.sleep(0.005)

    @property
    def name(self) -> str:
        """The program's base name."""
        return os.path.basename(self.args[0])

    def write(self, data: bytes) -> None:
        """Write to the program's stdin (errors if it exited are ignored)."""
        stdin = self.proc.stdin
        if stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            stdin.write(data)
            stdin.flush()

    def close_stdin(self) -> None:
        """Close the program's stdin (EOF)."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the program to exit; its status or None."""
        try:
            return self.proc.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """End the program and its process group: SIGTERM, wait 2 s, SIGKILL."""
        proc = self.proc
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(2)
        else:
            # The leader exited; children it left in its group (a browser's) go too.
            self._signal(signal.SIGKILL)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._reader.join(1)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
