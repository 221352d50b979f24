"""One DTLS association as a stream of datagrams: :class:`DtlsStream`.

Theory of operation
===================

A stream is the caller's face of one :class:`~dtls_ossl.DtlsConnection` that an endpoint
drives. The endpoint owns the socket, the timer and the event pump; the stream holds what the
caller reads (a bounded queue of received records, one ``recv()`` waiter, the tasks waiting
for the handshake or the end) and its phase: handshaking, established, ended. Every verb that
feeds the connection (``send``, ``close``, ``set_remote_fingerprints``) hands it back to the
endpoint to pump (:class:`StreamOwner` is all the stream knows of the endpoint, so this
module imports nothing of it).

Why a stream ended is :attr:`DtlsStream.error`: None after a clean close, a
:class:`~dtls_ossl.DtlsError` when the connection or the endpoint ended it, or the user's own
exception, unchanged, when a callback of the user's raised (the blame rule of
:mod:`dtls_ossl.exceptions`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias, final

from dtls_ossl import events
from dtls_ossl._roles import Role
from dtls_ossl.aio._stats import EndpointCounts
from dtls_ossl.aio._timers import Timed
from dtls_ossl.aio._types import Address, Fingerprints
from dtls_ossl.connection import ConnectionState, ConnectionStats, DtlsConnection
from dtls_ossl.exceptions import ConnectionClosedError, InvalidStateError
from dtls_ossl.webrtc.sdp import Fingerprint
from dtls_ossl.webrtc.srtp import SrtpKeys

__all__ = [
    "ENDED",
    "ESTABLISHED",
    "HANDSHAKING",
    "DtlsStream",
    "Handler",
    "HandshakeCallback",
    "StreamOwner",
]

HANDSHAKING = 0
ESTABLISHED = 1
ENDED = 2


class StreamOwner(Protocol):
    """What a stream needs of the endpoint that drives it (the endpoint is one)."""

    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.DatagramTransport | None
    _write_paused: asyncio.Future[None] | None
    _max_queued: int
    _count: EndpointCounts

    def _time(self) -> float: ...
    def _after(self, s: DtlsStream, now: float) -> None: ...
    def _close_stream(self, s: DtlsStream, error: BaseException | None) -> None: ...
    async def _wait_writable(self) -> None: ...
    async def _after_stream_closed(self) -> None: ...


def _closed_error(error: BaseException | None) -> ConnectionClosedError:
    if error is None:
        exc = ConnectionClosedError("the DTLS connection is closed")
    else:
        exc = ConnectionClosedError(f"the DTLS connection ended: {error}")
        exc.__cause__ = error
    return exc


@final
class DtlsStream(Timed):
    """One DTLS association seen as a stream of datagrams (an async context manager).

    Made by :func:`~dtls_ossl.aio.connect`, given to a :func:`~dtls_ossl.aio.serve` handler,
    or returned by :meth:`DtlsEndpoint.connection_for`. Each :meth:`send` is one DTLS record
    (one datagram); each :meth:`recv` returns one record's plaintext. Delivery is datagram
    delivery: unordered, unreliable, as DTLS is.

    End of stream: once the connection has ended and every received record has been read,
    :meth:`recv` raises :class:`~dtls_ossl.ConnectionClosedError`. Its ``__cause__`` is None
    for a clean end (the peer's close_notify, or a local :meth:`aclose`), and the error
    otherwise (a :class:`~dtls_ossl.ProtocolError`, :class:`IdleTimeoutError`, ...).
    ``async for data in stream`` stops quietly on a clean end and raises otherwise.
    """

    __slots__ = (
        "_accepted",
        "_addr",
        "_conn",
        "_endpoint",
        "_error",
        "_hello_id",
        "_last_rx",
        "_phase",
        "_rxq",
        "_waiter",
        "_watchers",
    )

    def __init__(
        self,
        endpoint: StreamOwner,
        conn: DtlsConnection,
        addr: Address,
        now: float,
        *,
        accepted: bool,
    ) -> None:
        """Make a stream; only the endpoint does."""
        self._endpoint = endpoint
        self._conn = conn
        self._addr = addr
        self._accepted = accepted
        self._phase = HANDSHAKING
        self._error: BaseException | None = None
        self._rxq: deque[bytes] | None = None
        self._waiter: asyncio.Future[bytes | None] | None = None
        self._watchers: list[asyncio.Future[None]] | None = None
        self._due = None
        self._last_rx = now
        self._hello_id = 0

    # ----------------------------------------------------------------------------- data

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as one DTLS record; waits for the handshake if it is still running.

        Waits while the transport's buffer is above its high-water mark.

        :raises ConnectionClosedError: the connection has ended (``__cause__``: why).
        :raises PayloadSizeError: empty, or above :attr:`max_payload_size`.
        :raises HandshakeError: the handshake this waited for failed.
        """
        if self._phase != ESTABLISHED:
            if self._phase == ENDED:
                raise _closed_error(self._error)
            await self.wait_handshake()
        endpoint = self._endpoint
        if endpoint._write_paused is not None:
            await endpoint._wait_writable()
        self.send_nowait(data)

    def send_nowait(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as one DTLS record now, without waiting (no flow control).

        :raises ConnectionClosedError: the connection has ended.
        :raises InvalidStateError: the handshake has not completed yet.
        :raises PayloadSizeError: empty, or above :attr:`max_payload_size`.
        """
        phase = self._phase
        if phase != ESTABLISHED:
            if phase == ENDED:
                raise _closed_error(self._error)
            raise InvalidStateError("send_nowait() before the handshake completed")
        endpoint = self._endpoint
        now = endpoint._time()
        self._conn.send(data, now)
        endpoint._after(self, now)

    async def recv(self) -> bytes:
        """Return the plaintext of the next record received (waits for one).

        Only one task may wait in :meth:`recv` at a time.

        :raises ConnectionClosedError: the connection ended and everything was read;
            ``__cause__`` is None after a clean close (close_notify), else the error.
        :raises InvalidStateError: another task is already waiting in ``recv()``.
        """
        while True:
            q = self._rxq
            if q:
                data = q.popleft()
                if not q:
                    self._rxq = None  # an empty deque still costs ~600 bytes
                return data
            if self._phase == ENDED:
                raise _closed_error(self._error)
            if self._waiter is not None:
                raise InvalidStateError("recv() is already being awaited by another task")
            fut: asyncio.Future[bytes | None] = self._endpoint._loop.create_future()
            self._waiter = fut
            try:
                result = await fut
            except asyncio.CancelledError:
                # Cancelled after the data was handed over: put it back, first in line.
                if fut.done() and not fut.cancelled():
                    got = fut.result()
                    if got is not None:
                        self._requeue(got)
                raise
            finally:
                self._waiter = None
            if result is not None:
                return result

    def __aiter__(self) -> DtlsStream:
        """Iterate over received records until the connection ends."""
        return self

    async def __anext__(self) -> bytes:
        """Return the next record; stop on a clean end, raise on an error."""
        try:
            return await self.recv()
        except ConnectionClosedError as exc:
            if exc.__cause__ is None:
                raise StopAsyncIteration from None
            raise

    # ---------------------------------------------------------------------------- waiting

    async def wait_handshake(self) -> events.HandshakeCompleted:
        """Wait until the handshake completed and return what was negotiated.

        :raises HandshakeError: the handshake failed (``FingerprintMismatchError``,
            ``HandshakeTimeoutError``, ... : the exact error of the connection).
        :raises Exception: a callback of the user's (e.g. a key-log writer) raised this
            during the handshake; it is re-raised unchanged, never wrapped.
        :raises ConnectionClosedError: the connection was closed before the handshake ended.
        """
        while self._phase == HANDSHAKING:
            await self._watch()
        info = self._conn.handshake_info
        if info is not None:
            return info
        error = self._error
        if error is not None and not isinstance(error, ConnectionClosedError):
            raise error  # the connection's error, or the user's callback's, as itself
        raise _closed_error(error)

    async def wait_closed(self) -> None:
        """Wait until the connection has ended (for any reason); see :attr:`error`."""
        while self._phase != ENDED:
            await self._watch()

    async def _watch(self) -> None:
        fut: asyncio.Future[None] = self._endpoint._loop.create_future()
        watchers = self._watchers
        if watchers is None:
            watchers = self._watchers = []
        watchers.append(fut)
        try:
            await fut
        finally:
            if self._watchers is watchers and fut in watchers:
                watchers.remove(fut)

    # ---------------------------------------------------------------------------- closing

    def close(self) -> None:
        """Close now: send close_notify if established, end the stream. Idempotent."""
        if self._phase == ENDED:
            return
        self._endpoint._close_stream(self, None)

    async def aclose(self) -> None:
        """Close (see :meth:`close`) and let the close_notify leave the socket."""
        self.close()
        await self._endpoint._after_stream_closed()

    async def __aenter__(self) -> DtlsStream:
        """Enter: the stream itself."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Exit: :meth:`aclose`."""
        await self.aclose()

    # ---------------------------------------------------------------------------- queries

    @property
    def peer_address(self) -> Address:
        """The peer's socket address."""
        return self._addr

    @property
    def local_address(self) -> Address | None:
        """Our socket's address, if the endpoint owns a transport."""
        transport = self._endpoint._transport
        if transport is None:
            return None
        address: Address | None = transport.get_extra_info("sockname")
        return address

    @property
    def role(self) -> Role:
        """Our DTLS role."""
        return self._conn.role

    @property
    def state(self) -> ConnectionState:
        """The underlying connection's state."""
        return self._conn.state

    @property
    def closed(self) -> bool:
        """True once the connection has ended (unread records may still be queued)."""
        return self._phase == ENDED

    @property
    def error(self) -> BaseException | None:
        """Why the connection ended; None while open or after a clean close."""
        return self._error

    @property
    def handshake_info(self) -> events.HandshakeCompleted | None:
        """What was negotiated (version, cipher, SRTP profile, peer certificate), or None."""
        return self._conn.handshake_info

    @property
    def max_payload_size(self) -> int:
        """Largest :meth:`send` payload; 0 before the handshake."""
        return self._conn.max_payload_size

    @property
    def stats(self) -> ConnectionStats:
        """The underlying connection's counters."""
        return self._conn.stats

    @property
    def remote_fingerprints(self) -> tuple[Fingerprint, ...] | None:
        """The fingerprints the peer certificate must match (None: not given yet)."""
        return self._conn.remote_fingerprints

    def srtp_keys(self) -> SrtpKeys:
        """Return the DTLS-SRTP keys (RFC 5764 §4.2), resolved to local and remote.

        :raises InvalidStateError: before the handshake, or if no SRTP profile was agreed.
        """
        return self._conn.srtp_keys()

    def export_keying_material(
        self, label: str | bytes, length: int, context: bytes | None = None
    ) -> bytes:
        """Derive ``length`` bytes with the RFC 5705 exporter.

        :raises InvalidStateError: unless established (and not yet closed).
        """
        if self._phase == ENDED:
            raise InvalidStateError("export_keying_material() after the connection ended")
        return self._conn.export_keying_material(label, length, context)

    def set_remote_fingerprints(self, fingerprints: Fingerprints) -> None:
        """Give the peer's fingerprints once the SDP answer arrived (WebRTC).

        Datagrams held meanwhile are processed now.

        :raises InvalidStateError: already checked, ended, or fingerprint checks disabled.
        """
        endpoint = self._endpoint
        now = endpoint._time()
        try:
            self._conn.set_remote_fingerprints(fingerprints, now)
        finally:
            if self._phase != ENDED:
                endpoint._after(self, now)

    def __repr__(self) -> str:
        """Show role, peer and state."""
        return f"<DtlsStream {self._conn.role.value} peer={self._addr!r} {self.state.value}>"

    # ---------------------------------------------------------------------------- internal

    def _deliver(self, data: bytes) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(data)
            return
        q = self._rxq
        if q is None:
            q = self._rxq = deque()
        elif len(q) >= self._endpoint._max_queued:
            self._endpoint._count.overflowed += 1
            return
        q.append(data)

    def _requeue(self, data: bytes) -> None:
        q = self._rxq
        if q is None:
            q = self._rxq = deque()
        q.appendleft(data)

    def _wake_all(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        watchers = self._watchers
        if watchers:
            self._watchers = None
            for fut in watchers:
                if not fut.done():
                    fut.set_result(None)


Handler: TypeAlias = Callable[[DtlsStream], Awaitable[None]]
"``async def handler(stream)``, started as a task once per established peer."
HandshakeCallback: TypeAlias = Callable[[DtlsStream], object]
"Receives a stream whose handshake just completed (a plain function, run synchronously)."
