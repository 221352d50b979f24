"""In-memory test helpers (aioquic's vocabulary): make_pair, transfer, handshake, drain_events.

OpenSSL's retransmission timer runs on its own wall clock, so FakeClock only drives *our*
deadlines (handshake deadline, the absolute values get_timer() returns).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from dtls_ossl import (
    Certificate,
    DtlsConfiguration,
    DtlsConnection,
    Role,
    SrtpProfile,
    events,
)

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


def make_config(cert: Certificate | None = None, **kwargs) -> DtlsConfiguration:
    return DtlsConfiguration(certificate=cert or cached_cert("default"), **kwargs)


def make_pair(
    client_kwargs: dict | None = None,
    server_kwargs: dict | None = None,
    *,
    client_cert: Certificate | None = None,
    server_cert: Certificate | None = None,
    client_expects: Iterable | str | None = "auto",
    server_expects: Iterable | str | None = "auto",
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
    out = []
    while (e := conn.next_event()) is not None:
        out.append(e)
    return out


def event_types(conn: DtlsConnection) -> list[type]:
    return [type(e) for e in drain_events(conn)]


ALL_PROFILES = list(SrtpProfile)
