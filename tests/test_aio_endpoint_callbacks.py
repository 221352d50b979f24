"""DtlsEndpoint callbacks: async def callbacks are refused, on_handshake runs synchronously.

The burst test reads datagrams from a real UDP socket on 127.0.0.1 and hands a whole burst
(the client's final flight and an SRTP packet right behind it) to ``datagram_received`` in one
loop iteration, as a caller that owns the socket does (recvmmsg-style): ``on_handshake`` must
have installed the keys before ``on_rtp`` sees the packet.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from test_aio import CLIENT_CERT, CLIENT_FP, LOCAL, SERVER_CERT, SERVER_FP, config, run

from dtls_ossl import (
    ConfigurationError,
    ConnectionClosedError,
    DtlsConnection,
    DtlsError,
    Role,
    SrtpKeys,
    aio,
    events,
)

pytestmark = pytest.mark.timeout(30)

RTP = struct.pack("!BBHII", 0x80, 96, 1, 160, 0x1234) + bytes(40)


async def _async_cb(*args: object) -> None:
    return None


class _AsyncCallable:
    async def __call__(self, *args: object) -> None:
        return None


@pytest.mark.parametrize("name", ["on_stun", "on_rtp", "on_other", "on_handshake"])
@pytest.mark.parametrize("cb", [_async_cb, _AsyncCallable(), 42])
def test_async_or_non_callable_callbacks_are_refused(name: str, cb: Any) -> None:
    # Any: the test deliberately passes what the callback types forbid (an async callable, 42).
    async def main() -> None:
        with pytest.raises(ConfigurationError, match=name) as info:
            aio.DtlsEndpoint(config(SERVER_CERT), **{name: cb})
        assert "\n" not in str(info.value)

    run(main())


def test_callback_returning_a_coroutine_is_counted_and_not_left_unawaited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> aio.ServerStats:
        endpoint = aio.DtlsEndpoint(config(SERVER_CERT), on_rtp=lambda d, a: _async_cb(d, a))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "coroutine was never awaited" would fail here
            endpoint.datagram_received(RTP, ("127.0.0.1", 9))
        return endpoint.stats

    with caplog.at_level(logging.ERROR, logger="dtls_ossl.aio"):
        stats = run(main())
    assert stats.handler_errors == 1
    assert "returned an awaitable" in caplog.text


class _Udp:
    """A blocking UDP socket on 127.0.0.1 with bounded reads."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCAL, 0))
        self.sock.setblocking(False)
        self.addr = self.sock.getsockname()

    def read_burst(self, at_least: int, timeout: float = 5.0) -> list[bytes]:
        """Every datagram queued, waiting (bounded) until at least ``at_least`` are read."""
        got: list[bytes] = []
        while len(got) < at_least:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            assert ready, f"only {len(got)} of {at_least} datagrams after {timeout} s"
            while True:
                try:
                    got.append(self.sock.recv(65535))
                except BlockingIOError:
                    break
        return got


def _drive_client_until_output(
    client: DtlsConnection, udp: _Udp, loop_time: Callable[[], float]
) -> list[bytes]:
    """Feed the client what arrives until it has a flight to send; return that flight."""
    while True:
        for d in udp.read_burst(1):
            client.receive_datagram(d, loop_time())
        out = client.datagrams_to_send(loop_time())
        if out:
            return out


@dataclass
class _Burst:
    """What the server endpoint saw while handling one burst."""

    log: list[str]
    waiter_done_at_rtp: list[bool]
    keys: SrtpKeys | None
    client_keys: SrtpKeys
    info: events.HandshakeCompleted
    stats: aio.ServerStats


def _handshake_burst(with_callback: bool) -> _Burst:
    async def main() -> _Burst:
        loop = asyncio.get_running_loop()
        srv, cli = _Udp(), _Udp()
        log: list[str] = []
        keys: dict[str, SrtpKeys] = {}
        waited: list[bool] = []
        waiters: list[asyncio.Future[events.HandshakeCompleted]] = []

        def on_handshake(stream: aio.DtlsStream) -> None:
            keys["srtp"] = stream.srtp_keys()
            log.append("handshake")

        def on_rtp(data: bytes, addr: aio.Address) -> None:
            log.append("rtp with keys" if "srtp" in keys else "rtp without keys")
            waited.append(waiters[0].done())

        endpoint = aio.DtlsEndpoint(
            config(SERVER_CERT),
            sendto=srv.sock.sendto,
            on_rtp=on_rtp,
            on_handshake=on_handshake if with_callback else None,
        )
        stream = endpoint.connection_for(cli.addr, Role.SERVER, [CLIENT_FP])
        waiter = asyncio.ensure_future(stream.wait_handshake())
        waiters.append(waiter)
        client = DtlsConnection(
            config(CLIENT_CERT), role=Role.CLIENT, remote_fingerprints=[SERVER_FP]
        )
        client.connect(loop.time())
        for d in client.datagrams_to_send(loop.time()):
            cli.sock.sendto(d, srv.addr)
        for d in srv.read_burst(1):
            endpoint.datagram_received(d, cli.addr)
        final_flight = _drive_client_until_output(client, cli, loop.time)
        for d in [*final_flight, RTP]:
            cli.sock.sendto(d, srv.addr)
        burst = srv.read_burst(len(final_flight) + 1)
        assert burst == [*final_flight, RTP]
        for d in burst:  # one loop iteration: no await between them
            endpoint.datagram_received(d, cli.addr)
        info = await asyncio.wait_for(waiter, 5)
        _drive_client_until_output_or_done(client, cli, loop.time)
        result = _Burst(
            log=log,
            waiter_done_at_rtp=waited,
            keys=keys.get("srtp"),
            client_keys=client.srtp_keys(),
            info=info,
            stats=endpoint.stats,
        )
        await endpoint.close(grace=0.1)
        srv.sock.close()
        cli.sock.close()
        return result

    return run(main())


def _drive_client_until_output_or_done(
    client: DtlsConnection, udp: _Udp, loop_time: Callable[[], float]
) -> None:
    from dtls_ossl import ConnectionState

    while client.state is not ConnectionState.ESTABLISHED:
        for d in udp.read_burst(1):
            client.receive_datagram(d, loop_time())


def test_on_handshake_runs_before_the_rest_of_the_burst() -> None:
    r = _handshake_burst(with_callback=True)
    assert r.log == ["handshake", "rtp with keys"]
    assert r.keys is not None
    assert r.keys.mirrors(r.client_keys)
    assert r.info.srtp_keys == r.keys
    assert r.stats.handler_errors == 0
    assert r.waiter_done_at_rtp == [False]  # the callback, not the task, was in time


def test_without_on_handshake_a_waiting_task_is_too_late() -> None:
    """Why the callback exists: wait_handshake() resumes only after the whole burst."""
    r = _handshake_burst(with_callback=False)
    assert r.log == ["rtp without keys"]
    assert r.waiter_done_at_rtp == [False]


def test_on_handshake_that_raises_closes_that_peer(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> aio.ServerStats:
        loop = asyncio.get_running_loop()

        def boom(stream: aio.DtlsStream) -> None:
            raise RuntimeError("no SRTP session for you")

        a = aio.DtlsEndpoint(config(CLIENT_CERT))
        b = aio.DtlsEndpoint(config(SERVER_CERT), on_handshake=boom)
        ta, _ = await loop.create_datagram_endpoint(lambda: a, local_addr=(LOCAL, 0))
        tb, _ = await loop.create_datagram_endpoint(lambda: b, local_addr=(LOCAL, 0))
        addr_a = ta.get_extra_info("sockname")
        addr_b = tb.get_extra_info("sockname")
        server = b.connection_for(addr_a, Role.SERVER, [CLIENT_FP])
        client = a.connection_for(addr_b, Role.CLIENT, [SERVER_FP])
        await client.wait_handshake()
        await asyncio.wait_for(server.wait_closed(), 5)
        assert isinstance(server.error, RuntimeError)
        await asyncio.wait_for(client.wait_closed(), 5)  # close_notify reached the client
        stats = b.stats
        await a.close()
        await b.close()
        ta.close()
        tb.close()
        return stats

    with caplog.at_level(logging.ERROR, logger="dtls_ossl.aio"):
        stats = run(main())
    assert stats.handler_errors == 1
    assert "on_handshake failed" in caplog.text


def test_on_handshake_failed_reports_a_rejected_peer() -> None:
    from test_aio import WRONG_FP

    from dtls_ossl import FingerprintMismatchError

    async def main() -> tuple[list[tuple[aio.Address, BaseException]], aio.Address]:
        loop = asyncio.get_running_loop()
        failures: list[tuple[aio.Address, BaseException]] = []
        a = aio.DtlsEndpoint(config(CLIENT_CERT))
        b = aio.DtlsEndpoint(
            config(SERVER_CERT), on_handshake_failed=lambda addr, err: failures.append((addr, err))
        )
        ta, _ = await loop.create_datagram_endpoint(lambda: a, local_addr=(LOCAL, 0))
        tb, _ = await loop.create_datagram_endpoint(lambda: b, local_addr=(LOCAL, 0))
        addr_a = ta.get_extra_info("sockname")
        server = b.connection_for(addr_a, Role.SERVER, [WRONG_FP])
        client = a.connection_for(tb.get_extra_info("sockname"), Role.CLIENT, [SERVER_FP])
        with pytest.raises(FingerprintMismatchError):
            await server.wait_handshake()
        with pytest.raises(Exception):  # noqa: B017 - the client sees the server's alert
            await client.wait_handshake()
        await a.close()
        await b.close()
        ta.close()
        tb.close()
        return failures, addr_a

    failures, addr_a = run(main())
    assert len(failures) == 1
    addr, err = failures[0]
    assert addr == addr_a
    assert isinstance(err, FingerprintMismatchError)
    assert err.alert == 42
    assert err.actual == (str(CLIENT_CERT.fingerprint()),)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCAL, 0))
        port: int = s.getsockname()[1]
        return port


def test_connect_fails_fast_on_port_unreachable_when_asked() -> None:
    from dtls_ossl import HandshakeError, HandshakeTimeoutError

    async def attempt(fail_fast: bool) -> tuple[BaseException, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            await aio.connect(
                LOCAL,
                _closed_port(),
                config(CLIENT_CERT),
                remote_fingerprints=[SERVER_FP],
                handshake_timeout=1.5,
                fail_on_port_unreachable=fail_fast,
            )
        except Exception as exc:
            return exc, loop.time() - t0
        raise AssertionError("connected to a closed port")

    err, took = run(attempt(True))
    assert type(err) is HandshakeError
    assert isinstance(err.__cause__, ConnectionRefusedError)
    assert took < 1.0
    # The default keeps waiting: ICMP is unauthenticated, and a server may be starting.
    err, took = run(attempt(False))
    assert isinstance(err, HandshakeTimeoutError)
    assert isinstance(err.__cause__, ConnectionRefusedError)
    assert took >= 1.4


class KeyLogBroke(Exception):
    """The user's own exception (not a DtlsError)."""


def test_a_user_callback_exception_propagates_as_itself(caplog: pytest.LogCaptureFixture) -> None:
    """Blame rule: a key-log writer that raises is the user's error, never a HandshakeError."""

    def broken_key_log(line: str) -> None:
        raise KeyLogBroke(line[:13])

    async def main() -> tuple[aio.ServerStats, KeyLogBroke]:
        loop = asyncio.get_running_loop()
        a = aio.DtlsEndpoint(config(CLIENT_CERT, key_log=broken_key_log))
        b = aio.DtlsEndpoint(config(SERVER_CERT))
        ta, _ = await loop.create_datagram_endpoint(lambda: a, local_addr=(LOCAL, 0))
        tb, _ = await loop.create_datagram_endpoint(lambda: b, local_addr=(LOCAL, 0))
        b.connection_for(ta.get_extra_info("sockname"), Role.SERVER, [CLIENT_FP])
        client = a.connection_for(tb.get_extra_info("sockname"), Role.CLIENT, [SERVER_FP])
        with pytest.raises(KeyLogBroke) as info:
            await asyncio.wait_for(client.wait_handshake(), 5)
        assert client.closed and client.error is info.value
        with pytest.raises(ConnectionClosedError) as closed:
            await client.recv()  # the end of the stream says why: the user's exception
        assert closed.value.__cause__ is info.value
        stats = a.stats
        await a.close()
        await b.close()
        ta.close()
        tb.close()
        return stats, info.value

    with caplog.at_level(logging.ERROR, logger="dtls_ossl.aio"):
        stats, exc = run(main())
    assert not isinstance(exc, DtlsError)
    assert stats.handler_errors == 1 and stats.handshakes_failed == 1
    (record,) = [r for r in caplog.records if r.exc_info]
    assert (
        record.exc_info is not None and record.exc_info[1] is exc
    )  # logged as the user's, with its own traceback


def test_connect_closes_its_socket_when_the_stream_ends() -> None:
    from test_aio import connect, roundtrip, start_server

    async def main() -> None:
        async with await start_server() as server:
            stream = await connect(server)
            await roundtrip(stream, b"x")
            assert stream.local_address is not None
            await asyncio.wait_for(stream.aclose(), 5)
            assert stream.local_address is None  # connection_lost: the socket is closed

    run(main())
