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

Rule 2 - one timer for the whole endpoint. Each connection has at most one deadline in the
endpoint's :class:`~dtls_ossl.aio._timers.DeadlineHeap`, which keeps one ``loop.call_at``
handle armed at the earliest. A deadline is only moved when a connection needs an *earlier*
wake-up (during a handshake: a *different* one), so the established fast path does no heap
work. Established peers need no wake-up at all, except one per ``idle_timeout`` (deadlines
rounded up to a quarter second so that many peers share one wake-up).

Rule 3 - no per-peer state for strangers. A datagram from an unknown address creates a
connection only if the :class:`~dtls_ossl.aio._admission.AdmissionGate` accepts it: a
ClientHello (first fragment) that passed the limits and, with ``cookie_exchange``, carries a
valid stateless cookie. Everything else from strangers costs one dictionary lookup, a parse
and a counter. Limits drop new work, never old.

Rule 4 - one peer never hurts another. Whatever one connection or one handler raises is
caught, logged and ends that peer only (an exception of the user's stays the user's: it is
the stream's ``error`` as itself, never wrapped in a DtlsError); ``error_received`` (ICMP
errors) is counted and logged, never fatal.

Rule 5 - RFC 7983 demultiplexing first. The first byte of each datagram decides: 20-63 is
DTLS; STUN, RTP/RTCP and everything else go to the caller's callbacks (or are counted as
dropped), so one socket can carry a whole WebRTC 5-tuple.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable
from typing import cast

from dtls_ossl import events
from dtls_ossl._limits import DEFAULT_HANDSHAKE_TIMEOUT, check_positive
from dtls_ossl._roles import Role
from dtls_ossl.aio._admission import AdmissionGate, Verdict
from dtls_ossl.aio._demux import Router, check_sync_callback, discard_awaitable
from dtls_ossl.aio._memory import HeapTrimmer
from dtls_ossl.aio._stats import EndpointCounts, ServerStats
from dtls_ossl.aio._stream import (
    ENDED,
    ESTABLISHED,
    HANDSHAKING,
    DtlsStream,
    Handler,
    HandshakeCallback,
)
from dtls_ossl.aio._timers import DeadlineHeap
from dtls_ossl.aio._types import (
    Address,
    DatagramCallback,
    Fingerprints,
    HandshakeFailedCallback,
    RemoteFingerprints,
    logger,
)
from dtls_ossl.configuration import DtlsConfiguration
from dtls_ossl.connection import ConnectionState, DtlsConnection
from dtls_ossl.cookies import CookieVerifier
from dtls_ossl.exceptions import (
    ConfigurationError,
    ConnectionClosedError,
    DtlsError,
    HandshakeError,
    HandshakeTimeoutError,
    IdleTimeoutError,
    InvalidStateError,
)
from dtls_ossl.webrtc.sdp import Fingerprint, parse_fingerprints

__all__ = ["DtlsEndpoint"]

# Idle deadlines are rounded up to this grid so many peers share one wake-up.
_IDLE_GRID = 4.0  # per second: a quarter-second grid
_RESTARTED = "the peer started a new association (RFC 6347 §4.2.8)"

_DataReceived = events.DataReceived
_HandshakeCompleted = events.HandshakeCompleted
_ConnectionTerminated = events.ConnectionTerminated


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
        check_positive("max_handshakes", max_handshakes, optional=False, integer=True)
        check_positive(
            "max_handshakes_per_address", max_handshakes_per_address, optional=False, integer=True
        )
        check_positive("max_peers", max_peers, optional=False, integer=True)
        check_positive("max_queued_datagrams", max_queued_datagrams, optional=False, integer=True)
        check_positive("handshake_timeout", handshake_timeout, optional=True, integer=False)
        check_positive("idle_timeout", idle_timeout, optional=True, integer=False)
        # RFC 7983: DTLS is handled here, the rest by the router (rule 5).
        self._router = Router(on_stun=on_stun, on_rtp=on_rtp, on_other=on_other)
        check_sync_callback("on_handshake", on_handshake)
        check_sync_callback("on_handshake_failed", on_handshake_failed)
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
        verifier = (
            CookieVerifier(cookie_secret, rotation_interval=cookie_rotation_interval)
            if cookie_exchange
            else None
        )
        self._restarts = verifier is not None  # RFC 6347 §4.2.8 needs the cookie
        self._gate = AdmissionGate(
            self._send_raw,
            verifier=verifier,
            max_handshakes=max_handshakes,
            max_peers=max_peers,
            max_per_source=max_handshakes_per_address,
        )
        self._handshake_timeout = handshake_timeout
        self._accept_timeout = (
            handshake_timeout or configuration.handshake_timeout or DEFAULT_HANDSHAKE_TIMEOUT
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
        # The single timer (rule 2).
        self._timers: DeadlineHeap[DtlsStream] = DeadlineHeap(
            self._fire, clock=self._time, call_at=self._loop.call_at
        )
        self._count = EndpointCounts()  # the gate, the timer heap and the router count the rest
        self._trimmer = HeapTrimmer(self._time)

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
        self._timers.clear()
        for s in list(self._peers.values()):
            err = ConnectionClosedError("the transport was closed")
            err.__cause__ = exc
            self._close_stream(s, err)
        if self._closed_fut is not None and not self._closed_fut.done():
            self._closed_fut.set_result(None)

    def error_received(self, exc: Exception) -> None:
        """Count and log a transport error (e.g. ICMP port unreachable); never fatal."""
        self._count.network_errors += 1
        if isinstance(exc, OSError):
            self._network_error = exc
        logger.debug("network error on the DTLS socket: %r", exc)
        if self._fail_on_refused and isinstance(exc, ConnectionRefusedError):
            for s in list(self._peers.values()):
                # Only a handshake that never heard from its peer: after an answer, the
                # ICMP is stale or forged, and the handshake's own timers decide.
                if s._phase == HANDSHAKING and s._conn.stats.datagrams_received == 0:
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
        self._count.received += 1
        if not data:
            self._count.dropped += 1
            return
        b = data[0]
        if 19 < b < 64:
            s = self._peers.get(addr)
            if s is None:
                self._from_stranger(data, addr)
                return
            if b == 22 and self._restarts and s._phase == ESTABLISHED:
                verdict, hello_id = self._gate.restart(data, addr, s._hello_id)
                if verdict is not Verdict.PASS:
                    if verdict is Verdict.ACCEPT:
                        self._close_stream(s, ConnectionClosedError(_RESTARTED))
                        self._accept(data, addr, hello_id)
                    return
            now = self._time()
            s._last_rx = now
            try:
                s._conn.receive_datagram(data, now)
            except Exception as exc:
                self._stream_failed(s, exc)
                return
            self._after(s, now)
            return
        self._router.deliver(data, addr)

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
        if self._handshake_timeout is not None:
            conn.set_handshake_timeout(self._handshake_timeout, now)
        s = DtlsStream(self, conn, addr, now, accepted=False)
        self._peers[addr] = s
        self._count.in_progress += 1
        if role is Role.CLIENT:
            try:
                conn.connect(now)
            except Exception as exc:
                self._stream_failed(s, exc)
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
    def next_wakeup(self) -> float | None:
        """When (loop time) the endpoint's one timer fires next; None: nothing is due."""
        return self._timers.armed_at

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the endpoint's counters."""
        gate = self._gate
        return ServerStats(
            handshakes_completed=self._count.completed,
            handshakes_failed=self._count.failed,
            handshakes_timed_out=self._count.timed_out,
            handshakes_in_progress=self._count.in_progress,
            active_peers=self._count.active,
            hello_verify_sent=gate.hello_verify_sent,
            cookies_rejected=gate.cookies_rejected,
            peers_rejected_limit=gate.rejected_limit,
            peers_rejected_unknown=self._count.rejected_unknown,
            peers_reaped_idle=self._count.reaped_idle,
            peers_restarted=gate.restarted,
            datagrams_received=self._count.received,
            datagrams_sent=self._count.sent + gate.hello_verify_sent,
            datagrams_dropped=self._count.dropped + gate.dropped + self._router.dropped,
            datagrams_overflowed=self._count.overflowed,
            network_errors=self._count.network_errors,
            handler_errors=self._count.handler_errors + self._router.errors,
            timer_wakeups=self._timers.wakeups,
            memory_releases=self._trimmer.releases,
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
            self._timers.clear()
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

    def _send_raw(self, data: bytes, addr: Address) -> None:
        """Send through whichever sender is current (the gate's HelloVerifyRequests)."""
        self._sendto(data, addr)

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
            self._count.dropped += 1
            return
        verdict, hello_id = self._gate.admit(
            data, addr, handshakes=self._count.in_progress, peers=len(self._peers)
        )
        if verdict is Verdict.ACCEPT:
            self._accept(data, addr, hello_id)

    def _accept(self, data: bytes, addr: Address, hello_id: int) -> None:
        fps: Fingerprints | None = self._fixed_fps
        if self._fps_for is not None:
            try:
                fps = self._fps_for(addr)
            except Exception:
                self._count.handler_errors += 1
                logger.exception("remote_fingerprints(%r) failed", addr)
                fps = None
            if fps is None:
                self._count.rejected_unknown += 1
                return
        try:
            conn = DtlsConnection(
                self._config,
                role=Role.SERVER,
                remote_fingerprints=None if fps is None else parse_fingerprints(fps),
                insecure_skip_fingerprint_check=self._insecure,
            )
        except DtlsError as exc:
            self._count.rejected_unknown += 1
            logger.warning("cannot accept %r: %s", addr, exc)
            return
        now = self._time()
        conn.set_handshake_timeout(self._accept_timeout, now)
        s = DtlsStream(self, conn, addr, now, accepted=True)
        s._hello_id = hello_id
        try:
            if self._gate.cookie_exchange:
                conn.accept_verified_hello(data, now)
            else:
                conn.receive_datagram(data, now)
                if conn.state is ConnectionState.NEW and conn.stats.datagrams_dropped:
                    # OpenSSL refused the hello outright: keep nothing (rule 3).
                    self._count.dropped += 1
                    return
        except Exception:
            self._count.dropped += 1
            logger.exception("starting a connection for %r failed", addr)
            return
        self._peers[addr] = s
        self._count.in_progress += 1
        self._gate.started(addr)
        self._after(s, now)

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
                self._count.network_errors += 1
                logger.warning("sending to %r failed: %r", addr, exc)
            self._count.sent += len(out)
        ev = conn.next_event()
        while ev is not None:
            if type(ev) is _DataReceived:
                s._deliver(ev.data)
            else:
                self._event(s, ev)
            ev = conn.next_event()
        if s._phase != ENDED:
            self._schedule(s)

    def _event(self, s: DtlsStream, ev: events.DtlsEvent) -> None:
        cls = type(ev)
        if cls is _HandshakeCompleted:
            if s._phase != HANDSHAKING:
                return
            s._phase = ESTABLISHED
            self._timers.cancel(s)  # its handshake-time deadline is moot: _after sets the next
            self._count.in_progress -= 1
            if s._accepted:
                self._gate.finished(s._addr)
            self._count.active += 1
            self._count.completed += 1
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
                discard_awaitable(r)
                raise ConfigurationError("on_handshake returned an awaitable; it must be plain")
        except Exception as exc:
            self._count.handler_errors += 1
            logger.exception("on_handshake failed for peer %r; closing it", s._addr)
            self._close_stream(s, exc)
            return False
        return True

    def _ended(self, s: DtlsStream, error: DtlsError | None) -> None:
        phase = s._phase
        if phase == ENDED:
            return
        s._phase = ENDED
        if s._error is None:
            s._error = error
        err = s._error
        if self._peers.get(s._addr) is s:
            del self._peers[s._addr]
        self._timers.cancel(s)
        if phase == HANDSHAKING:
            self._count.in_progress -= 1
            if s._accepted:
                self._gate.finished(s._addr)
            self._count.failed += 1
            if isinstance(err, HandshakeTimeoutError):
                self._count.timed_out += 1
                net = self._network_error
                if net is not None and err.__cause__ is None:
                    err.__cause__ = net  # e.g. ICMP port unreachable: say why it was silent
            failed = self._on_handshake_failed
            if failed is not None and err is not None:
                try:
                    failed(s._addr, err)
                except Exception:
                    self._count.handler_errors += 1
                    logger.exception("on_handshake_failed failed for peer %r", s._addr)
        else:
            self._count.active -= 1
        self._trimmer.peer_ended(failed=phase == HANDSHAKING, in_progress=self._count.in_progress)
        if self._close_transport_when_empty and not self._peers:
            self._close_own_transport()
        s._wake_all()

    def _close_own_transport(self) -> None:
        transport = self._transport
        if transport is not None and self._closed_fut is None:
            self._closed_fut = self._loop.create_future()
            transport.close()  # flushes what is buffered (the close_notify) first

    def _close_stream(self, s: DtlsStream, error: BaseException | None) -> None:
        """End a stream locally: close_notify if established, then clean up."""
        if s._phase == ENDED:
            return
        if error is not None and s._error is None:
            s._error = error
        now = self._time()
        try:
            s._conn.close(now)
        except Exception:  # pragma: no cover - close() only fails on an OpenSSL fault
            logger.exception("closing the connection to %r failed", s._addr)
        self._after(s, now)
        if s._phase != ENDED:  # pragma: no cover - close() always terminates
            self._ended(s, None)

    def _stream_failed(self, s: DtlsStream, exc: Exception) -> None:
        """End only this peer: its connection raised (rule 4).

        A DtlsError is the connection's own (OpenSSL failed). Anything else came from a
        callback of the user's (e.g. a key-log writer): it is counted and logged as the
        user's, with its traceback, and becomes the stream's ``error`` unchanged, so that
        ``wait_handshake()`` (and ``connect()``) raise it as itself.
        """
        if isinstance(exc, DtlsError):
            logger.error("connection to %r failed: %r", s._addr, exc)
        else:
            self._count.handler_errors += 1
            logger.error("a callback raised for peer %r", s._addr, exc_info=exc)
        self._close_stream(s, exc)

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
            self._count.handler_errors += 1
            logger.exception("DTLS handler failed for peer %r", s._addr)
            s.close()

    # -------------------------------------------------------------------- the one timer

    def _schedule(self, s: DtlsStream) -> None:
        """Make sure ``s`` has a deadline no later than it needs (rule 2)."""
        t = s._conn.get_timer()
        d = s._due
        if s._phase == ESTABLISHED:
            if d is not None and (t is None or d <= t):
                return  # fast path: the existing entry fires early enough
            idle = self._idle_timeout
            if idle is not None:
                i = math.ceil((s._last_rx + idle) * _IDLE_GRID) / _IDLE_GRID
                if t is None or i < t:
                    t = i
            if t is None or (d is not None and d <= t):
                return
        elif t is None or t == d:  # the connection's timer includes its handshake deadline
            return
        self._timers.schedule(s, t)

    def _fire(self, s: DtlsStream, now: float) -> None:
        """Handle a stream's deadline: retransmit, time out, or reap it."""
        conn = s._conn
        try:
            t = conn.get_timer()
            if t is not None and t <= now:
                conn.handle_timer(now)
                self._after(s, now)
                return
            idle = self._idle_timeout
            if s._phase == ESTABLISHED and idle is not None and now - s._last_rx >= idle:
                self._count.reaped_idle += 1
                self._close_stream(s, IdleTimeoutError(f"peer sent nothing for {idle:g} s"))
                return
        except Exception as exc:
            self._stream_failed(s, exc)
            return
        self._schedule(s)
