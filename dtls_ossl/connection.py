"""The sans-IO DTLS connection.

Theory of operation
===================

A :class:`DtlsConnection` wraps one OpenSSL ``SSL`` object whose transport is a pair of
datagram BIOs of our own (_cffi_src/engine.c). It never touches a socket or a clock: the
caller feeds datagrams and the current time in, and pulls datagrams, a timer deadline and
events out (aioquic's five verbs).

Rule 1 - one C call per input. ``receive_datagram``, ``send``, ``handle_timer``, ``connect``
and ``close`` each make exactly one call into the compiled helper (``DtlsOssl_*`` in
_cffi_src/driver.c). That call clears OpenSSL's error queue, hands OpenSSL one datagram, drives the
handshake or reads every plaintext record until OpenSSL wants more, frames what OpenSSL wrote
into datagrams, and reads the retransmission timer. The connection then turns the returned
status bits into events. The calls that speak the CPython API directly (_cffi_src/fastpath.c,
step.c, conninit.c) keep the GIL and append the datagrams and DataReceived events to this
object's lists themselves, returning only the status bits left for Python: ``step`` for each
flight of the handshake (it also arms the timer and, at the end, queues HandshakeCompleted and
makes the connection established), and the ``fast_*`` per-record functions of an established
connection. The C object is owned through the ``_ref`` slot and reached through ``_addr``
(its address, 0 once freed when the connection ends). ``send``, ``receive_datagram``,
``datagrams_to_send`` and ``next_event`` are themselves C methods in place of the definitions
below (:func:`_install_c_methods`): they do an established connection's common case and call
those definitions for everything else, so a record costs no Python frame. The handshake has
C twins too: ``__init__`` for the usual call, and ``receive`` (in front of the Python
``receive_datagram``) for each flight and a new server's ClientHello, so that a handshake
costs no Python frame of this module either; the definitions below stay the reference.

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

from dtls_ossl import _openssl, events
from dtls_ossl._binding import Scratch, consume_errors, ffi, lib, local, scratch
from dtls_ossl._callbacks import NO_CALLBACKS, CallbackState
from dtls_ossl._conn_core import (
    _MD_INDEX,
    STEP_HANDSHAKE,
    STEP_RECEIVE,
    STEP_TIMEOUT,
    ConnectionCore,
    _nbytes,
    step,
)
from dtls_ossl._conn_outcome import export_keying_material
from dtls_ossl._conn_status import (
    ALERTS as _ALERTS,
)
from dtls_ossl._conn_status import (
    ENDED as _ENDED,
)
from dtls_ossl._conn_status import (
    ESTABLISHED as _ESTABLISHED,
)
from dtls_ossl._conn_status import (
    HANDSHAKING as _HANDSHAKING,
)
from dtls_ossl._conn_status import (
    NEW as _NEW,
)
from dtls_ossl._conn_status import (
    STARTING as _STARTING,
)
from dtls_ossl._conn_status import (
    WIRE as _WIRE,
)
from dtls_ossl._conn_status import (
    ConnectionState,
)
from dtls_ossl._limits import check_positive
from dtls_ossl._roles import CLIENT as _CLIENT
from dtls_ossl._roles import SERVER as _SERVER
from dtls_ossl._roles import Role
from dtls_ossl._stats import ConnectionStats
from dtls_ossl._util import TYPE_CHECKING, final
from dtls_ossl.configuration import DtlsConfiguration
from dtls_ossl.events import DtlsEvent, HandshakeCompleted
from dtls_ossl.exceptions import (
    ConfigurationError,
    HandshakeTimeoutError,
    InvalidStateError,
    OpenSSLError,
    PayloadSizeError,
)
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.sdp import (
    Fingerprint,
    parse_fingerprints,
    select_fingerprints,
)
from dtls_ossl.webrtc.srtp import SrtpKeys, SrtpProfile

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence


__all__ = ["ConnectionState", "ConnectionStats", "DtlsConnection"]

# The per-record paths of an established connection (CPython functions in
# _cffi_src/fastpath.c): they append datagrams to the connection's output list and DataReceived
# events to its event list themselves, and return the status bits left for Python (0: nothing
# else to do).
_fast_receive = _openssl.fast_receive
_fast_send = _openssl.fast_send
_fast_receive_many = _openssl.fast_receive_many
_fast_send_many = _openssl.fast_send_many
# next_event() pops from the front of a queue this short (a memmove of a few pointers, the
# fastest path for the usual one or two events); a longer one is read from a head index and
# compacted once this many events were read (and at least half of it).
_POP_FRONT_MAX = 32
_COMPACT_AT = 256


_VERDICT_NONE = int(lib.DTLSOSSL_VERDICT_NONE)

# The slots every connection starts with, as __init__ sets them: its C twin (install_init in
# _install_c_methods) sets these, then the ones that depend on the arguments.
_INITIAL: dict[str, object] = {
    "_insecure": False,
    "_cb": NO_CALLBACKS,
    "_handle": None,
    "_state": _NEW,
    "_ev_head": 0,
    "_held": None,
    "_timer_at": None,
    "_handshake_deadline": None,
    "_data_mtu": 0,
    "_info": None,
    "_sent_alert": None,
    "_received_alert": None,
    "_n_received": 0,
    "_n_dropped": 0,
    "_n_held": 0,
    "_n_sent": 0,
    "_n_retransmissions": 0,
}


def _normalise_fingerprints(fingerprints: Iterable[Fingerprint | str]) -> tuple[Fingerprint, ...]:
    return parse_fingerprints(
        fingerprints,
        empty_hint="; pass None to give them later with set_remote_fingerprints()",
    )


@final
class DtlsConnection(ConnectionCore):
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

    __slots__ = ()

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
        self._expected: tuple[Fingerprint, ...] | None = None
        self._insecure = False
        if insecure_skip_fingerprint_check:
            if remote_fingerprints is not None:
                raise ConfigurationError(
                    "insecure_skip_fingerprint_check=True cannot be combined with "
                    "remote_fingerprints"
                )
            self._insecure = True
        elif remote_fingerprints is not None:
            if (
                type(remote_fingerprints) in (list, tuple)
                and len(remote_fingerprints) == 1  # type: ignore[arg-type]
                and type(fp := remote_fingerprints[0]) is Fingerprint  # type: ignore[index]
            ):
                self._expected = (fp,)  # the usual case, already parsed
            else:
                self._expected = _normalise_fingerprints(remote_fingerprints)
        key_log = configuration._key_log_writer
        if key_log is None:
            # No Python callback can run (the fingerprint is checked in C): no handle at all.
            self._cb = NO_CALLBACKS
            self._handle = None
        else:
            self._cb = CallbackState(key_log)
            self._handle = ffi.new_handle(self._cb)  # owned: keeps the state alive while C has it
        self._new_ssl()  # sets _ref and _addr
        self._state = _NEW
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
        # _sc, the scratch the fast paths use, is set when the handshake completes (by C) and
        # read only from then on.

    # ----------------------------------------------------------------------------- inputs

    def connect(self, now: float) -> None:
        """Start the handshake as the client: queues the ClientHello.

        After calling this, call :meth:`datagrams_to_send`, :meth:`get_timer` and
        :meth:`next_event`.

        :raises InvalidStateError: on a server, or if already started.
        """
        if self._role is not _CLIENT:
            raise InvalidStateError("connect() is for the client role; a server waits")
        if self._state is not _NEW:
            raise InvalidStateError(f"connect() called in state {self._state.value}")
        self._start(now)
        sc = scratch()
        flags = step(self, sc, STEP_HANDSHAKE, None, now)
        if flags:
            self._handle_flags(flags, now, sc)

    def receive_datagram(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Process one datagram received from the peer.

        Malformed, forged or late datagrams are dropped silently (RFC 6347 §4.1.2.7) and
        counted in :attr:`stats`; this never raises because of what the peer sent.
        After calling this, call :meth:`datagrams_to_send`, :meth:`get_timer` and
        :meth:`next_event`.

        :raises Exception: re-raises an exception raised by a key-log callback.
        """
        state = self._state
        if state is _HANDSHAKING and (self._expected is not None or self._insecure):
            # A flight: one C call feeds it, appends the answer to _out, arms the timer and,
            # at the end of the handshake, queues HandshakeCompleted (step returns COMPLETED).
            self._n_received += 1
            try:
                sc = local.scratch
            except AttributeError:
                sc = scratch()
            flags = step(self, sc, STEP_RECEIVE, data, now)
            if flags:
                self._handle_flags(flags, now, sc)
            return
        if state is _ESTABLISHED:
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
        if self._state in _ENDED:
            return
        deadline = self._handshake_deadline
        if deadline is not None and now >= deadline and self._state in _STARTING:
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
        flags = step(self, sc, STEP_TIMEOUT, None, now)
        if flags:
            self._handle_flags(flags, now, sc)

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
        if self._state is not _ESTABLISHED:
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
        if self._state in _ENDED:
            return
        if self._state is _ESTABLISHED:
            sc = scratch()
            flags = lib.DtlsOssl_shutdown(self._c, sc.ptr)
            if flags & _WIRE:
                self._collect_wire(sc)
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
        if self._insecure:
            raise InvalidStateError("fingerprint checking was disabled for this connection")
        if self._state in _ENDED:
            raise InvalidStateError(f"connection is {self._state.value}")
        if self._state is _ESTABLISHED or self._c.verdict != _VERDICT_NONE:
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
        if self._role is not _SERVER or self._state is not _NEW:
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
        if self._state not in _STARTING:
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
        if deadline is not None and self._state in _STARTING:
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
        if self._state is not _ESTABLISHED:
            raise InvalidStateError(
                f"export_keying_material() needs an established connection, not {self._state.value}"
            )
        if not isinstance(length, int) or length <= 0 or length > 1 << 16:
            raise ConfigurationError(f"length: expected 1..65536 bytes, got {length!r}")
        return export_keying_material(self._c.ssl, label, length, context)

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


def _install_c_methods() -> None:
    """Put the per-record verbs' C twins (_cffi_src/fastpath.c) in place of the methods above.

    A Python method call costs about as much as the C call inside it, and every record makes
    four. The C methods do an established connection's common case themselves and call the
    definitions above, unchanged, for everything else; those stay the reference for behaviour,
    typing and documentation. For receive_datagram, "everything else" goes through the
    handshake path's ``receive`` first: it feeds a handshake flight (or a new server's
    ClientHello) itself and calls the definition above for the rest.
    """
    params = {
        "send": "data, now",
        "receive_datagram": "data, now",
        "datagrams_to_send": "now",
        "next_event": "",
    }
    docs = tuple(
        f"{name}($self{', ' if p else ''}{p})\n--\n\n{DtlsConnection.__dict__[name].__doc__}"
        for name, p in params.items()
    )
    init = DtlsConnection.__dict__["__init__"]
    _openssl.step_setup(
        ConnectionCore,
        Scratch,
        HandshakeCompleted,
        SrtpKeys,
        Certificate,
        {
            "established": _ESTABLISHED,
            "handshaking": _HANDSHAKING,
            "new": _NEW,
            "server": _SERVER,
            "local": local,
            "profiles": {p.iana_id: (p, p.key_length, p.salt_length) for p in SrtpProfile},
            "select": select_fingerprints,
            "receive": DtlsConnection.__dict__["receive_datagram"],
            "first_outcome": ConnectionCore._first_outcome,
            "handle_flags": ConnectionCore._handle_flags,
            "init": init,
            "client": _CLIENT,
            "configuration": DtlsConfiguration,
            "fingerprint": Fingerprint,
            "md_index": _MD_INDEX,
            "initial": _INITIAL,
        },
    )
    # The usual construction in C; the definition above for any other call (and every error).
    _openssl.install_init(
        DtlsConnection,
        "__init__($self, configuration, *, role, remote_fingerprints=None, "
        f"insecure_skip_fingerprint_check=False)\n--\n\n{init.__doc__}",
    )
    # install_methods keeps what receive_datagram is now as its fallback.
    DtlsConnection.receive_datagram = _openssl.receive  # type: ignore[method-assign,assignment]
    slots = ("_state", "_addr", "_out", "_events", "_ev_head")
    _openssl.install_methods(
        DtlsConnection,
        tuple(ConnectionCore.__dict__[name] for name in slots),
        _ESTABLISHED,
        (ConnectionCore._fast_send_outcome, ConnectionCore._fast_receive_outcome),
        docs,
        (_POP_FRONT_MAX, _COMPACT_AT),
    )


_install_c_methods()
