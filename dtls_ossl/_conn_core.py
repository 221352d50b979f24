"""The machinery under :class:`~dtls_ossl.DtlsConnection`: status decoding, ingress, batches.

:class:`ConnectionCore` holds the connection's state and every internal step: turning a C call's
status bits into datagrams, events and state changes (``_handle_flags``), the slow ingress path
of a connection not yet established (first ClientHello, held flights), the batch driver of the
established fast paths, handshake completion and termination. connection.py keeps the public
verbs on top of it; the rules they follow are in its theory-of-operation docstring. A method
found on this base costs the same lookup as one on the subclass (the type attribute cache), and
the slots are shared, so the per-record path takes no extra hop.
"""

from __future__ import annotations

from collections import deque
from itertools import repeat

from dtls_ossl import _openssl, events
from dtls_ossl._binding import Scratch, consume_errors, ffi, lib, openssl_assert, scratch
from dtls_ossl._callbacks import CallbackState
from dtls_ossl._conn_outcome import classify_failure
from dtls_ossl._conn_status import (
    ALERTS as _ALERTS,
)
from dtls_ossl._conn_status import (
    CALLBACK as _CALLBACK,
)
from dtls_ossl._conn_status import (
    CLOSED as _CLOSED,
)
from dtls_ossl._conn_status import (
    COMPLETED as _COMPLETED,
)
from dtls_ossl._conn_status import (
    DROPPED as _DROPPED,
)
from dtls_ossl._conn_status import (
    ENDED as _ENDED,
)
from dtls_ossl._conn_status import (
    ESTABLISHED as _ESTABLISHED,
)
from dtls_ossl._conn_status import (
    FAILED as _FAILED,
)
from dtls_ossl._conn_status import (
    FATAL as _FATAL,
)
from dtls_ossl._conn_status import (
    HANDSHAKE_DONE as _HANDSHAKE_DONE,
)
from dtls_ossl._conn_status import (
    HANDSHAKING as _HANDSHAKING,
)
from dtls_ossl._conn_status import (
    NEW as _NEW,
)
from dtls_ossl._conn_status import (
    NO_SCRATCH as _NO_SCRATCH,
)
from dtls_ossl._conn_status import (
    OVERFLOW as _OVERFLOW,
)
from dtls_ossl._conn_status import (
    PEER_CLOSED as _PEER_CLOSED,
)
from dtls_ossl._conn_status import (
    PLAIN as _PLAIN,
)
from dtls_ossl._conn_status import (
    RETRANSMITTED as _RETRANSMITTED,
)
from dtls_ossl._conn_status import (
    TIMER as _TIMER,
)
from dtls_ossl._conn_status import (
    TOO_BIG as _TOO_BIG,
)
from dtls_ossl._conn_status import (
    WIRE as _WIRE,
)
from dtls_ossl._conn_status import (
    ConnectionState,
)
from dtls_ossl._records import is_client_hello_untrusted as _is_client_hello_untrusted
from dtls_ossl._records import may_feed_untrusted as _may_feed_untrusted
from dtls_ossl._roles import CLIENT as _CLIENT
from dtls_ossl._roles import SERVER as _SERVER
from dtls_ossl._roles import Role
from dtls_ossl._util import TYPE_CHECKING, debug_logger
from dtls_ossl.configuration import DtlsConfiguration
from dtls_ossl.exceptions import (
    CallbackError,
    CertificateVerificationError,
    DtlsError,
    FingerprintMismatchError,
    InvalidStateError,
    OpenSSLError,
    PayloadSizeError,
)
from dtls_ossl.webrtc.sdp import (
    FINGERPRINT_PREFERENCE,
    Fingerprint,
    format_fingerprint,
    select_fingerprints,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


__all__ = ["ConnectionCore"]

# The per-record fast paths (see connection.py), here for the retries after a first call from a
# new thread; fast_setup tells C which event class and slot to build DataReceived with.
_fast_receive = _openssl.fast_receive
_fast_send = _openssl.fast_send
# The handshake path in C (_cffi_src/step.c, conninit.c; connection.py's _install_c_methods tells it
# the slots it reads and writes): the C object's making and freeing, one call per flight, and
# the completion that builds HandshakeCompleted.
step = _openssl.step
_complete = _openssl.complete
_conn_new = _openssl.conn_new
_conn_free = _openssl.conn_free
# step's operations.
STEP_HANDSHAKE = 0
STEP_RECEIVE = 1
STEP_TIMEOUT = 2
_STEP_FIRST = 3
# Why complete() left a completion to Python.
_WHY_EXPORT = 1
_WHY_NO_CERT = 2
_WHY_UNCHECKED = 3
_WHY_ENDED = 4  # a finalizer run during an allocation ended the connection meanwhile
_cast = ffi.cast
_openssl.fast_setup(events.DataReceived, events.DataReceived.__dict__["data"])
_unpack = ffi.unpack
_DataReceived = events.DataReceived
# Building an event with object.__new__ and the slot descriptor's __set__ skips the Python-level
# __init__ (about 50 ns of a record); the result is an ordinary, immutable DataReceived.
_new = object.__new__
_set_data = _DataReceived.__dict__["data"].__set__
# Runs an iterator to its end at C speed (the slow path builds events with map()).
_sink: deque[object] = deque(maxlen=0)
_exhaust = _sink.extend


# The peer certificate check in C: how (DtlsOssl_set_expected), and its verdict.
_CHECK_UNKNOWN = int(lib.DTLSOSSL_CHECK_UNKNOWN)
_CHECK_FINGERPRINTS = int(lib.DTLSOSSL_CHECK_FINGERPRINTS)
_CHECK_INSECURE = int(lib.DTLSOSSL_CHECK_INSECURE)
_VERDICT_REJECTED = int(lib.DTLSOSSL_VERDICT_REJECTED)
# The hash functions by the index C knows them by (DtlsOssl_init: sha-1 ... sha-512).
_MD_INDEX = {name: i for i, name in enumerate(reversed(FINGERPRINT_PREFERENCE))}


def _expected_digests(fingerprints: tuple[Fingerprint, ...]) -> tuple[int, bytes]:
    """Return the hash index and the digests, end to end, a peer certificate must match one of.

    RFC 8122 §5: only the fingerprints of the strongest hash function given count.
    """
    if len(fingerprints) == 1:  # its own strongest set
        fp = fingerprints[0]
        return _MD_INDEX[fp.algorithm], fp.value
    chosen = select_fingerprints(fingerprints)
    if not chosen:  # pragma: no cover - Fingerprint validates its algorithm
        return 0, b""
    return _MD_INDEX[chosen[0].algorithm], b"".join([fp.value for fp in chosen])


_MAX_DATAGRAM = 65535
# Every status bit _handle_flags leaves to _handle_all_flags (none in a handshake that goes well).
_UNUSUAL = (
    _DROPPED | _WIRE | _CALLBACK | _RETRANSMITTED | _ALERTS | _FATAL | _PEER_CLOSED | _OVERFLOW
)


class ConnectionCore:
    """State and internal steps of a connection; only :class:`DtlsConnection` derives from it."""

    __slots__ = (
        "_addr",
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
        "_insecure",
        "_n_dropped",
        "_n_held",
        "_n_received",
        "_n_retransmissions",
        "_n_sent",
        "_out",
        "_received_alert",
        "_ref",
        "_role",
        "_sc",
        "_sent_alert",
        "_state",
        "_timer_at",
    )

    if TYPE_CHECKING:
        _addr: int
        _cb: CallbackState
        _config: DtlsConfiguration
        _data_mtu: int
        _ev_head: int
        _events: list[events.DtlsEvent]
        _expected: tuple[Fingerprint, ...] | None
        _handle: Any
        _handshake_deadline: float | None
        _handshake_timeout: float | None
        _held: list[bytes] | None
        _info: events.HandshakeCompleted | None
        _insecure: bool
        _n_dropped: int
        _n_held: int
        _n_received: int
        _n_retransmissions: int
        _n_sent: int
        _out: list[bytes]
        _received_alert: int | None
        _ref: object
        _role: Role
        _sc: Scratch
        _sent_alert: int | None
        _state: ConnectionState
        _timer_at: float | None

    def _new_ssl(self) -> None:
        """Create the C connection (SSL object, BIOs, timer and callbacks): ``_ref``, ``_addr``.

        ``_ref`` owns it (freed with the connection, or by ``_conn_free`` when it ends, which
        sets ``_addr`` to 0 first); ``_addr`` is its address for the C paths, which take ints.
        """
        expected = self._expected
        if expected is not None:
            check = _CHECK_FINGERPRINTS
            if len(expected) == 1:  # the usual case: its own strongest set
                fp = expected[0]
                md, digests = _MD_INDEX[fp.algorithm], fp.value
            else:
                md, digests = _expected_digests(expected)
        else:
            check = _CHECK_INSECURE if self._insecure else _CHECK_UNKNOWN
            md, digests = 0, b""
        handle = self._handle
        if not _conn_new(
            self,
            self._config._conn_args,
            self._role is _SERVER,
            None if handle is None else int(_cast("uintptr_t", handle)),
            check,
            md,
            digests,
        ):
            openssl_assert(False, "creating the SSL object")

    @property
    def _c(self) -> Any:
        """The C object as cffi sees it, for the calls and fields off the fast paths."""
        addr = self._addr
        if not addr:
            raise InvalidStateError(f"the connection is {self._state.value}: no C object")
        return _cast("DtlsOssl_conn *", addr)

    def _accept_first(self, data: bytes, now: float) -> None:
        """Feed what looks like a first ClientHello to a server that has not started yet.

        The server only starts (state, deadline) once OpenSSL answers. If OpenSSL rejects the
        datagram outright, nobody has talked to us yet: the attempt is discarded with a fresh
        SSL object and no alert, so spoofed junk can neither kill the association a real peer
        is about to start nor make us send anything.
        """
        sc = scratch()
        self._first_outcome(step(self, sc, _STEP_FIRST, data, now), now, sc)

    def _first_outcome(self, flags: int, now: float, sc: Scratch) -> None:
        """Act on step's bits for a new server's first datagram (op ``_STEP_FIRST``).

        step queued the answer only if there was one and nothing failed (WIRE says so): a
        discarded attempt must leave nothing to send.
        """
        if flags & _DROPPED:
            self._n_dropped += int(sc.ptr.dropped)
            return
        if flags & (_FATAL | _CALLBACK) or self._cb.captured is not None:
            consume_errors()
            self._cb.captured = None
            self._n_dropped += 1
            _conn_free(self)
            self._new_ssl()
            return
        if flags & _WIRE:
            self._start(now)
            flags &= ~_WIRE
            if flags:
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
        if self._state in _ENDED:
            return 0, 0  # the C object is gone; _terminate moved its counts to Python
        c = self._c
        return int(c.n_fast_received), int(c.n_framed)

    def _alive(self) -> bool:
        return self._state not in _ENDED

    def _set_expected(self, fingerprints: tuple[Fingerprint, ...]) -> None:
        md, digests = _expected_digests(fingerprints)
        ok = lib.DtlsOssl_set_expected(self._c, _CHECK_FINGERPRINTS, md, digests, len(digests))
        openssl_assert(ok == 1, "storing the expected fingerprints")
        self._expected = fingerprints

    def _start(self, now: float) -> None:
        self._state = _HANDSHAKING
        timeout = self._handshake_timeout
        if self._handshake_deadline is None and timeout is not None:
            self._handshake_deadline = now + timeout

    def _receive_slow(self, data: bytes, now: float) -> None:
        state = self._state
        if state in _ENDED:
            self._n_dropped += 1
            return
        if state is _NEW:
            if self._role is _CLIENT or not _is_client_hello_untrusted(data):
                # A client that has not connected has nothing to answer, and a server only
                # starts on a ClientHello: anything else is stray traffic.
                self._n_dropped += 1
                return
            if len(data) > _MAX_DATAGRAM:
                self._n_dropped += 1
                return
            self._accept_first(data, now)
            return
        if self._expected is None and not self._insecure and not _may_feed_untrusted(data):
            self._hold(data)
            return
        self._feed(data, now)

    def _feed(self, data: bytes, now: float) -> None:
        sc = scratch()
        flags = step(self, sc, STEP_RECEIVE, data, now)  # drops what is above _MAX_DATAGRAM
        if flags:
            self._handle_flags(flags, now, sc)

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
        if flags == _COMPLETED:  # step did it all
            self._log_completed()
            return
        if flags & _UNUSUAL:
            self._handle_all_flags(flags, now, sc)
            return
        # A flight of the handshake, or its end: the usual bits only.
        if flags & _HANDSHAKE_DONE:
            self._handshake_completed(sc)
        if flags & _PLAIN:
            self._data_events(sc, sc.ptr.n_recs)
        state = self._state
        if state is _HANDSHAKING or state is _ESTABLISHED:
            self._timer_at = now + self._c.timeout_us / 1e6 if flags & _TIMER else None

    def _handle_all_flags(self, flags: int, now: float, sc: Scratch) -> None:
        """:meth:`_handle_flags` when any bit beyond the usual ones is set."""
        if flags & _DROPPED:
            self._n_dropped += int(sc.ptr.dropped)
        if flags & _WIRE:  # only from the cffi entry points: step collects in C
            self._collect_wire(sc)
        if flags & _CALLBACK:
            self._callback_raised()
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
        elif self._state in (_HANDSHAKING, _ESTABLISHED):
            self._timer_at = now + int(self._c.timeout_us) / 1e6 if flags & _TIMER else None
        if flags & _OVERFLOW and self._alive():
            # More output than the scratch buffer holds: grow it and drain the rest.
            while flags & _OVERFLOW:
                sc.grow_wire(int(lib.DtlsOssl_pending(self._c)))
                flags = lib.DtlsOssl_drain(self._c, sc.ptr)
                if flags & _WIRE:
                    self._collect_wire(sc)

    def _callback_raised(self) -> None:
        """End the connection after a callback raised, and re-raise what it raised."""
        captured = self._cb.captured
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

    def _collect_wire(self, sc: Scratch) -> None:
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
        # One C call (step makes the same one itself in the usual case): what was negotiated,
        # the SRTP keys, the peer certificate and the fingerprint it matched, as the
        # HandshakeCompleted event, queued; the connection is then ESTABLISHED, with the
        # scratch bound for the fast paths.
        why = _complete(self, sc)
        if why == _WHY_EXPORT:
            raise OpenSSLError("SSL_export_keying_material failed", consume_errors())
        if why == _WHY_NO_CERT:  # pragma: no cover - OpenSSL always verifies the peer certificate
            self._terminate(
                CertificateVerificationError("the peer sent no certificate"), by_peer=False
            )
            return
        if why == _WHY_UNCHECKED:  # pragma: no cover - the verify callback already refused it
            self._terminate(
                FingerprintMismatchError("peer certificate was not checked"), by_peer=False
            )
            return
        if why == _WHY_ENDED:  # pragma: no cover - only if a finalizer closed it meanwhile
            return
        self._log_completed()

    def _log_completed(self) -> None:
        log = debug_logger("dtls_ossl.connection")
        if log is not None:
            info = self._info
            assert info is not None
            log.debug(
                "%s: handshake completed: %s %s srtp=%s",
                self._role.value,
                info.protocol_version,
                info.cipher,
                info.srtp_profile.name if info.srtp_profile else None,
            )

    def _fatal(self, flags: int) -> None:
        """Classify an OpenSSL failure and terminate (RFC 6347 §4.1.2.7: fatal alerts end it)."""
        c = self._c
        mismatch = None
        if c.verdict == _VERDICT_REJECTED:
            expected = select_fingerprints(self._expected or ())
            actual: tuple[str, ...] = ()
            if expected and c.actual_len:
                got = bytes(ffi.buffer(c.actual, c.actual_len))
                actual = (format_fingerprint(expected[0].algorithm, got),)
            mismatch = (
                tuple([format_fingerprint(fp.algorithm, fp.value) for fp in expected]),
                actual,
            )
        err, by_peer = classify_failure(
            consume_errors(),
            mismatch=mismatch,
            n_expected=len(self._expected or ()),
            sent_alert=self._sent_alert,
            received_alert=self._received_alert,
            established=self._state is _ESTABLISHED,
            ssl=self._c.ssl,
            retransmissions=self._n_retransmissions,
        )
        self._terminate(err, by_peer=by_peer)

    def _terminate(self, error: DtlsError | None, *, by_peer: bool) -> None:
        if self._state in _ENDED:
            return
        # The C object is freed below: its counters move to Python first.
        received, framed = self._c_counts()
        self._n_received += received
        self._n_sent += framed
        self._state = _FAILED if error is not None else _CLOSED
        self._timer_at = None
        self._handshake_deadline = None
        self._held = None
        self._events.append(events.ConnectionTerminated(error=error, by_peer=by_peer))
        log = (
            None if error is None else debug_logger("dtls_ossl.connection")
        )  # the public logger name
        if log is not None:
            log.debug("%s: terminated: %s", self._role.value, error)
        lib.ERR_clear_error()
        # Free the SSL object now rather than at garbage collection: a server may hold many
        # terminated connections until it notices. _addr becomes 0 first.
        _conn_free(self)


def _records(buf: Any, ends: list[int]) -> list[bytes]:
    """Copy the items lying end to end in ``buf`` (``ends``: their end offsets) into bytes."""
    # A comprehension beats map(): BUILD_SLICE reuses a cached slice object, while calling
    # slice() or buf.__getitem__ through map() builds an argument tuple per item.
    return [buf[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def _nbytes(data: bytes | bytearray | memoryview) -> int:
    """Size in bytes of a bytes-like object (len() counts items, wider in some memoryviews)."""
    return len(data) if type(data) is bytes else memoryview(data).nbytes
