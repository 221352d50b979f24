"""The sans-IO DTLS connection.

Theory of operation
===================

A :class:`DtlsConnection` wraps one OpenSSL ``SSL`` object whose transport is a pair of
datagram BIOs of our own (build_ffi.py). It never touches a socket or a clock: the caller feeds
datagrams and the current time in, and pulls datagrams, a timer deadline and events out
(aioquic's five verbs).

Rule 1 - one C call per input. ``receive_datagram``, ``send``, ``handle_timer``, ``connect``
and ``close`` each make exactly one call into the compiled helper (``DtlsOssl_*`` in
build_ffi.py). That call clears OpenSSL's error queue, hands OpenSSL one datagram, drives the
handshake or reads every plaintext record until OpenSSL wants more, frames what OpenSSL wrote
into datagrams, and reads the retransmission timer. The connection then turns the returned
status bits into events. On an established connection the per-record inputs (``send``,
``receive_datagram`` and their batch forms) call ``fast_*`` functions that speak the CPython
API directly: they keep the GIL, and append datagrams and DataReceived events to this object's
lists themselves, returning only the status bits left for Python (usually none).

Rule 2 - one datagram per read. OpenSSL reads whatever its read BIO holds as one "packet" (a
memory BIO would merge datagrams), so the read BIO holds exactly the datagram being fed, read
in place from the caller's bytes, and drops what OpenSSL left of it before the next one.

Rule 3 - re-frame the output. The write BIO appends OpenSSL's records to a per-thread scratch
buffer; the helper splits them on DTLS record headers (13 bytes, RFC 6347 §4.1) and packs whole
records into datagrams of at most ``mtu`` bytes. A record is never split. ``SSL_OP_NO_QUERY_MTU``
and ``SSL_set_mtu`` are both set, or OpenSSL falls back to a 256-byte MTU without a socket.

Rule 4 - OpenSSL keeps its own clock. ``DTLSv1_get_timeout`` gives the time left on OpenSSL's
wall clock; ``get_timer()`` is the caller's ``now`` at the last call plus that time.
``handle_timer`` tolerates "not expired yet" (OpenSSL returns 0) and recomputes the deadline,
so it never spins. The retransmission schedule (initial value, doubling, cap) comes from the
configuration through ``DTLS_set_timer_cb``; the overall handshake deadline is ours.

Rule 5 - the fingerprint decides, inside the handshake. The certificate verification callback
runs OpenSSL's structural checks and then compares the peer certificate with the expected SDP
fingerprints; a mismatch fails the handshake with a fatal alert, so no keys or data ever come
out of it. When the fingerprints are not known yet (WebRTC's answer can arrive after the peer's
first flight), the peer's flight is held, bounded, until ``set_remote_fingerprints``.

Rule 6 - errors by who is to blame. Garbage from the network is dropped and counted; a fatal
alert or failed handshake becomes ``ConnectionTerminated(error=...)`` (always the last event);
local misuse raises :class:`InvalidStateError`; an exception raised in a callback is re-raised
unchanged from the call that triggered it, and the connection is then failed.

A connection is not thread-safe: drive each one from one thread at a time.
"""

from __future__ import annotations

import enum
from collections import deque
from itertools import repeat

from dtls_ossl import _openssl, events
from dtls_ossl._binding import Scratch, consume_errors, ffi, lib, openssl_assert, scratch
from dtls_ossl._callbacks import CallbackState
from dtls_ossl._limits import check_positive
from dtls_ossl._records import is_client_hello_untrusted as _is_client_hello_untrusted
from dtls_ossl._records import may_feed_untrusted as _may_feed_untrusted
from dtls_ossl._roles import Role
from dtls_ossl._stats import ConnectionStats
from dtls_ossl._util import TYPE_CHECKING, debug_logger, final
from dtls_ossl.configuration import DtlsConfiguration
from dtls_ossl.events import DtlsEvent, HandshakeCompleted
from dtls_ossl.exceptions import (
    CallbackError,
    CertificateVerificationError,
    ConfigurationError,
    DtlsError,
    FingerprintMismatchError,
    HandshakeError,
    HandshakeTimeoutError,
    InvalidStateError,
    OpenSSLError,
    PayloadSizeError,
    ProtocolError,
)
from dtls_ossl.webrtc.sdp import (
    FINGERPRINT_ALGORITHMS,
    Fingerprint,
    parse_fingerprints,
    select_fingerprints,
)
from dtls_ossl.webrtc.srtp import SrtpKeys, SrtpProfile

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from dtls_ossl.webrtc.certificate import Certificate

__all__ = ["ConnectionState", "ConnectionStats", "DtlsConnection"]

_WIRE = int(lib.DTLSOSSL_WIRE)
_PLAIN = int(lib.DTLSOSSL_PLAIN)
_HANDSHAKE_DONE = int(lib.DTLSOSSL_HANDSHAKE_DONE)
_PEER_CLOSED = int(lib.DTLSOSSL_PEER_CLOSED)
_FATAL = int(lib.DTLSOSSL_FATAL)
_ALERTS = int(lib.DTLSOSSL_ALERTS)
_DROPPED = int(lib.DTLSOSSL_DROPPED)
_TIMER = int(lib.DTLSOSSL_TIMER)
_RETRANSMITTED = int(lib.DTLSOSSL_RETRANSMITTED)
_OVERFLOW = int(lib.DTLSOSSL_OVERFLOW)
_CALLBACK = int(lib.DTLSOSSL_CALLBACK)
_TOO_BIG = int(lib.DTLSOSSL_TOO_BIG)
_NO_SCRATCH = int(lib.DTLSOSSL_NO_SCRATCH)
# The per-record paths of an established connection (CPython functions in build_ffi.py): they
# append datagrams to the connection's output list and DataReceived events to its event list
# themselves, and return the status bits left for Python (0: nothing else to do).
_fast_receive = _openssl.fast_receive
_fast_send = _openssl.fast_send
_fast_receive_many = _openssl.fast_receive_many
_fast_send_many = _openssl.fast_send_many
_openssl.fast_setup(events.DataReceived, events.DataReceived.__dict__["data"])
_unpack = ffi.unpack
_DataReceived = events.DataReceived
# Building an event with object.__new__ and the slot descriptor's __set__ skips the Python-level
# __init__ (about 50 ns of a record); the result is an ordinary, immutable DataReceived.
_new = object.__new__
_setattr = object.__setattr__
_set_data = _DataReceived.__dict__["data"].__set__
# Runs an iterator to its end at C speed (the slow path builds events with map()).
_sink: deque[object] = deque(maxlen=0)
_exhaust = _sink.extend


def _checked_state(insecure: bool) -> CallbackState:
    """Make the shared, never written state of connections past certificate verification."""
    state = CallbackState(None)
    state.peer_der = b""  # "already checked": set_remote_fingerprints() refuses
    state.insecure = insecure
    return state


_CHECKED = _checked_state(False)
_CHECKED_INSECURE = _checked_state(True)

_X509_V_ERR_CERT_REJECTED = 28
# ERR_LIB_SSL and SSL_R_READ_TIMEOUT_EXPIRED (openssl/err.h, sslerr.h): DTLS gave up retrying.
_ERR_LIB_SSL = 20
_SSL_R_READ_TIMEOUT_EXPIRED = 312
# next_event() pops from the front of a queue this short (a memmove of a few pointers, the
# fastest path for the usual one or two events); a longer one is read from a head index and
# compacted once this many events were read (and at least half of it).
_POP_FRONT_MAX = 32
_COMPACT_AT = 256
_MAX_DATAGRAM = 65535


class ConnectionState(enum.Enum):
    """Where a connection is in its life. States only move forward."""

    NEW = "new"
    "Created; a client waits for ``connect()``, a server for the first ClientHello."
    HANDSHAKING = "handshaking"
    "Flights are being exchanged."
    ESTABLISHED = "established"
    "The handshake completed and the peer's certificate was verified; data may flow."
    CLOSED = "closed"
    "Ended cleanly (close_notify either way, or ``close()``)."
    FAILED = "failed"
    "Ended by an error; ``ConnectionTerminated.error`` says which."


_ESTABLISHED = ConnectionState.ESTABLISHED


def _normalise_fingerprints(fingerprints: Iterable[Fingerprint | str]) -> tuple[Fingerprint, ...]:
    return parse_fingerprints(
        fingerprints,
        empty_hint="; pass None to give them later with set_remote_fingerprints()",
    )


@final
class DtlsConnection:
    """One DTLS association with one peer, driven without I/O.

    Inputs: :meth:`connect` (client), :meth:`receive_datagram`, :meth:`handle_timer`,
    :meth:`send`, :meth:`close`. Outputs, to pull after every input:
    :meth:`datagrams_to_send`, :meth:`get_timer` and :meth:`next_event` (or :meth:`events`,
    all at once).

    ``now`` is always the caller's monotonic clock in seconds. Not thread-safe.

    :param configuration: shared settings (certificate, profiles, MTU, timers).
    :param role: :attr:`Role.CLIENT` sends the ClientHello; :attr:`Role.SERVER` answers.
    :param remote_fingerprints: the peer's SDP fingerprints (RFC 8122). As RFC 8122 §5 says,
        only those of the strongest hash function given count (sha-512 > sha-384 > sha-256 >
        sha-224 > sha-1, see :func:`~dtls_ossl.webrtc.sdp.select_fingerprints`): the peer
        certificate must match one of them, or the handshake fails with
        :class:`FingerprintMismatchError` and a fatal ``bad_certificate`` alert. ``None`` (the
        default) means "not known yet": the peer's certificate flight is held until
        :meth:`set_remote_fingerprints`.
    :param insecure_skip_fingerprint_check: accept any well-formed peer certificate. This
        removes all authentication; only for tests and debugging.
    """

    __slots__ = (
        "_addr",
        "_c",
        "_cb",
        "_config",
        "_data_mtu",
        "_ev_head",
        "_events",
        "_expected",
        "_handle",
        "_handshake_deadline",
        "_handshake_timeout",
        "_held",
        "_info",
        "_n_dropped",
        "_n_held",
        "_n_received",
        "_n_retransmissions",
        "_n_sent",
        "_out",
        "_received_alert",
        "_role",
        "_sc",
        "_sent_alert",
        "_state",
        "_timer_at",
    )

    def __init__(
        self,
        configuration: DtlsConfiguration,
        *,
        role: Role,
        remote_fingerprints: Iterable[Fingerprint | str] | None = None,
        insecure_skip_fingerprint_check: bool = False,
    ) -> None:
        """Create the connection and its OpenSSL object (no datagram is produced yet)."""
        if not isinstance(configuration, DtlsConfiguration):
            raise ConfigurationError("configuration: expected a DtlsConfiguration")
        if not isinstance(role, Role):
            raise ConfigurationError(f"role: expected Role.CLIENT or Role.SERVER, got {role!r}")
        self._config = configuration
        self._role = role
        self._cb = CallbackState(configuration.key_log_writer)
        self._expected: tuple[Fingerprint, ...] | None = None
        if insecure_skip_fingerprint_check:
            if remote_fingerprints is not None:
                raise ConfigurationError(
                    "insecure_skip_fingerprint_check=True cannot be combined with "
                    "remote_fingerprints"
                )
            self._cb.insecure = True
        elif remote_fingerprints is not None:
            self._set_expected(_normalise_fingerprints(remote_fingerprints))
        self._handle = ffi.new_handle(self._cb)  # owned: keeps the state alive while C has it
        self._c: Any = self._new_ssl()
        # The C object's address for the fast paths, set once established (they run only then).
        self._addr = 0
        self._state = ConnectionState.NEW
        # A list, not a deque: a deque's first block alone costs ~600 bytes per connection, and
        # the C fast paths append to it with PyList_Append. next_event() reads from _ev_head
        # and compacts the list now and then, so draining n events costs O(n), not O(n^2).
        self._events: list[events.DtlsEvent] = []
        self._ev_head = 0
        self._out: list[bytes] = []
        self._held: list[bytes] | None = None
        self._timer_at: float | None = None
        self._handshake_deadline: float | None = None
        self._handshake_timeout = configuration.handshake_timeout
        self._data_mtu = 0
        self._info: events.HandshakeCompleted | None = None
        self._sent_alert: int | None = None
        self._received_alert: int | None = None
        self._n_received = 0
        self._n_dropped = 0
        self._n_held = 0
        self._n_sent = 0
        self._n_retransmissions = 0
        # The scratch the fast paths use (bound in C when the handshake completes): that of
        # the thread that last drove them.
        self._sc: Scratch = scratch()

    # ----------------------------------------------------------------------------- inputs

    def connect(self, now: float) -> None:
        """Start the handshake as the client: queues the ClientHello.

        After calling this, call :meth:`datagrams_to_send`, :meth:`get_timer` and
        :meth:`next_event`.

        :raises InvalidStateError: on a server, or if already started.
        """
        if self._role is not Role.CLIENT:
            raise InvalidStateError("connect() is for the client role; a server waits")
        if self._state is not ConnectionState.NEW:
            raise InvalidStateError(f"connect() called in state {self._state.value}")
        self._start(now)
        sc = scratch()
        self._handle_flags(lib.DtlsOssl_handshake(self._c, sc.ptr), now, sc)

    def receive_datagram(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Process one datagram received from the peer.

        Malformed, forged or late datagrams are dropped silently (RFC 6347 §4.1.2.7) and
        counted in :attr:`stats`; this never raises because of what the peer sent.
        After calling this, call :meth:`datagrams_to_send`, :meth:`get_timer` and
        :meth:`next_event`.

        :raises Exception: re-raises an exception raised by a key-log callback.
        """
        if self._state is _ESTABLISHED:
            # One C call counts the datagram, decrypts it and queues its DataReceived events.
            r = _fast_receive(self._addr, data, self._out, self._events)
            if r:
                self._fast_receive_outcome(r, data, now)
            return
        self._n_received += 1
        self._receive_slow(data if type(data) is bytes else bytes(data), now)

    def receive_datagrams(
        self, datagrams: Sequence[bytes | bytearray | memoryview], now: float
    ) -> None:
        """Process many datagrams from the peer in as few C calls as possible.

        Equivalent to calling :meth:`receive_datagram` for each one, in order.
        """
        if self._state is not _ESTABLISHED:
            for d in datagrams:
                self.receive_datagram(d, now)
            return
        n = len(datagrams)
        i = self._run_batch(
            lambda i: _fast_receive_many(self._addr, datagrams, i, self._out, self._events),
            n,
            now,
        )
        if i < n and self._state is not _ESTABLISHED:
            for d in datagrams[i:]:  # after the end: dropped and counted
                self.receive_datagram(d, now)

    def handle_timer(self, now: float) -> None:
        """Handle the timer deadline returned by :meth:`get_timer`.

        Retransmits the last flight when OpenSSL's timer has expired, and ends the connection
        with :class:`HandshakeTimeoutError` when the handshake deadline has passed. Calling it
        early is harmless. After calling this, call :meth:`datagrams_to_send`,
        :meth:`get_timer` and :meth:`next_event`.
        """
        if self._state in (ConnectionState.CLOSED, ConnectionState.FAILED):
            return
        deadline = self._handshake_deadline
        if (
            deadline is not None
            and now >= deadline
            and self._state in (ConnectionState.NEW, ConnectionState.HANDSHAKING)
        ):
            timeout = self._handshake_timeout or 0.0  # never None while a deadline is set
            self._terminate(
                HandshakeTimeoutError(
                    f"handshake did not complete within {timeout:g} s "
                    f"({self._n_retransmissions} retransmissions)"
                ),
                by_peer=False,
            )
            return
        if self._timer_at is None or now < self._timer_at:
            return
        sc = scratch()
        self._handle_flags(lib.DtlsOssl_handle_timeout(self._c, sc.ptr), now, sc)

    def send(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Encrypt ``data`` as one DTLS record, queued for :meth:`datagrams_to_send`.

        :raises InvalidStateError: before the handshake completed or after the end.
        :raises PayloadSizeError: if ``data`` is empty or longer than :attr:`max_payload_size`.
        """
        if self._state is not _ESTABLISHED:
            raise InvalidStateError(
                f"send() needs an established connection, not {self._state.value}"
            )
        # One C call checks the size against the data MTU, encrypts and queues the datagram.
        r = _fast_send(self._addr, data, self._out)
        if r:
            self._fast_send_outcome(r, data, now)

    def send_many(self, payloads: Sequence[bytes | bytearray | memoryview], now: float) -> None:
        """Encrypt each payload as its own record, in as few C calls as possible.

        Equivalent to calling :meth:`send` for each payload, in order; the sizes are checked
        before anything is sent.

        :raises InvalidStateError: if not established, or if the connection ended part way
            (its ConnectionTerminated event says why).
        :raises PayloadSizeError: if a payload is empty or longer than
            :attr:`max_payload_size` (nothing is sent).
        """
        if self._state is not ConnectionState.ESTABLISHED:
            raise InvalidStateError(
                f"send_many() needs an established connection, not {self._state.value}"
            )
        n = len(payloads)
        i = self._run_batch(lambda i: _fast_send_many(self._addr, payloads, i, self._out), n, now)
        if i < 0:
            limit = self._data_mtu
            bad = next((m for m in map(_nbytes, payloads) if not 0 < m <= limit), 0)
            raise PayloadSizeError(
                f"send_many(): a {bad}-byte payload does not fit one datagram "
                f"(1..{limit} bytes with mtu={self._config.mtu}); nothing was sent"
            )
        if i < n and self._state is not _ESTABLISHED:
            raise InvalidStateError(
                f"send_many(): the connection ended ({self._state.value}) after {i} of {n} payloads"
            )

    def close(self, now: float) -> None:
        """End the connection: queues close_notify if established, then terminates.

        Emits ``ConnectionTerminated(error=None, by_peer=False)``. Calling it again does
        nothing. After calling this, call :meth:`datagrams_to_send` to send the close_notify.
        """
        if self._state in (ConnectionState.CLOSED, ConnectionState.FAILED):
            return
        if self._state is ConnectionState.ESTABLISHED:
            sc = scratch()
            flags = lib.DtlsOssl_shutdown(self._c, sc.ptr)
            self._collect_wire(flags, sc)
            if flags & _ALERTS:
                self._collect_alerts()
        self._terminate(None, by_peer=False)

    def set_remote_fingerprints(
        self, fingerprints: Iterable[Fingerprint | str], now: float
    ) -> None:
        """Give the peer's fingerprints once the SDP carrying them has arrived.

        Held datagrams are then processed as if they had just arrived. After calling this,
        call :meth:`datagrams_to_send`, :meth:`get_timer` and :meth:`next_event`.

        :raises InvalidStateError: once the peer certificate has been checked, or after the
            end, or with the insecure opt-out.
        """
        if self._cb.insecure:
            raise InvalidStateError("fingerprint checking was disabled for this connection")
        if self._state in (ConnectionState.CLOSED, ConnectionState.FAILED):
            raise InvalidStateError(f"connection is {self._state.value}")
        if self._cb.peer_der is not None:
            raise InvalidStateError("the peer certificate has already been checked")
        self._set_expected(_normalise_fingerprints(fingerprints))
        held, self._held = self._held or [], None
        for d in held:
            if not self._alive():
                break
            self._feed(d, now)

    def accept_verified_hello(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Start a server with a ClientHello whose cookie was already verified.

        Use this with :class:`~dtls_ossl.cookies.CookieVerifier`: the stateless layer answered
        the first ClientHello with a HelloVerifyRequest and checked the cookie of this one, so
        the connection continues from there (message_seq 1), whether or not the hello is
        fragmented. After calling this, call :meth:`datagrams_to_send`, :meth:`get_timer` and
        :meth:`next_event`.

        :raises InvalidStateError: on a client, or if the connection has already started.
        """
        if self._role is not Role.SERVER or self._state is not ConnectionState.NEW:
            raise InvalidStateError("accept_verified_hello() is for a new server connection")
        if type(data) is not bytes:
            data = bytes(data)
        if lib.DtlsOssl_prime_cookie_exchange(self._c) != 1:
            raise OpenSSLError("priming the cookie exchange failed", consume_errors())
        self._n_received += 1
        self._start(now)
        self._feed(data, now)

    def set_handshake_timeout(self, timeout: float | None, now: float) -> None:
        """Make the handshake deadline ``now + timeout``, replacing the configuration's.

        By default the deadline is the configuration's ``handshake_timeout`` counted from the
        start (a client's :meth:`connect`, a server's answer to the first ClientHello). An
        owner that counts from elsewhere (the asyncio endpoint counts from the moment it made
        the connection) sets it here, so that one deadline runs per connection; it applies to
        a server that has not heard a ClientHello yet too. ``None`` removes the deadline
        (OpenSSL's retransmission limit still ends a silent handshake). No effect once the
        handshake completed. After calling this, call :meth:`get_timer`.

        :raises ConfigurationError: if ``timeout`` is not a number of seconds > 0 or None.
        """
        check_positive("timeout", timeout, optional=True)
        if self._state not in (ConnectionState.NEW, ConnectionState.HANDSHAKING):
            return
        self._handshake_timeout = timeout
        self._handshake_deadline = None if timeout is None else now + timeout

    # ---------------------------------------------------------------------------- outputs

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Return the datagrams to send to the peer, in order, and forget them.

        Each is at most ``mtu`` bytes and made of whole DTLS records.
        """
        out = self._out
        if out:
            self._out = []
        return out

    def get_timer(self) -> float | None:
        """Return the absolute deadline (caller's clock) to call :meth:`handle_timer`, or None."""
        at = self._timer_at
        deadline = self._handshake_deadline
        if deadline is not None and self._state in (
            ConnectionState.NEW,
            ConnectionState.HANDSHAKING,
        ):
            return deadline if at is None or deadline < at else at
        return at

    def next_event(self) -> DtlsEvent | None:
        """Return the next event, or None when there is none.

        Draining n queued events costs O(n) in all; :meth:`events` takes them all at once.
        """
        ev = self._events
        if not ev:  # read events never outlive the last unread one (cleared below)
            return None
        i = self._ev_head
        if not i and len(ev) <= _POP_FRONT_MAX:
            return ev.pop(0)  # a short queue: moving it is cheaper than indexing
        n = len(ev)
        e = ev[i]
        i += 1
        if i == n:
            ev.clear()  # the same list object: C appends to whatever self._events is
            i = 0
        elif i >= _COMPACT_AT and i + i >= n:
            del ev[:i]  # amortised: at least as many items were read as are moved
            i = 0
        self._ev_head = i
        return e

    def events(self) -> list[DtlsEvent]:
        """Return every queued event, in order, and forget them (a drain-all :meth:`next_event`).

        After calling it, :meth:`next_event` returns None until a new input queues events.
        """
        ev = self._events
        i = self._ev_head
        if i:
            self._ev_head = 0
            out = ev[i:]
            ev.clear()
            return out
        if ev:
            self._events = []
        return ev

    # ----------------------------------------------------------------------------- queries

    def export_keying_material(
        self, label: str | bytes, length: int, context: bytes | None = None
    ) -> bytes:
        """Derive ``length`` bytes with the RFC 5705 exporter of the established session.

        :raises InvalidStateError: unless the connection is established.
        :raises ConfigurationError: for a non-positive length.
        """
        if self._state is not ConnectionState.ESTABLISHED:
            raise InvalidStateError(
                f"export_keying_material() needs an established connection, not {self._state.value}"
            )
        if not isinstance(length, int) or length <= 0 or length > 1 << 16:
            raise ConfigurationError(f"length: expected 1..65536 bytes, got {length!r}")
        return self._export(label, length, context)

    def srtp_keys(self) -> SrtpKeys:
        """Return the SRTP keys of the negotiated profile (RFC 5764 §4.2), local and remote.

        :raises InvalidStateError: before the handshake completed, or if no SRTP profile was
            negotiated.
        """
        info = self._info
        if info is None:
            raise InvalidStateError("srtp_keys() needs a completed handshake")
        if info.srtp_keys is None:
            raise InvalidStateError(
                "no SRTP profile was negotiated (the peer offered none of ours)"
            )
        return info.srtp_keys

    @property
    def role(self) -> Role:
        """Our role in the handshake."""
        return self._role

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life."""
        return self._state

    @property
    def configuration(self) -> DtlsConfiguration:
        """The shared configuration this connection was made from."""
        return self._config

    @property
    def remote_fingerprints(self) -> tuple[Fingerprint, ...] | None:
        """The fingerprints the peer certificate must match; None if not given yet."""
        return self._expected

    @property
    def handshake_info(self) -> HandshakeCompleted | None:
        """What was negotiated (the HandshakeCompleted event), once the handshake completed."""
        return self._info

    @property
    def max_payload_size(self) -> int:
        """Largest ``send()`` payload that fits one datagram; 0 before the handshake."""
        return self._data_mtu

    @property
    def stats(self) -> ConnectionStats:
        """A snapshot of this connection's counters."""
        return ConnectionStats(
            datagrams_received=self._n_received + self._c_counts()[0],
            datagrams_dropped=self._n_dropped,
            datagrams_held=self._n_held,
            datagrams_sent=self._n_sent + self._c_counts()[1],
            retransmissions=self._n_retransmissions,
        )

    def __repr__(self) -> str:
        """Show role and state."""
        return f"<DtlsConnection {self._role.value} {self._state.value}>"

    # ---------------------------------------------------------------------------- internals

    def _new_ssl(self) -> Any:
        """Create the C connection (SSL object, BIOs, timer and callbacks)."""
        config = self._config
        ctx = config._ssl_ctx()
        lib.ERR_clear_error()
        c = lib.DtlsOssl_conn_new(
            ctx,
            int(self._role is Role.SERVER),
            config.mtu,
            round(config.initial_retransmit_timeout * 1e6),
            round(config.max_retransmit_timeout * 1e6),
            self._handle,
        )
        openssl_assert(c != ffi.NULL, "creating the SSL object")
        return ffi.gc(c, lib.DtlsOssl_conn_free)  # owned: SSL and its two BIOs

    def _accept_first(self, data: bytes, now: float) -> None:
        """Feed what looks like a first ClientHello to a server that has not started yet.

        The server only starts (state, deadline) once OpenSSL answers. If OpenSSL rejects the
        datagram outright, nobody has talked to us yet: the attempt is discarded with a fresh
        SSL object and no alert, so spoofed junk can neither kill the association a real peer
        is about to start nor make us send anything.
        """
        sc = scratch()
        flags = lib.DtlsOssl_receive(self._c, sc.ptr, data, len(data))
        if flags & _DROPPED:
            self._n_dropped += int(sc.ptr.dropped)
            return
        if flags & (_FATAL | _CALLBACK) or self._cb.captured is not None:
            consume_errors()
            self._cb.captured = None
            self._n_dropped += 1
            ffi.release(self._c)
            self._c = self._new_ssl()
            return
        if flags & _WIRE:
            self._start(now)
            self._handle_flags(flags, now, sc)
        # Otherwise a fragment was buffered without an answer: stay NEW until the rest comes.

    def _bind_scratch(self) -> None:
        """Give the fast paths this thread's scratch (after the handshake, or a new thread).

        The connection keeps that scratch alive (and so a finished thread's, ~150 KB, until
        the connection is used from another thread or freed).
        """
        sc = scratch()
        lib.DtlsOssl_bind_scratch(self._c, sc.ptr)
        self._sc = sc

    def _run_batch(self, run: Callable[[int], int], n: int, now: float) -> int:
        """Drive a batch C function from item 0 until all n are done or the connection ends.

        ``run(i)`` processes items i.. and returns the next index << 16 | the status bits left.
        Returns how many items were done, or -1 if C refused a payload size (nothing done).
        """
        i = 0
        while i < n and self._state is _ESTABLISHED:
            r = run(i)
            flags = r & 0xFFFF
            if flags & _NO_SCRATCH:  # first call from this thread
                self._bind_scratch()
                continue
            if flags & _TOO_BIG:
                return -1
            if r >> 16 == i:  # the sequence was shorter than its len() said
                break
            i = r >> 16
            if flags:
                self._handle_flags(flags, now, self._sc)
        return i

    def _fast_send_outcome(
        self, flags: int, data: bytes | bytearray | memoryview, now: float
    ) -> None:
        """Finish a send whose fast path left status bits to handle."""
        if flags & _NO_SCRATCH:  # first call from this thread
            self._bind_scratch()
            flags = _fast_send(self._addr, data, self._out)
            if not flags:
                return
        if flags & _TOO_BIG:
            raise PayloadSizeError(
                f"send(): {_nbytes(data)} bytes does not fit one datagram "
                f"(1..{self._data_mtu} bytes with mtu={self._config.mtu})"
            )
        self._handle_flags(flags, now, self._sc)

    def _fast_receive_outcome(
        self, flags: int, data: bytes | bytearray | memoryview, now: float
    ) -> None:
        """Finish a datagram whose fast path left status bits to handle."""
        if flags & _NO_SCRATCH:  # first call from this thread
            self._bind_scratch()
            flags = _fast_receive(self._addr, data, self._out, self._events)
            if not flags:
                return
        self._handle_flags(flags, now, self._sc)

    def _c_counts(self) -> tuple[int, int]:
        """Datagrams counted in C: (taken by the fast receive path, framed for sending)."""
        if self._state in (ConnectionState.CLOSED, ConnectionState.FAILED):
            return 0, 0  # the C object is gone; _terminate moved its counts to Python
        c = self._c
        return int(c.n_fast_received), int(c.n_framed)

    def _alive(self) -> bool:
        return self._state not in (ConnectionState.CLOSED, ConnectionState.FAILED)

    def _set_expected(self, fingerprints: tuple[Fingerprint, ...]) -> None:
        self._expected = fingerprints
        # RFC 8122 §5: the certificate is checked against the strongest hash's set only.
        self._cb.expected = tuple(
            (FINGERPRINT_ALGORITHMS[fp.algorithm][0], fp.value)
            for fp in select_fingerprints(fingerprints)
        )

    def _start(self, now: float) -> None:
        self._state = ConnectionState.HANDSHAKING
        timeout = self._handshake_timeout
        if self._handshake_deadline is None and timeout is not None:
            self._handshake_deadline = now + timeout

    def _receive_slow(self, data: bytes, now: float) -> None:
        state = self._state
        if state in (ConnectionState.CLOSED, ConnectionState.FAILED):
            self._n_dropped += 1
            return
        if state is ConnectionState.NEW:
            if self._role is Role.CLIENT or not _is_client_hello_untrusted(data):
                # A client that has not connected has nothing to answer, and a server only
                # starts on a ClientHello: anything else is stray traffic.
                self._n_dropped += 1
                return
            if len(data) > _MAX_DATAGRAM:
                self._n_dropped += 1
                return
            self._accept_first(data, now)
            return
        if self._cb.expected is None and not self._cb.insecure and not _may_feed_untrusted(data):
            self._hold(data)
            return
        self._feed(data, now)

    def _feed(self, data: bytes, now: float) -> None:
        if len(data) > _MAX_DATAGRAM:
            self._n_dropped += 1
            return
        sc = scratch()
        self._handle_flags(lib.DtlsOssl_receive(self._c, sc.ptr, data, len(data)), now, sc)

    def _hold(self, data: bytes) -> None:
        held = self._held
        if held is None:
            held = self._held = []
        elif data in held:
            return  # a retransmission of what we already hold
        if len(held) >= self._config.max_held_datagrams:
            self._n_dropped += 1
            return
        held.append(data)
        self._n_held += 1
        if len(held) == 1:
            self._events.append(events.DatagramsHeld(count=1))

    def _handle_flags(self, flags: int, now: float, sc: Scratch) -> None:
        """Turn the status bits of one C call into output, events and state changes."""
        if flags & _DROPPED:
            self._n_dropped += int(sc.ptr.dropped)
        self._collect_wire(flags, sc)
        captured = self._cb.captured
        if captured is not None or flags & _CALLBACK:
            self._cb.captured = None
            if captured is None:  # pragma: no cover - our callbacks capture what they raise
                failure = OpenSSLError("a dtls_ossl callback failed", consume_errors())
                self._terminate(failure, by_peer=False)
                raise failure
            # The user's callback raised: their error, not the peer's (exceptions.py).
            ended = CallbackError(f"a callback raised {type(captured).__name__}")
            ended.__cause__ = captured
            self._terminate(ended, by_peer=False)
            raise captured
        if flags & _RETRANSMITTED:
            self._n_retransmissions += 1
            c = self._c
            nxt = int(c.timeout_us) / 1e6 if flags & _TIMER else None
            self._events.append(events.FlightRetransmitted(self._n_retransmissions, nxt))
        if flags & _HANDSHAKE_DONE:
            self._handshake_completed(sc)
        if flags & _PLAIN:
            self._data_events(sc, sc.ptr.n_recs)
        # Alerts after data: in one call, an alert (close_notify) follows the records before it.
        if flags & _ALERTS:
            self._collect_alerts()
        if flags & _FATAL:
            self._fatal(flags)
        elif flags & _PEER_CLOSED:
            self._terminate(None, by_peer=True)
        elif self._state in (ConnectionState.HANDSHAKING, ConnectionState.ESTABLISHED):
            self._timer_at = now + int(self._c.timeout_us) / 1e6 if flags & _TIMER else None
        if flags & _OVERFLOW and self._alive():
            # More output than the scratch buffer holds: grow it and drain the rest.
            while flags & _OVERFLOW:
                sc.grow_wire(int(lib.DtlsOssl_pending(self._c)))
                flags = lib.DtlsOssl_drain(self._c, sc.ptr)
                self._collect_wire(flags, sc)

    def _data_events(self, sc: Scratch, n: int) -> None:
        """Queue a DataReceived for each of the n plaintext records in the scratch buffer."""
        if n == 1:
            ev = _new(_DataReceived)
            _set_data(ev, sc.plain_buf[: sc.rec_ends[0]])
            self._events.append(ev)
        else:
            # Object creation runs at C speed through map().
            evs = list(map(_new, repeat(_DataReceived, n)))
            _exhaust(map(_set_data, evs, _records(sc.plain_buf, _unpack(sc.rec_ends, n))))
            self._events += evs

    def _collect_wire(self, flags: int, sc: Scratch) -> None:
        if not flags & _WIRE:
            return
        sp = sc.ptr
        n = sp.n_dgrams
        if n == 1:
            self._out.append(sc.wire_buf[: sp.wire_len])
        else:
            self._out += _records(sc.wire_buf, _unpack(sc.dgram_ends, n))
        # Collected: a later drain in the same call (overflow) starts from an empty buffer.
        sp.wire_len = 0
        sp.n_dgrams = 0

    def _collect_alerts(self) -> None:
        c = self._c
        for i in range(c.n_alerts):
            v = int(c.alerts[i])
            level, description = (v >> 8) & 0xFF, v & 0xFF
            if v & 0x10000:
                if level == 2 or description == 0:
                    self._received_alert = description
                self._events.append(events.AlertReceived(level, description))
            else:
                if level == 2:
                    self._sent_alert = description
                self._events.append(events.AlertSent(level, description))

    def _handshake_completed(self, sc: Scratch) -> None:
        der = self._cb.peer_der
        if der is None:  # pragma: no cover - OpenSSL always verifies the peer certificate
            self._terminate(
                CertificateVerificationError("the peer sent no certificate"), by_peer=False
            )
            return
        matched = None
        if self._expected is not None:
            index = self._cb.matched
            if index < 0:  # pragma: no cover - the verify callback already refused it
                self._terminate(
                    FingerprintMismatchError("peer certificate was not checked"), by_peer=False
                )
                return
            matched = select_fingerprints(self._expected)[index]
        # Version, cipher, SRTP profile, data MTU and the SRTP keying material: one C call.
        r = int(lib.DtlsOssl_established(self._c, sc.names, sc.material))
        openssl_assert(r >= 0, "SSL_export_keying_material")
        names = sc.names
        version = _name(names[0])
        cipher = _name(names[1])
        profile = keys = None
        srtp_id = r & 0xFFFF
        if srtp_id:
            profile = _SRTP_PROFILES.get(srtp_id) or SrtpProfile.from_iana_id(srtp_id)
            keys = SrtpKeys.from_keying_material(profile, _unpack(sc.material, r >> 32), self._role)
        self._data_mtu = (r >> 16) & 0xFFFF
        lib.DtlsOssl_bind_scratch(self._c, sc.ptr)  # for the fast paths from now on
        self._sc = sc
        self._addr = int(ffi.cast("uintptr_t", self._c))
        self._state = _ESTABLISHED
        self._held = None
        self._handshake_deadline = None
        self._info = info = events.HandshakeCompleted(
            protocol_version=version,
            cipher=cipher,
            srtp_profile=profile,
            peer_certificate=_certificate_from_der(der),
            peer_fingerprint=matched,
            srtp_keys=keys,
        )
        self._events.append(info)
        if self._cb.key_log is None:
            # The callbacks have done their work (renegotiation is off): drop their state, a
            # few hundred bytes per connection. C finds no handle from now on and would fail
            # a verification closed. With a key log the state stays, for any later secrets.
            self._c.handle = ffi.NULL
            self._handle = None
            self._cb = _CHECKED_INSECURE if self._cb.insecure else _CHECKED
        log = debug_logger(__name__)
        if log is not None:
            log.debug(
                "%s: handshake completed: %s %s srtp=%s",
                self._role.value,
                version,
                cipher,
                profile.name if profile else None,
            )

    def _export(self, label: str | bytes, length: int, context: bytes | None) -> bytes:
        lab = label.encode("ascii") if isinstance(label, str) else bytes(label)
        out = ffi.new("unsigned char[]", length)
        if context is None:
            ok = lib.SSL_export_keying_material(
                self._c.ssl, out, length, lab, len(lab), ffi.NULL, 0, 0
            )
        else:
            ctxb = bytes(context)
            ok = lib.SSL_export_keying_material(
                self._c.ssl, out, length, lab, len(lab), ctxb, len(ctxb), 1
            )
        openssl_assert(ok == 1, "SSL_export_keying_material")
        material: bytes = ffi.buffer(out, length)[:]
        return material

    def _fatal(self, flags: int) -> None:
        """Classify an OpenSSL failure and terminate (RFC 6347 §4.1.2.7: fatal alerts end it)."""
        errors = consume_errors()
        mismatch = self._cb.mismatch
        by_peer = False
        err: DtlsError
        reasons = "; ".join(e.reason for e in errors) or "no detail from OpenSSL"
        if mismatch is not None:
            expected, actual = mismatch
            if not expected:
                err = CertificateVerificationError(
                    "no remote fingerprints to check the peer certificate against",
                    alert=self._sent_alert,
                )
            else:
                ignored = len(self._expected or ()) - len(expected)
                rule = (
                    f" ({ignored} weaker-hash fingerprint{'s' if ignored > 1 else ''} ignored: "
                    "RFC 8122 §5 checks only "
                    "the strongest hash given)"
                    if ignored
                    else ""
                )
                err = FingerprintMismatchError(
                    "peer certificate matches none of the expected fingerprints: "
                    f"got {', '.join(actual)}; expected {', '.join(expected)}{rule}",
                    expected=expected,
                    actual=actual,
                    alert=self._sent_alert,
                )
        elif self._received_alert is not None:
            by_peer = True
            name = events.alert_name(self._received_alert)
            cls = ProtocolError if self._state is ConnectionState.ESTABLISHED else HandshakeError
            err = cls(
                f"peer sent fatal alert {name} ({self._received_alert})",
                alert=self._received_alert,
                errors=errors,
            )
        elif self._state is not ConnectionState.ESTABLISHED and (
            code := int(lib.SSL_get_verify_result(self._c.ssl))
        ) not in (0, _X509_V_ERR_CERT_REJECTED):
            message = ffi.string(lib.X509_verify_cert_error_string(code)).decode("ascii")
            err = CertificateVerificationError(
                f"peer certificate rejected: {message}",
                verify_code=code,
                verify_message=message,
                alert=self._sent_alert,
                errors=errors,
            )
        elif any(
            e.library_code == _ERR_LIB_SSL and e.reason_code == _SSL_R_READ_TIMEOUT_EXPIRED
            for e in errors
        ):
            err = HandshakeTimeoutError(
                f"no answer from the peer after {self._n_retransmissions} retransmissions",
                errors=errors,
            )
        else:
            cls = ProtocolError if self._state is ConnectionState.ESTABLISHED else HandshakeError
            err = cls(reasons, alert=self._sent_alert, errors=errors)
        self._terminate(err, by_peer=by_peer)

    def _terminate(self, error: DtlsError | None, *, by_peer: bool) -> None:
        if self._state in (ConnectionState.CLOSED, ConnectionState.FAILED):
            return
        # The C object is freed below: its counters move to Python first.
        received, framed = self._c_counts()
        self._n_received += received
        self._n_sent += framed
        self._state = ConnectionState.FAILED if error is not None else ConnectionState.CLOSED
        self._timer_at = None
        self._handshake_deadline = None
        self._held = None
        self._events.append(events.ConnectionTerminated(error=error, by_peer=by_peer))
        log = None if error is None else debug_logger(__name__)
        if log is not None:
            log.debug("%s: terminated: %s", self._role.value, error)
        lib.ERR_clear_error()
        # Free the SSL object now rather than at garbage collection: a server may hold many
        # terminated connections until it notices.
        ffi.release(self._c)


# SrtpProfile by IANA id (the enum's properties are Python-level, slow on the handshake path).
_SRTP_PROFILES = {p.iana_id: p for p in SrtpProfile}


def _certificate_from_der(der: bytes) -> Certificate:
    """``Certificate.from_der``, imported on first use (``import dtls_ossl`` stays cheap)."""
    global _certificate_from_der
    from dtls_ossl.webrtc.certificate import Certificate

    _certificate_from_der = Certificate.from_der
    return Certificate.from_der(der)


_names: dict[bytes, str] = {}


def _name(p: Any) -> str:
    """Decode a static OpenSSL name once; every connection shares the same str object."""
    raw: bytes = ffi.string(p)
    name = _names.get(raw)
    if name is None:
        name = _names[raw] = raw.decode("ascii")
    return name


def _records(buf: Any, ends: list[int]) -> list[bytes]:
    """Copy the items lying end to end in ``buf`` (``ends``: their end offsets) into bytes."""
    # A comprehension beats map(): BUILD_SLICE reuses a cached slice object, while calling
    # slice() or buf.__getitem__ through map() builds an argument tuple per item.
    return [buf[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def _nbytes(data: bytes | bytearray | memoryview) -> int:
    """Size in bytes of a bytes-like object (len() counts items, wider in some memoryviews)."""
    return len(data) if type(data) is bytes else memoryview(data).nbytes
