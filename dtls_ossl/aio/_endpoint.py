"""Many DTLS connections on one datagram transport: :class:`DtlsEndpoint` and :class:`DtlsStream`.

Theory of operation
===================

A :class:`DtlsEndpoint` is an :class:`asyncio.DatagramProtocol` that owns a table of
:class:`~dtls_ossl.DtlsConnection` objects keyed by peer address, and drives each one with
the five sans-IO verbs. ``serve()``, ``connect()`` and the WebRTC use all run on it.

Rule 1 - pump after every input. After each input to a connection (a datagram, a timer, a
``send``, a ``close``) the endpoint sends the connection's ``datagrams_to_send``, handles its
events (data into the stream's queue, futures resolved, the handler started on
``HandshakeCompleted``, clean-up on ``ConnectionTerminated``) and re-schedules its timer.

Rule 2 - one timer for the whole endpoint. Each connection has at most one live entry
``(deadline, seq, stream)`` in a heap; the endpoint keeps one ``loop.call_at`` handle armed at
the earliest live deadline and re-arms it only when that deadline changes. A stream's
``_due`` is the deadline of its live entry; entries whose deadline differs are stale and are
skipped when popped (lazy deletion), and the heap is compacted when more than half of it is
stale. An entry is only pushed when a connection needs an *earlier* wake-up (during a
handshake: a *different* one), so the established fast path does no heap work. Established
peers need no wake-up at all, except one per ``idle_timeout`` (deadlines rounded up to a
quarter second so that many peers share one wake-up).

Rule 3 - no per-peer state for strangers. A datagram from an unknown address creates a
connection only if it is a ClientHello (first fragment) that passed the limits and, with
``cookie_exchange``, carries a valid stateless cookie (:mod:`dtls_ossl.cookies`). Everything
else from strangers costs one dictionary lookup and a counter. Limits drop new work, never old.

Rule 4 - one peer never hurts another. Whatever one connection or one handler raises is
caught, logged and ends that peer only; ``error_received`` (ICMP errors) is counted and
logged, never fatal.

Rule 5 - RFC 7983 demultiplexing first. The first byte of each datagram decides: 20-63 is
DTLS; STUN, RTP/RTCP and everything else go to the caller's callbacks (or are counted as
dropped), so one socket can carry a whole WebRTC 5-tuple.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import ipaddress
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, TypeAlias, cast, final

from dtls_ossl import events
from dtls_ossl._binding import lib
from dtls_ossl._roles import Role
from dtls_ossl.configuration import DtlsConfiguration
from dtls_ossl.connection import ConnectionState, ConnectionStats, DtlsConnection
from dtls_ossl.cookies import CookieVerifier, parse_client_hello_untrusted
from dtls_ossl.exceptions import (
    ConfigurationError,
    ConnectionClosedError,
    DtlsError,
    HandshakeError,
    HandshakeTimeoutError,
    IdleTimeoutError,
    InvalidStateError,
)
from dtls_ossl.webrtc.demux import classify
from dtls_ossl.webrtc.sdp import Fingerprint, parse_fingerprints
from dtls_ossl.webrtc.srtp import SrtpKeys

__all__ = [
    "Address",
    "DatagramCallback",
    "DtlsEndpoint",
    "DtlsStream",
    "Handler",
    "HandshakeCallback",
    "HandshakeFailedCallback",
    "IdleTimeoutError",
    "RemoteFingerprints",
    "ServerStats",
]

logger = logging.getLogger("dtls_ossl.aio")

Address: TypeAlias = tuple[Any, ...]
"A socket address as asyncio reports it: ``(host, port)`` or ``(host, port, flow, scope)``."
Fingerprints: TypeAlias = Iterable[Fingerprint | str]
RemoteFingerprints: TypeAlias = Fingerprints | Callable[[Address], Fingerprints | None] | None
"Expected peer fingerprints: one list for every peer, or a callable ``addr -> list | None``."
Handler: TypeAlias = Callable[["DtlsStream"], Awaitable[None]]
"``async def handler(stream)``, started as a task once per established peer."
DatagramCallback: TypeAlias = Callable[[bytes, Address], object]
"Receives a non-DTLS datagram and its source address (STUN, RTP/RTCP, other)."
HandshakeCallback: TypeAlias = Callable[["DtlsStream"], object]
"Receives a stream whose handshake just completed (a plain function, run synchronously)."
HandshakeFailedCallback: TypeAlias = Callable[[Address, BaseException], object]
"Receives the address and the error of a peer whose handshake failed (a plain function)."

_HANDSHAKING = 0
_ESTABLISHED = 1
_ENDED = 2

# Timer entries due within this much of now are handled in the same wake-up.
_SLACK = 0.001
# Idle deadlines are rounded up to this grid so many peers share one wake-up.
_IDLE_GRID = 4.0  # per second: a quarter-second grid
_DEFAULT_HANDSHAKE_TIMEOUT = 30.0
_RELEASE_INTERVAL = 1.0  # seconds between two malloc_trim calls (_maybe_release_memory)
_COMPACT_MIN = 1024

_DataReceived = events.DataReceived
_HandshakeCompleted = events.HandshakeCompleted
_ConnectionTerminated = events.ConnectionTerminated
_FlightRetransmitted = events.FlightRetransmitted
_heappush = heapq.heappush
_heappop = heapq.heappop


@final
@dataclass(frozen=True, slots=True)
class ServerStats:
    """Counters of an endpoint or server (a snapshot; summed over workers for ``workers > 1``).

    Counters only grow, except the two gauges ``handshakes_in_progress`` and ``active_peers``.
    """

    handshakes_completed: int = 0
    "Handshakes that completed (peer certificate verified)."
    handshakes_failed: int = 0
    "Connections that ended before completing their handshake (including timeouts)."
    handshakes_timed_out: int = 0
    "Of the failed handshakes, those that hit the handshake deadline or OpenSSL's retry limit."
    handshakes_in_progress: int = 0
    "Gauge: connections that exist and have not completed their handshake."
    active_peers: int = 0
    "Gauge: established connections."
    hello_verify_sent: int = 0
    "HelloVerifyRequests sent (stateless: no state is created for them)."
    cookies_rejected: int = 0
    "ClientHellos carrying a cookie that was invalid or expired (answered with a new one)."
    peers_rejected_limit: int = 0
    """New ClientHellos dropped because ``max_handshakes``, ``max_peers`` or
    ``max_handshakes_per_address`` was reached."""
    peers_rejected_unknown: int = 0
    "New ClientHellos dropped because ``remote_fingerprints(addr)`` returned None or failed."
    peers_reaped_idle: int = 0
    "Established peers closed by ``idle_timeout``."
    peers_restarted: int = 0
    "Associations replaced by a new, cookie-verified handshake from the same address."
    datagrams_received: int = 0
    "Datagrams received by the endpoint (every kind)."
    datagrams_sent: int = 0
    "Datagrams sent by the endpoint's DTLS connections (including HelloVerifyRequests)."
    datagrams_dropped: int = 0
    "Datagrams the endpoint itself dropped: strangers' non-hellos, late fragments, unrouted."
    datagrams_overflowed: int = 0
    "Decrypted records dropped because a stream's receive queue was full (nobody reading)."
    network_errors: int = 0
    "Errors reported by the transport (``error_received``: ICMP unreachable and the like)."
    handler_errors: int = 0
    "Exceptions raised by the handler or the datagram callbacks (logged)."

    def __add__(self, other: ServerStats) -> ServerStats:
        """Sum two snapshots field by field (used to aggregate workers)."""
        if not isinstance(other, ServerStats):
            return NotImplemented
        return ServerStats(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(ServerStats))
        )


def _check_positive(name: str, value: object, *, optional: bool, integer: bool) -> None:
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and not isinstance(value, int))
        or value <= 0
    ):
        kind = "an int" if integer else "seconds"
        extra = " or None" if optional else ""
        raise ConfigurationError(f"{name}: expected {kind} > 0{extra}, got {value!r}")


def _check_sync_callback(name: str, cb: object) -> None:
    """Refuse a coroutine function as a synchronous callback, with a one-line reason."""
    if cb is None:
        return
    if not callable(cb):
        raise ConfigurationError(f"{name}: expected a function, got {type(cb).__name__}")
    if inspect.iscoroutinefunction(cb) or inspect.iscoroutinefunction(
        getattr(cb, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        raise ConfigurationError(
            f"{name}: async def callbacks are not supported (callbacks run synchronously, in "
            "datagram order); pass a plain function, which may start a task itself"
        )


def _discard_awaitable(r: object) -> None:
    """Close a coroutine a callback returned, so Python does not warn it was never awaited."""
    close = getattr(r, "close", None)
    if callable(close):
        close()


def _source_key(addr: Address) -> object:
    """Return what ``max_handshakes_per_address`` counts by.

    That is the IPv4 address (also when mapped into IPv6), or the /64 prefix of an IPv6
    address (one host usually has a whole /64).
    """
    host = addr[0]
    if not isinstance(host, str) or ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.partition("%")[0])
    except ValueError:
        return host
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return ip.packed[:8]


def _closed_error(error: BaseException | None) -> ConnectionClosedError:
    if error is None:
        exc = ConnectionClosedError("the DTLS connection is closed")
    else:
        exc = ConnectionClosedError(f"the DTLS connection ended: {error}")
        exc.__cause__ = error
    return exc


@final
class DtlsStream:
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
        "_due",
        "_endpoint",
        "_error",
        "_hello_id",
        "_hs_deadline",
        "_last_rx",
        "_phase",
        "_rxq",
        "_waiter",
        "_watchers",
    )

    def __init__(
        self,
        endpoint: DtlsEndpoint,
        conn: DtlsConnection,
        addr: Address,
        now: float,
        *,
        accepted: bool,
        hs_deadline: float | None,
    ) -> None:
        """Make a stream; only the endpoint does."""
        self._endpoint = endpoint
        self._conn = conn
        self._addr = addr
        self._accepted = accepted
        self._phase = _HANDSHAKING
        self._error: BaseException | None = None
        self._rxq: deque[bytes] | None = None
        self._waiter: asyncio.Future[bytes | None] | None = None
        self._watchers: list[asyncio.Future[None]] | None = None
        self._due: float | None = None
        self._last_rx = now
        self._hs_deadline = hs_deadline
        self._hello_id = 0

    # ----------------------------------------------------------------------------- data

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` as one DTLS record; waits for the handshake if it is still running.

        Waits while the transport's buffer is above its high-water mark.

        :raises ConnectionClosedError: the connection has ended (``__cause__``: why).
        :raises PayloadSizeError: empty, or above :attr:`max_payload_size`.
        :raises HandshakeError: the handshake this waited for failed.
        """
        if self._phase != _ESTABLISHED:
            if self._phase == _ENDED:
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
        if phase != _ESTABLISHED:
            if phase == _ENDED:
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
            if self._phase == _ENDED:
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
        :raises ConnectionClosedError: the connection was closed before the handshake ended.
        """
        while self._phase == _HANDSHAKING:
            await self._watch()
        info = self._conn.handshake_info
        if info is not None:
            return info
        error = self._error
        if isinstance(error, DtlsError) and not isinstance(error, ConnectionClosedError):
            raise error
        raise _closed_error(error)

    async def wait_closed(self) -> None:
        """Wait until the connection has ended (for any reason); see :attr:`error`."""
        while self._phase != _ENDED:
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
        if self._phase == _ENDED:
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
        return self._phase == _ENDED

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
        if self._phase == _ENDED:
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
            if self._phase != _ENDED:
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
            self._endpoint._n_overflowed += 1
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


class DtlsEndpoint(asyncio.DatagramProtocol):
    """DTLS connections to many peers over one datagram transport, plus RFC 7983 demux.

    The WebRTC case: the caller owns the socket, STUN, RTP/RTCP and DTLS share it, and ICE
    tells who the peers are. Either hand the endpoint to
    ``loop.create_datagram_endpoint(lambda: endpoint, sock=...)`` (it is a
    :class:`asyncio.DatagramProtocol`), or keep your own protocol, pass ``sendto=
    transport.sendto`` and forward every datagram to :meth:`datagram_received`.

    Datagrams whose first byte is 20-63 are DTLS and go to the connection of their source
    address (RFC 7983 §7); STUN (0-3) goes to ``on_stun``, RTP/RTCP (128-191) to ``on_rtp``,
    the rest (ZRTP, TURN channels, unknown) to ``on_other``; with no callback they are
    counted as dropped. Callbacks run synchronously in the event loop; exceptions they raise
    are logged and counted. They must be plain functions: an ``async def`` callback is
    refused with :class:`ConfigurationError` (a task per datagram would reorder them and
    let SRTP overtake its keys); start a task from a plain callback if you need one.

    ``on_handshake(stream)`` runs synchronously the moment a peer's handshake completes,
    before any later datagram (of the same receive burst) is routed: install the SRTP keys
    there (``stream.srtp_keys()``) and RTP that arrives right behind the peer's last flight
    finds them. If it raises, the error is logged and counted and that peer is closed.

    Peers are created with :meth:`connection_for`. With a ``handler``, a ClientHello from an
    unknown address also creates a server connection (checked against
    ``remote_fingerprints``, the limits and, with ``cookie_exchange``, a stateless cookie),
    and ``handler(stream)`` runs as a task once its handshake completes. The stream outlives
    the handler: returning does not close it (use ``async with stream``); ``idle_timeout``
    reaps peers nobody talks to, and a handler that raises has its peer closed.

    Must be created while an event loop is running. Durations are seconds.

    :param configuration: certificate, SRTP profiles, MTU and retransmission timers.
    :param sendto: how to send ``(datagram, addr)``; default: the transport from
        :meth:`connection_made`.
    :param on_stun: called with ``(datagram, addr)`` for STUN.
    :param on_rtp: called with ``(datagram, addr)`` for RTP and RTCP (SRTP/SRTCP).
    :param on_other: called with ``(datagram, addr)`` for ZRTP, TURN channel data, unknown.
    :param on_handshake: called with the stream when its handshake completes (every peer,
        accepted or made by :meth:`connection_for`), before its ``handler`` starts.
    :param on_handshake_failed: called with ``(addr, error)`` when a peer's handshake fails
        (e.g. :class:`~dtls_ossl.FingerprintMismatchError`: a rejected certificate).
    :param handler: accept ClientHellos from unknown addresses and run this per peer.
    :param remote_fingerprints: for accepted peers: a list for all, or ``addr -> list|None``.
    :param insecure_skip_fingerprint_check: accepted peers' certificates are not checked.
    :param cookie_exchange: require a stateless cookie (RFC 6347 §4.2.1) from new peers.
    :param cookie_secret: 16+ bytes shared by every process serving this address.
    :param cookie_rotation_interval: seconds per cookie key.
    :param max_handshakes: handshakes in progress beyond which new hellos are dropped.
    :param max_handshakes_per_address: accepted handshakes in progress from one source address
        (one IPv4 address, one IPv6 /64) beyond which its new hellos are dropped, so that one
        host cannot hold every handshake slot and the memory they may buffer. Clients behind
        one NAT share an address, but seldom start 64 handshakes within one handshake time.
    :param max_peers: connections beyond which new hellos are dropped.
    :param handshake_timeout: deadline of every handshake (None: the configuration's).
    :param idle_timeout: close established peers that sent nothing for this long (None: never).
    :param max_queued_datagrams: received records kept per stream for ``recv()``; beyond,
        new ones are dropped (counted in ``datagrams_overflowed``).
    """

    def __init__(
        self,
        configuration: DtlsConfiguration,
        *,
        sendto: Callable[[bytes, Address], object] | None = None,
        on_stun: DatagramCallback | None = None,
        on_rtp: DatagramCallback | None = None,
        on_other: DatagramCallback | None = None,
        on_handshake: HandshakeCallback | None = None,
        on_handshake_failed: HandshakeFailedCallback | None = None,
        handler: Handler | None = None,
        remote_fingerprints: RemoteFingerprints = None,
        insecure_skip_fingerprint_check: bool = False,
        cookie_exchange: bool = False,
        cookie_secret: bytes | None = None,
        cookie_rotation_interval: float = 30.0,
        max_handshakes: int = 1000,
        max_handshakes_per_address: int = 64,
        max_peers: int = 100_000,
        handshake_timeout: float | None = None,
        idle_timeout: float | None = None,
        max_queued_datagrams: int = 256,
    ) -> None:
        """Validate the settings; see the class docstring."""
        if not isinstance(configuration, DtlsConfiguration):
            raise ConfigurationError("configuration: expected a DtlsConfiguration")
        _check_positive("max_handshakes", max_handshakes, optional=False, integer=True)
        _check_positive(
            "max_handshakes_per_address", max_handshakes_per_address, optional=False, integer=True
        )
        _check_positive("max_peers", max_peers, optional=False, integer=True)
        _check_positive("max_queued_datagrams", max_queued_datagrams, optional=False, integer=True)
        _check_positive("handshake_timeout", handshake_timeout, optional=True, integer=False)
        _check_positive("idle_timeout", idle_timeout, optional=True, integer=False)
        for name, cb in (
            ("on_stun", on_stun),
            ("on_rtp", on_rtp),
            ("on_other", on_other),
            ("on_handshake", on_handshake),
            ("on_handshake_failed", on_handshake_failed),
        ):
            _check_sync_callback(name, cb)
        self._fixed_fps: tuple[Fingerprint, ...] | None = None
        self._fps_for: Callable[[Address], Fingerprints | None] | None = None
        if insecure_skip_fingerprint_check:
            if remote_fingerprints is not None:
                raise ConfigurationError(
                    "insecure_skip_fingerprint_check=True cannot be combined with "
                    "remote_fingerprints"
                )
        elif callable(remote_fingerprints) and not isinstance(remote_fingerprints, Fingerprint):
            self._fps_for = remote_fingerprints
        elif remote_fingerprints is not None:
            self._fixed_fps = parse_fingerprints(remote_fingerprints)
        elif handler is not None:
            raise ConfigurationError(
                "accepting peers needs remote_fingerprints (a list, or a callable addr -> list),"
                " or insecure_skip_fingerprint_check=True"
            )
        self._loop = asyncio.get_running_loop()
        self._time = self._loop.time
        self._config = configuration
        self._insecure = bool(insecure_skip_fingerprint_check)
        self._handler = handler
        self._on_handshake = on_handshake
        self._on_handshake_failed = on_handshake_failed
        self._verifier = (
            CookieVerifier(cookie_secret, rotation_interval=cookie_rotation_interval)
            if cookie_exchange
            else None
        )
        self._max_handshakes = max_handshakes
        self._max_per_source = max_handshakes_per_address
        # Accepted handshakes in progress by _source_key (entries at zero are removed).
        self._per_source: dict[object, int] = {}
        self._max_peers = max_peers
        self._handshake_timeout = handshake_timeout
        self._accept_timeout = (
            handshake_timeout or configuration.handshake_timeout or _DEFAULT_HANDSHAKE_TIMEOUT
        )
        self._idle_timeout = idle_timeout
        self._max_queued = max_queued_datagrams
        self._user_sendto = sendto
        self._sendto: Callable[[bytes, Address], object] = sendto or self._drop_output
        self._transport: asyncio.DatagramTransport | None = None
        self._close_transport_when_empty = False
        # connect(fail_on_port_unreachable=True): ICMP port unreachable ends a silent handshake.
        self._fail_on_refused = False
        self._peers: dict[Address, DtlsStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed_fut: asyncio.Future[None] | None = None
        self._write_paused: asyncio.Future[None] | None = None
        self._network_error: OSError | None = None
        # RFC 7983 routing table: one entry per first byte; DTLS is handled before the table.
        routes = {"stun": on_stun, "rtp": on_rtp}
        self._routes: list[DatagramCallback | None] = [
            routes.get(classify(bytes([b])), on_other) for b in range(256)
        ]
        # The single timer (rule 2).
        self._heap: list[tuple[float, int, DtlsStream]] = []
        self._seq = itertools.count()
        self._stale = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._in_timer = False
        # Counters (see ServerStats).
        self._n_completed = 0
        self._n_failed = 0
        self._n_timed_out = 0
        self._n_in_progress = 0
        self._n_active = 0
        self._n_hvr = 0
        self._n_cookies_rejected = 0
        self._n_rejected_limit = 0
        self._n_rejected_unknown = 0
        self._n_reaped_idle = 0
        self._n_restarted = 0
        self._n_received = 0
        self._n_sent = 0
        self._n_dropped = 0
        self._n_overflowed = 0
        self._n_network_errors = 0
        self._n_handler_errors = 0
        # Failed handshakes whose memory the C heap has not been asked to give back yet.
        self._n_unreleased = 0
        self._released_at = -math.inf

    # ------------------------------------------------------------------ DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Use ``transport`` to send, unless a ``sendto`` was given."""
        # asyncio's own datagram transports do not subclass DatagramTransport (3.11).
        transport = cast(asyncio.DatagramTransport, transport)
        self._transport = transport
        if self._user_sendto is None:
            if transport.get_extra_info("peername") is not None:
                # A connected socket (connect()): asyncio refuses an explicit address that
                # differs from its own spelling of the peer's, so send without one.
                def _send_connected(data: bytes, addr: Address) -> None:
                    transport.sendto(data)

                self._sendto = _send_connected
            else:
                self._sendto = transport.sendto

    def connection_lost(self, exc: Exception | None) -> None:
        """End every connection: the transport is gone."""
        self._transport = None
        if self._user_sendto is None:
            self._sendto = self._drop_output
        self._cancel_timer()
        for s in list(self._peers.values()):
            err = ConnectionClosedError("the transport was closed")
            err.__cause__ = exc
            self._close_stream(s, err)
        if self._closed_fut is not None and not self._closed_fut.done():
            self._closed_fut.set_result(None)

    def error_received(self, exc: Exception) -> None:
        """Count and log a transport error (e.g. ICMP port unreachable); never fatal."""
        self._n_network_errors += 1
        if isinstance(exc, OSError):
            self._network_error = exc
        logger.debug("network error on the DTLS socket: %r", exc)
        if self._fail_on_refused and isinstance(exc, ConnectionRefusedError):
            for s in list(self._peers.values()):
                # Only a handshake that never heard from its peer: after an answer, the
                # ICMP is stale or forged, and the handshake's own timers decide.
                if s._phase == _HANDSHAKING and s._conn.stats.datagrams_received == 0:
                    err = HandshakeError(
                        "ICMP port unreachable: nothing listens on the peer's port"
                    )
                    err.__cause__ = exc
                    self._close_stream(s, err)

    def pause_writing(self) -> None:
        """Make ``send()`` wait: the transport's buffer is above its high-water mark."""
        if self._write_paused is None:
            self._write_paused = self._loop.create_future()

    def resume_writing(self) -> None:
        """Release waiting ``send()`` calls: the transport's buffer drained."""
        fut, self._write_paused = self._write_paused, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """Route one datagram: DTLS to its connection, the rest to the callbacks (RFC 7983)."""
        self._n_received += 1
        if not data:
            self._n_dropped += 1
            return
        b = data[0]
        if 19 < b < 64:
            s = self._peers.get(addr)
            if s is None:
                self._from_stranger(data, addr)
                return
            if (
                b == 22
                and s._phase == _ESTABLISHED
                and self._verifier is not None
                and self._maybe_restart(s, data, addr)
            ):
                return
            now = self._time()
            s._last_rx = now
            try:
                s._conn.receive_datagram(data, now)
            except Exception as exc:
                self._stream_failed(s, exc, now)
                return
            self._after(s, now)
            return
        cb = self._routes[b]
        if cb is None:
            self._n_dropped += 1
            return
        try:
            r = cb(data, addr)
        except Exception:
            self._n_handler_errors += 1
            logger.exception("datagram callback failed for a datagram from %r", addr)
            return
        if r is not None and inspect.isawaitable(r):
            _discard_awaitable(r)
            self._n_handler_errors += 1
            logger.error(
                "datagram callback returned an awaitable for a datagram from %r; callbacks "
                "must be plain functions (it was not run)",
                addr,
            )

    # ------------------------------------------------------------------------ public API

    def connection_for(
        self,
        addr: Address,
        role: Role,
        remote_fingerprints: Fingerprints | None = None,
        *,
        insecure_skip_fingerprint_check: bool = False,
    ) -> DtlsStream:
        """Return the stream to ``addr``, creating the connection if there is none.

        A client starts its handshake at once (ICE has found the path); a server waits for
        the ClientHello (never with a cookie exchange: ICE already proved the address). The
        endpoint's ``handler`` is not called for streams made here. The endpoint's
        ``handshake_timeout`` counts from here for both roles; without it, a server that
        never hears a ClientHello waits until it is closed (the connection's own deadline
        starts with its first answer).
        ``remote_fingerprints=None`` means "not known yet": call
        :meth:`DtlsStream.set_remote_fingerprints` when the SDP answer arrives. Await
        :meth:`DtlsStream.wait_handshake` for the outcome.

        :raises InvalidStateError: a live connection to ``addr`` has the other role, or the
            endpoint is closed.
        """
        if self._closing:
            raise InvalidStateError("the endpoint is closed")
        if not isinstance(role, Role):
            raise ConfigurationError(f"role: expected Role.CLIENT or Role.SERVER, got {role!r}")
        existing = self._peers.get(addr)
        if existing is not None:
            if existing._conn.role is not role:
                raise InvalidStateError(
                    f"a {existing._conn.role.value} connection to {addr!r} already exists"
                )
            return existing
        conn = DtlsConnection(
            self._config,
            role=role,
            remote_fingerprints=(
                None if remote_fingerprints is None else parse_fingerprints(remote_fingerprints)
            ),
            insecure_skip_fingerprint_check=insecure_skip_fingerprint_check,
        )
        now = self._time()
        hs = None if self._handshake_timeout is None else now + self._handshake_timeout
        s = DtlsStream(self, conn, addr, now, accepted=False, hs_deadline=hs)
        self._peers[addr] = s
        self._n_in_progress += 1
        if role is Role.CLIENT:
            try:
                conn.connect(now)
            except Exception as exc:
                self._stream_failed(s, exc, now)
                return s
        self._after(s, now)
        return s

    def get_stream(self, addr: Address) -> DtlsStream | None:
        """Return the live stream to ``addr``, or None."""
        return self._peers.get(addr)

    def update_address(self, old: Address, new: Address) -> None:
        """Move the stream of ``old`` to ``new`` (ICE picked another candidate pair).

        :raises InvalidStateError: no stream at ``old``, or one already at ``new``.
        """
        s = self._peers.get(old)
        if s is None:
            raise InvalidStateError(f"no connection to {old!r}")
        if new in self._peers:
            raise InvalidStateError(f"a connection to {new!r} already exists")
        del self._peers[old]
        self._peers[new] = s
        s._addr = new

    @property
    def streams(self) -> list[DtlsStream]:
        """The live streams (a copy)."""
        return list(self._peers.values())

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the endpoint's counters."""
        return ServerStats(
            handshakes_completed=self._n_completed,
            handshakes_failed=self._n_failed,
            handshakes_timed_out=self._n_timed_out,
            handshakes_in_progress=self._n_in_progress,
            active_peers=self._n_active,
            hello_verify_sent=self._n_hvr,
            cookies_rejected=self._n_cookies_rejected,
            peers_rejected_limit=self._n_rejected_limit,
            peers_rejected_unknown=self._n_rejected_unknown,
            peers_reaped_idle=self._n_reaped_idle,
            peers_restarted=self._n_restarted,
            datagrams_received=self._n_received,
            datagrams_sent=self._n_sent,
            datagrams_dropped=self._n_dropped,
            datagrams_overflowed=self._n_overflowed,
            network_errors=self._n_network_errors,
            handler_errors=self._n_handler_errors,
        )

    async def close(self, *, grace: float = 1.0) -> None:
        """Close every connection (close_notify to established peers) and stop.

        Handler tasks get ``grace`` seconds to finish (their ``recv()`` raises
        :class:`~dtls_ossl.ConnectionClosedError`) and are then cancelled. The transport is
        closed if the endpoint received it through :meth:`connection_made`.
        """
        if not self._closing:
            self._closing = True
            for s in list(self._peers.values()):
                self._close_stream(s, None)
            self._cancel_timer()
            self._heap.clear()
            transport = self._transport
            if transport is not None and self._user_sendto is None:
                self._closed_fut = self._loop.create_future()
                transport.close()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._closed_fut is not None:
            await self._closed_fut

    # ------------------------------------------------------------------------- internals

    def _drop_output(self, data: bytes, addr: Address) -> None:
        """Sender used while there is no transport: the datagram is lost (DTLS retransmits)."""

    async def _wait_writable(self) -> None:
        fut = self._write_paused
        if fut is not None:
            await asyncio.shield(fut)

    async def _after_stream_closed(self) -> None:
        # Let a connect() transport flush the close_notify and close.
        fut = self._closed_fut
        if fut is not None:
            await fut

    def _from_stranger(self, data: bytes, addr: Address) -> None:
        """Handle a DTLS datagram from an address without a connection (rule 3)."""
        if self._handler is None or self._closing:
            self._n_dropped += 1
            return
        info = parse_client_hello_untrusted(data)
        if info is None or info.fragment_offset:
            # Not a ClientHello, or a later fragment of one: the client retransmits the whole
            # hello, whose first fragment carries what the cookie check needs.
            self._n_dropped += 1
            return
        if (
            self._n_in_progress >= self._max_handshakes
            or len(self._peers) >= self._max_peers
            or self._per_source.get(_source_key(addr), 0) >= self._max_per_source
        ):
            self._n_rejected_limit += 1
            return
        verifier = self._verifier
        if verifier is not None:
            wall = time.time()
            if not info.cookie or not verifier.check(info, addr, wall):
                if info.cookie:
                    self._n_cookies_rejected += 1
                self._n_hvr += 1
                self._n_sent += 1
                self._sendto(verifier.hello_verify_request(info, addr, wall), addr)
                return
        self._accept(data, addr, hash(info.random))

    def _accept(self, data: bytes, addr: Address, hello_id: int) -> None:
        fps: Fingerprints | None = self._fixed_fps
        if self._fps_for is not None:
            try:
                fps = self._fps_for(addr)
            except Exception:
                self._n_handler_errors += 1
                logger.exception("remote_fingerprints(%r) failed", addr)
                fps = None
            if fps is None:
                self._n_rejected_unknown += 1
                return
        try:
            conn = DtlsConnection(
                self._config,
                role=Role.SERVER,
                remote_fingerprints=None if fps is None else parse_fingerprints(fps),
                insecure_skip_fingerprint_check=self._insecure,
            )
        except DtlsError as exc:
            self._n_rejected_unknown += 1
            logger.warning("cannot accept %r: %s", addr, exc)
            return
        now = self._time()
        s = DtlsStream(self, conn, addr, now, accepted=True, hs_deadline=now + self._accept_timeout)
        s._hello_id = hello_id
        try:
            if self._verifier is not None:
                conn.accept_verified_hello(data, now)
            else:
                conn.receive_datagram(data, now)
                if conn.state is ConnectionState.NEW and conn.stats.datagrams_dropped:
                    # OpenSSL refused the hello outright: keep nothing (rule 3).
                    self._n_dropped += 1
                    return
        except Exception:
            self._n_dropped += 1
            logger.exception("starting a connection for %r failed", addr)
            return
        self._peers[addr] = s
        self._n_in_progress += 1
        key = _source_key(addr)
        self._per_source[key] = self._per_source.get(key, 0) + 1
        self._after(s, now)

    def _source_done(self, addr: Address) -> None:
        """Count out an accepted handshake from ``addr`` that completed or ended."""
        key = _source_key(addr)
        n = self._per_source.get(key, 0) - 1
        if n > 0:
            self._per_source[key] = n
        else:
            self._per_source.pop(key, None)

    def _maybe_restart(self, s: DtlsStream, data: bytes, addr: Address) -> bool:
        """Handle an epoch-0 ClientHello on an established association (RFC 6347 §4.2.8).

        A cookie-less one gets a HelloVerifyRequest (stateless; an established peer ignores
        it). One with a valid cookie and a new random means the peer restarted: the old
        association is ended and a new one starts. Returns True if ``data`` was consumed.
        """
        info = parse_client_hello_untrusted(data)
        if info is None:
            return False  # not an epoch-0 ClientHello: the connection's business
        if info.fragment_offset:
            self._n_dropped += 1
            return True
        verifier = self._verifier
        if verifier is None:  # pragma: no cover - the caller checked
            return False
        wall = time.time()
        if not info.cookie or not verifier.check(info, addr, wall):
            if info.cookie:
                self._n_cookies_rejected += 1
            self._n_hvr += 1
            self._n_sent += 1
            self._sendto(verifier.hello_verify_request(info, addr, wall), addr)
            return True
        hello_id = hash(info.random)
        if hello_id == s._hello_id:
            self._n_dropped += 1  # a late copy of the hello that started this association
            return True
        self._n_restarted += 1
        self._close_stream(
            s, ConnectionClosedError("the peer started a new association (RFC 6347 §4.2.8)")
        )
        self._accept(data, addr, hello_id)
        return True

    def _after(self, s: DtlsStream, now: float) -> None:
        """Pump a connection after an input (rule 1)."""
        conn = s._conn
        out = conn.datagrams_to_send(now)
        if out:
            send = self._sendto
            addr = s._addr
            try:
                for d in out:
                    send(d, addr)
            except Exception as exc:  # a caller's sendto; asyncio's own reports OSErrors
                self._n_network_errors += 1
                logger.warning("sending to %r failed: %r", addr, exc)
            self._n_sent += len(out)
        ev = conn.next_event()
        while ev is not None:
            if type(ev) is _DataReceived:
                s._deliver(ev.data)
            else:
                self._event(s, ev)
            ev = conn.next_event()
        if s._phase != _ENDED:
            self._schedule(s)

    def _event(self, s: DtlsStream, ev: events.DtlsEvent) -> None:
        cls = type(ev)
        if cls is _HandshakeCompleted:
            if s._phase != _HANDSHAKING:
                return
            s._phase = _ESTABLISHED
            s._hs_deadline = None
            self._unschedule(s)  # its handshake-time deadline is moot: _after sets the next
            self._n_in_progress -= 1
            if s._accepted:
                self._source_done(s._addr)
            self._n_active += 1
            self._n_completed += 1
            if self._on_handshake is not None and not self._handshake_callback(s):
                return
            s._wake_all()
            if s._accepted and self._handler is not None:
                task = self._loop.create_task(self._run_handler(s))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        elif isinstance(ev, _ConnectionTerminated):
            self._ended(s, ev.error)

    def _handshake_callback(self, s: DtlsStream) -> bool:
        """Run ``on_handshake(s)``; False (and the peer closed) if it failed."""
        cb = self._on_handshake
        assert cb is not None
        try:
            r = cb(s)
            if r is not None and inspect.isawaitable(r):
                _discard_awaitable(r)
                raise ConfigurationError("on_handshake returned an awaitable; it must be plain")
        except Exception as exc:
            self._n_handler_errors += 1
            logger.exception("on_handshake failed for peer %r; closing it", s._addr)
            self._close_stream(s, exc)
            return False
        return True

    def _ended(self, s: DtlsStream, error: DtlsError | None) -> None:
        phase = s._phase
        if phase == _ENDED:
            return
        s._phase = _ENDED
        if s._error is None:
            s._error = error
        err = s._error
        if self._peers.get(s._addr) is s:
            del self._peers[s._addr]
        self._unschedule(s)
        if phase == _HANDSHAKING:
            self._n_in_progress -= 1
            if s._accepted:
                self._source_done(s._addr)
            self._n_failed += 1
            self._n_unreleased += 1
            if isinstance(err, HandshakeTimeoutError):
                self._n_timed_out += 1
                net = self._network_error
                if net is not None and err.__cause__ is None:
                    err.__cause__ = net  # e.g. ICMP port unreachable: say why it was silent
            failed = self._on_handshake_failed
            if failed is not None and err is not None:
                try:
                    failed(s._addr, err)
                except Exception:
                    self._n_handler_errors += 1
                    logger.exception("on_handshake_failed failed for peer %r", s._addr)
        else:
            self._n_active -= 1
        if self._n_unreleased:
            self._maybe_release_memory()
        s._wake_all()

    def _maybe_release_memory(self) -> None:
        """Give freed C heap pages back after failed handshakes (a flood of them, typically).

        glibc keeps the memory of freed SSL objects resident when anything lives above it in
        the heap: without this, what a flood of abandoned handshakes made OpenSSL allocate
        stays in the RSS after they all timed out. At most once a second, and once more when
        the last handshake in progress ends; a trim costs about a millisecond per 100 MB.
        """
        now = self._time()
        if self._n_in_progress == 0 or now - self._released_at >= _RELEASE_INTERVAL:
            self._n_unreleased = 0
            self._released_at = now
            lib.DtlsOssl_release_memory()
        if self._close_transport_when_empty and not self._peers:
            self._close_own_transport()

    def _close_own_transport(self) -> None:
        transport = self._transport
        if transport is not None and self._closed_fut is None:
            self._closed_fut = self._loop.create_future()
            transport.close()  # flushes what is buffered (the close_notify) first

    def _close_stream(self, s: DtlsStream, error: BaseException | None) -> None:
        """End a stream locally: close_notify if established, then clean up."""
        if s._phase == _ENDED:
            return
        if error is not None and s._error is None:
            s._error = error
        now = self._time()
        try:
            s._conn.close(now)
        except Exception:  # pragma: no cover - close() only fails on an OpenSSL fault
            logger.exception("closing the connection to %r failed", s._addr)
        self._after(s, now)
        if s._phase != _ENDED:  # pragma: no cover - close() always terminates
            self._ended(s, None)

    def _stream_failed(self, s: DtlsStream, exc: Exception, now: float) -> None:
        """End only this peer: its connection raised (a user callback, e.g. key logging)."""
        self._n_handler_errors += 1
        logger.error("connection to %r failed: %r", s._addr, exc)
        if isinstance(exc, DtlsError):
            err: DtlsError = exc
        else:
            err = HandshakeError(f"a callback raised {exc!r}")
            err.__cause__ = exc
        self._close_stream(s, err)

    async def _run_handler(self, s: DtlsStream) -> None:
        handler = self._handler
        if handler is None:  # pragma: no cover - only started with a handler
            return
        try:
            await handler(s)
        except asyncio.CancelledError:
            s.close()
            raise
        except ConnectionClosedError:
            pass  # the peer went away while the handler was talking to it: not a bug
        except Exception:
            self._n_handler_errors += 1
            logger.exception("DTLS handler failed for peer %r", s._addr)
            s.close()

    # -------------------------------------------------------------------- the one timer

    def _schedule(self, s: DtlsStream) -> None:
        """Make sure ``s`` has a heap entry no later than it needs (rule 2)."""
        t = s._conn.get_timer()
        d = s._due
        if s._phase == _ESTABLISHED:
            if d is not None and (t is None or d <= t):
                return  # fast path: the existing entry fires early enough
            idle = self._idle_timeout
            if idle is not None:
                i = math.ceil((s._last_rx + idle) * _IDLE_GRID) / _IDLE_GRID
                if t is None or i < t:
                    t = i
            if t is None or (d is not None and d <= t):
                return
        else:
            h = s._hs_deadline
            if h is not None and (t is None or h < t):
                t = h
            if t is None or t == d:
                return
        if d is not None:
            self._stale += 1
        s._due = t
        _heappush(self._heap, (t, next(self._seq), s))
        at = self._timer_at
        if at is None or t < at or d == at:
            self._rearm()
        if self._stale > _COMPACT_MIN and self._stale * 2 > len(self._heap):
            self._compact()

    def _unschedule(self, s: DtlsStream) -> None:
        """Make the stream's heap entry stale; move the timer if it pointed at that entry."""
        d = s._due
        if d is None:
            return
        s._due = None
        self._stale += 1
        if d == self._timer_at:
            self._rearm()

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._on_timer)
        self._timer_at = when

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _compact(self) -> None:
        heap = [e for e in self._heap if e[2]._due == e[0]]
        heapq.heapify(heap)
        self._heap = heap
        self._stale = 0

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._in_timer = True
        try:
            now = self._time()
            heap = self._heap
            limit = now + _SLACK
            while heap and heap[0][0] <= limit:
                when, _, s = _heappop(heap)
                if s._due != when:
                    if self._stale:
                        self._stale -= 1
                    continue
                s._due = None
                self._fire(s, when if when > now else now)
        finally:
            self._in_timer = False
        self._rearm()

    def _rearm(self) -> None:
        """Arm the timer at the earliest live deadline, dropping stale entries on top.

        The timer handle is replaced only when that deadline differs from the armed one.
        """
        if self._in_timer:
            return  # _on_timer re-arms once it has handled everything due
        heap = self._heap
        while heap and heap[0][2]._due != heap[0][0]:
            _heappop(heap)
            if self._stale:
                self._stale -= 1
        if not heap:
            self._cancel_timer()
        elif heap[0][0] != self._timer_at:
            self._arm(heap[0][0])

    def _fire(self, s: DtlsStream, now: float) -> None:
        """Handle a stream's deadline: retransmit, time out, or reap it."""
        conn = s._conn
        try:
            if s._phase == _HANDSHAKING:
                h = s._hs_deadline
                if h is not None and now >= h:
                    limit = self._handshake_timeout or self._accept_timeout
                    self._close_stream(
                        s, HandshakeTimeoutError(f"handshake did not complete within {limit:g} s")
                    )
                    return
            t = conn.get_timer()
            if t is not None and t <= now:
                conn.handle_timer(now)
                self._after(s, now)
                return
            idle = self._idle_timeout
            if s._phase == _ESTABLISHED and idle is not None and now - s._last_rx >= idle:
                self._n_reaped_idle += 1
                self._close_stream(s, IdleTimeoutError(f"peer sent nothing for {idle:g} s"))
                return
        except Exception as exc:
            self._stream_failed(s, exc, now)
            return
        self._schedule(s)
