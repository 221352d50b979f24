"""In-memory test helpers (aioquic's vocabulary): make_pair, transfer, handshake, drain_events.

OpenSSL's retransmission timer runs on its own wall clock, so FakeClock only drives *our*
deadlines (handshake deadline, the absolute values get_timer() returns).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from dtls_ossl import (
    Certificate,
    ConnectionState,
    DtlsConfiguration,
    DtlsConnection,
    Fingerprint,
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
