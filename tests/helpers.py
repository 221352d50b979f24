"""In-memory test helpers (aioquic's vocabulary): make_pair, transfer, handshake, drain_events.

OpenSSL's retransmission timer runs on its own wall clock, so FakeClock only drives *our*
deadlines (handshake deadline, the absolute values get_timer() returns).

The "internals" section at the end is the only place where tests touch dtls_ossl's private
state (tests/test_binding.py aside, which tests the private binding itself): a change of
internals is one edit there.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import pytest

from dtls_ossl import (
    Certificate,
    ConnectionState,
    DtlsConfiguration,
    DtlsConnection,
    Fingerprint,
    OpenSSLErrorInfo,
    Role,
    SrtpProfile,
    events,
)

E = TypeVar("E", bound=events.DtlsEvent)

_CERTS: dict[str, Certificate] = {}


def cached_cert(name: str, key_type: str = "ecdsa-p256") -> Certificate:
    """Certificates are slow to make (RSA): share them across tests by name."""
    key = f"{name}/{key_type}"
    if key not in _CERTS:
        _CERTS[key] = Certificate.generate(key_type)
    return _CERTS[key]


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def rss_bytes() -> int:
    """This process's resident set size. A test that reads it carries @pytest.mark.rss:
    under ASan (ci/sanitize.sh) the quarantine and shadow memory make RSS meaningless."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_config(cert: Certificate | None = None, **kwargs: Any) -> DtlsConfiguration:
    return DtlsConfiguration(certificate=cert or cached_cert("default"), **kwargs)


def make_pair(
    client_kwargs: dict[str, Any] | None = None,
    server_kwargs: dict[str, Any] | None = None,
    *,
    client_cert: Certificate | None = None,
    server_cert: Certificate | None = None,
    client_expects: Iterable[Fingerprint | str] | Literal["auto"] | None = "auto",
    server_expects: Iterable[Fingerprint | str] | Literal["auto"] | None = "auto",
) -> tuple[DtlsConnection, DtlsConnection]:
    client_cert = client_cert or cached_cert("client")
    server_cert = server_cert or cached_cert("server")
    ccfg = DtlsConfiguration(certificate=client_cert, **(client_kwargs or {}))
    scfg = DtlsConfiguration(certificate=server_cert, **(server_kwargs or {}))
    cexp = [server_cert.fingerprint()] if client_expects == "auto" else client_expects
    sexp = [client_cert.fingerprint()] if server_expects == "auto" else server_expects
    client = DtlsConnection(ccfg, role=Role.CLIENT, remote_fingerprints=cexp)
    server = DtlsConnection(scfg, role=Role.SERVER, remote_fingerprints=sexp)
    return client, server


def transfer(
    src: DtlsConnection,
    dst: DtlsConnection,
    now: float,
    drop: Callable[[bytes], bool] | None = None,
) -> int:
    """Move every pending datagram from src to dst; returns how many were delivered."""
    n = 0
    for d in src.datagrams_to_send(now):
        if drop is not None and drop(d):
            continue
        dst.receive_datagram(d, now)
        n += 1
    return n


def roundtrip(client: DtlsConnection, server: DtlsConnection, now: float) -> int:
    return transfer(client, server, now) + transfer(server, client, now)


def handshake(
    client: DtlsConnection, server: DtlsConnection, now: float | None = None, max_rounds: int = 10
) -> int:
    """Connect and shuttle datagrams until both sides are quiet; returns the rounds used."""
    now = time.monotonic() if now is None else now
    client.connect(now)
    for rounds in range(1, max_rounds + 1):
        if roundtrip(client, server, now) == 0:
            return rounds
    raise AssertionError(f"handshake still talking after {max_rounds} rounds")


def drain_events(conn: DtlsConnection) -> list[events.DtlsEvent]:
    out: list[events.DtlsEvent] = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def event_types(conn: DtlsConnection) -> list[type[events.DtlsEvent]]:
    return [type(e) for e in drain_events(conn)]


def expect_event(evs: Sequence[events.DtlsEvent], kind: type[E], index: int | None = None) -> E:
    """The one event of type ``kind`` in ``evs`` (or the one at ``index``), typed as such.

    Fails the test when there is none, or more than one and no ``index`` says which.
    """
    if index is not None:
        ev = evs[index]
        assert isinstance(ev, kind), f"event {index} is {ev!r}, not a {kind.__name__}"
        return ev
    found = [e for e in evs if isinstance(e, kind)]
    assert len(found) == 1, f"expected one {kind.__name__} in {list(evs)!r}"
    return found[0]


def completed(conn: DtlsConnection) -> events.HandshakeCompleted:
    """Drain ``conn``'s events and return the first, which must be its HandshakeCompleted."""
    return expect_event(drain_events(conn), events.HandshakeCompleted, 0)


def current_state(conn: DtlsConnection) -> ConnectionState:
    """``conn.state`` read through a call, so that mypy does not keep an earlier narrowing."""
    return conn.state


def received_data(conn: DtlsConnection) -> list[bytes]:
    """Drain ``conn``'s events, all of them DataReceived, and return their payloads in order."""
    evs = drain_events(conn)
    assert all(isinstance(e, events.DataReceived) for e in evs), f"not only data: {evs!r}"
    return [e.data for e in evs if isinstance(e, events.DataReceived)]


ALL_PROFILES = list(SrtpProfile)


# --- internals ---------------------------------------------------------------------------------
# The only places the tests reach below the public API. Each checks something the API does not
# (and should not) expose: which SSL_CTX a connection runs on, OpenSSL's thread-global error
# queue, a C-level switch only a test needs, or how OpenSSL words its errors. Keep this list
# short, and edit here, not in the tests, when the internals move. The binding is imported at
# the first call, so importing this module stays as lazy as importing dtls_ossl.


def _lib() -> Any:
    from dtls_ossl._binding import lib

    return lib


def _ffi() -> Any:
    from dtls_ossl._binding import ffi

    return ffi


def ssl_ctx_of_configuration(cfg: DtlsConfiguration) -> object:
    """The SSL_CTX that ``cfg`` builds once and shares between its connections (a cffi pointer)."""
    ctx: object = cfg._ssl_ctx()
    return ctx


def ssl_ctx_of_connection(conn: DtlsConnection) -> object:
    """The SSL_CTX that ``conn``'s SSL object was made from (a cffi pointer)."""
    ctx: object = _lib().SSL_get_SSL_CTX(conn._c.ssl)
    return ctx


def openssl_error_queue_is_empty() -> bool:
    """Whether this thread's OpenSSL error queue is empty (pops one entry if it is not)."""
    return int(_lib().ERR_get_error()) == 0


def push_foreign_openssl_error(library: str = "USER", reason: int = 1) -> int:
    """Put an error in this thread's OpenSSL queue, as another library using the same OpenSSL
    could leave one behind (``library``: ``"USER"`` or ``"SYS"``, an ERR_LIB_* name); return
    its packed code, as ERR_get_error will give it."""
    lib = _lib()

    def push() -> None:
        lib.ERR_new()
        lib.ERR_set_error(getattr(lib, f"ERR_LIB_{library}"), reason, _ffi().NULL)

    push()
    code = int(lib.ERR_get_error())  # popped to learn its code, then pushed again
    push()
    return code


def drain_openssl_error_queue() -> list[int]:
    """Pop every entry of this thread's OpenSSL error queue; their packed codes, oldest first."""
    codes = []
    while code := int(_lib().ERR_get_error()):
        codes.append(code)
    return codes


def openssl_timer_running(conn: DtlsConnection) -> bool:
    """Whether OpenSSL's own retransmission timer runs on ``conn``, read by a call that always
    reads it (a timer call, which retransmits nothing when the timer is off)."""
    from dtls_ossl._binding import scratch

    lib = _lib()
    flags = int(lib.DtlsOssl_handle_timeout(conn._c, scratch().ptr))
    assert not flags & ~int(lib.DTLSOSSL_TIMER), f"a timer call did more: {flags:#x}"
    return bool(flags & int(lib.DTLSOSSL_TIMER))


def openssl_constant(name: str) -> int:
    """An integer constant of the OpenSSL headers the extension was built against."""
    return int(getattr(_lib(), name))


def disable_epoch0_renumbering(conn: DtlsConnection) -> None:
    """Use the plausibility screen of connections that may negotiate DTLS 1.3 (no renumbering
    of epoch-0 records), which a DTLS 1.2 pair otherwise never reaches."""
    _lib().DtlsOssl_set_renumber0(conn._c, 0)


def reword_openssl_errors(monkeypatch: pytest.MonkeyPatch, reason: str) -> None:
    """Make every OpenSSL error the library reads carry ``reason`` as its text (as another
    OpenSSL build may word it), keeping code and library.

    Patched wherever a dtls_ossl module imported ``consume_errors`` by name, so the test does not
    depend on which module reads the error queue.
    """
    from dtls_ossl._binding import consume_errors as original

    def reworded() -> tuple[OpenSSLErrorInfo, ...]:
        return tuple(OpenSSLErrorInfo(e.code, e.library, reason) for e in original())

    patched = 0
    for name, module in list(sys.modules.items()):
        if name.startswith("dtls_ossl.") and getattr(module, "consume_errors", None) is original:
            monkeypatch.setattr(module, "consume_errors", reworded)
            patched += 1
    assert patched, "no dtls_ossl module imports consume_errors any more: update this helper"
