"""The asyncio layer over real UDP sockets on 127.0.0.1: clients, servers, load and attacks.

Each test runs its own event loop with plain ``asyncio.run`` (no pytest-asyncio), bounded by
``asyncio.wait_for``. Timers are short (0.1 s first retransmission) so nothing waits long.
The other test_aio_* modules import the helpers below by name.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import pytest
from helpers import cached_cert

from dtls_ossl import (
    Certificate,
    ConfigurationError,
    ConnectionClosedError,
    DtlsConfiguration,
    DtlsConnection,
    Fingerprint,
    FingerprintMismatchError,
    HandshakeError,
    HandshakeTimeoutError,
    InvalidStateError,
    PayloadSizeError,
    Role,
    aio,
)
from dtls_ossl.aio import Handler, IdleTimeoutError

LOCAL = "127.0.0.1"
T = TypeVar("T")
SERVER_CERT = cached_cert("aio-server")
CLIENT_CERT = cached_cert("aio-client")
SERVER_FP = str(SERVER_CERT.fingerprint())
CLIENT_FP = str(CLIENT_CERT.fingerprint())
WRONG_FP = str(cached_cert("aio-stranger").fingerprint())


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run a coroutine in a fresh loop, failing (not hanging) after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def config(cert: Certificate, **kwargs: Any) -> DtlsConfiguration:
    kwargs.setdefault("initial_retransmit_timeout", 0.1)
    kwargs.setdefault("max_retransmit_timeout", 0.4)
    return DtlsConfiguration(certificate=cert, **kwargs)


async def echo(stream: aio.DtlsStream) -> None:
    async for data in stream:
        await stream.send(data)


async def start_server(handler: Handler = echo, **kwargs: Any) -> aio.DtlsServer:
    kwargs.setdefault("remote_fingerprints", [CLIENT_FP])
    cfg = kwargs.pop("configuration", None) or config(SERVER_CERT)
    return await aio.serve(handler, LOCAL, 0, cfg, **kwargs)


CLIENT_CONFIG: list[DtlsConfiguration] = []


def client_config() -> DtlsConfiguration:
    # One SSL_CTX for every client of a test run: building one costs milliseconds.
    if not CLIENT_CONFIG:
        CLIENT_CONFIG.append(config(CLIENT_CERT))
    return CLIENT_CONFIG[0]


async def connect(server: aio.DtlsServer, **kwargs: Any) -> aio.DtlsStream:
    kwargs.setdefault("remote_fingerprints", [SERVER_FP])
    cfg = kwargs.pop("configuration", None) or client_config()
    return await aio.connect(*server.address, cfg, **kwargs)


def local_address(stream: aio.DtlsStream) -> tuple[Any, ...]:
    """The local address of a connected client stream (known once its socket is bound)."""
    address = stream.local_address
    assert address is not None
    return address


def single_endpoint(server: aio.DtlsServer) -> aio.DtlsEndpoint:
    """The endpoint of a server with one worker (``server.endpoint`` is None with more)."""
    endpoint = server.endpoint
    assert endpoint is not None
    return endpoint


async def roundtrip(stream: aio.DtlsStream, data: bytes, *, tries: int = 5) -> None:
    """Send and wait for the echo, resending on loss (UDP may drop under a flood)."""
    for _ in range(tries):
        await stream.send(data)
        try:
            while True:
                got = await asyncio.wait_for(stream.recv(), 0.5)
                if got == data:
                    return
        except asyncio.TimeoutError:
            continue
    raise AssertionError(f"no echo of {data!r} after {tries} tries")


async def eventually(
    predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class RawPeer(asyncio.DatagramProtocol):
    """A bare UDP socket: sends what it is told, queues what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.errors: list[Exception] = []

    def sockname(self) -> tuple[str, int]:
        """The local (host, port) of the socket."""
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport (asyncio's own class does not derive from the ABC).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    async def recv(self, timeout: float = 2.0) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def raw_peer(address: tuple[str, int] | None, **kwargs: Any) -> RawPeer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(RawPeer, remote_addr=address, **kwargs)
    return peer


def first_client_hello() -> bytes:
    conn = DtlsConnection(client_config(), role=Role.CLIENT, remote_fingerprints=[SERVER_FP])
    conn.connect(time.monotonic())
    (hello,) = conn.datagrams_to_send(time.monotonic())
    return hello


async def hello_with_cookie(server: aio.DtlsServer) -> bytes:
    """Do the cookie exchange from a throwaway socket; return the hello carrying the cookie."""
    peer = await raw_peer(server.address)
    now = time.monotonic()
    conn = DtlsConnection(client_config(), role=Role.CLIENT, remote_fingerprints=[SERVER_FP])
    conn.connect(now)
    for d in conn.datagrams_to_send(now):
        peer.send(d)
    conn.receive_datagram(await peer.recv(), now)
    (hello,) = conn.datagrams_to_send(now)
    peer.close()
    return hello


async def crashable_client(
    server: aio.DtlsServer,
) -> tuple[aio.DtlsStream, asyncio.DatagramTransport]:
    """Connect a client whose socket the test owns: aborting it makes the client vanish
    without a close_notify (as a crashed client process does)."""
    loop = asyncio.get_running_loop()
    endpoint = aio.DtlsEndpoint(client_config())
    transport, _ = await loop.create_datagram_endpoint(lambda: endpoint, local_addr=(LOCAL, 0))
    stream = endpoint.connection_for(server.address, Role.CLIENT, [SERVER_FP])
    await asyncio.wait_for(stream.wait_handshake(), 5)
    return stream, transport


# --------------------------------------------------------------------------- basic use


def test_aio_echo_with_fingerprints_and_mirrored_srtp_keys() -> None:
    server_keys = {}

    async def handler(stream: aio.DtlsStream) -> None:
        info = await stream.wait_handshake()
        assert info.peer_fingerprint is not None
        server_keys[stream.peer_address] = stream.srtp_keys()
        await echo(stream)

    async def main() -> None:
        async with await start_server(handler) as server:
            async with await connect(server) as stream:
                info = stream.handshake_info
                assert info is not None and info.protocol_version == "DTLSv1.2"
                assert str(info.peer_fingerprint) == SERVER_FP
                assert stream.role is Role.CLIENT
                for i in range(5):
                    payload = b"x" * (i * 100 + 1)
                    await stream.send(payload)
                    assert await stream.recv() == payload
                keys = stream.srtp_keys()
                assert keys.mirrors(server_keys[local_address(stream)])
                label = "EXPERIMENTAL-aio"
                assert len(stream.export_keying_material(label, 32)) == 32
                stats = server.stats
                assert stats.handshakes_completed == 1 and stats.active_peers == 1
                assert stats.hello_verify_sent == 1  # the cookie exchange is on by default
                assert stats.handshakes_in_progress == 0
            await eventually(lambda: server.stats.active_peers == 0, what="server sees close")

    run(main())


def test_aio_client_rejects_wrong_server_fingerprint_and_server_fails_too() -> None:
    called = []

    async def handler(stream: aio.DtlsStream) -> None:
        called.append(stream)

    async def main() -> None:
        async with await start_server(handler) as server:
            with pytest.raises(FingerprintMismatchError) as exc_info:
                await connect(server, remote_fingerprints=[WRONG_FP])
            assert exc_info.value.expected  # says what was expected...
            assert exc_info.value.actual  # ...and what came
            await eventually(lambda: server.stats.handshakes_failed == 1, what="server failure")
            stats = server.stats
            assert stats.active_peers == 0 and stats.handshakes_in_progress == 0
            assert stats.handshakes_completed == 0
        assert called == []

    run(main())


def test_aio_server_rejects_wrong_client_fingerprint_and_client_fails_too() -> None:
    called = []

    async def handler(stream: aio.DtlsStream) -> None:
        called.append(stream)

    async def main() -> None:
        async with await start_server(handler, remote_fingerprints=[WRONG_FP]) as server:
            with pytest.raises(HandshakeError) as exc_info:
                await connect(server)
            assert exc_info.value.alert is not None  # the server's fatal alert
            stats = server.stats
            assert stats.handshakes_failed == 1 and stats.active_peers == 0
        assert called == []

    run(main())


def test_aio_fingerprints_per_peer_with_a_callable() -> None:
    asked: list[tuple[Any, ...]] = []

    def fingerprints_for(addr: tuple[Any, ...]) -> list[Fingerprint | str] | None:
        asked.append(addr)
        return [CLIENT_FP] if len(asked) == 1 else None

    async def main() -> None:
        async with await start_server(remote_fingerprints=fingerprints_for) as server:
            async with await connect(server) as stream:
                await roundtrip(stream, b"ok")
            with pytest.raises(HandshakeTimeoutError):
                await connect(server, handshake_timeout=0.3)  # None: unknown peer, dropped
            assert server.stats.peers_rejected_unknown >= 1
            assert server.stats.handshakes_completed == 1

    run(main())


def test_aio_peer_close_notify_ends_recv_cleanly_both_ways() -> None:
    outcomes = []

    async def handler(stream: aio.DtlsStream) -> None:
        try:
            await stream.recv()
        except ConnectionClosedError as exc:
            outcomes.append(exc.__cause__)
        await eventually(lambda: stream.closed)
        with pytest.raises(ConnectionClosedError):
            await stream.send(b"late")

    async def closing_handler(stream: aio.DtlsStream) -> None:
        await stream.send(b"bye")
        await stream.aclose()

    async def main() -> None:
        async with await start_server(handler) as server:
            stream = await connect(server)
            await stream.aclose()
            await eventually(lambda: len(outcomes) == 1, what="handler end")
            assert outcomes == [None]  # clean: close_notify, no error
            with pytest.raises(ConnectionClosedError) as exc_info:
                await stream.recv()
            assert exc_info.value.__cause__ is None
            await stream.aclose()  # idempotent
        async with await start_server(closing_handler) as server:
            stream = await connect(server)
            received = [data async for data in stream]  # ends quietly on close_notify
            assert received == [b"bye"]
            assert stream.closed and stream.error is None
            with pytest.raises(ConnectionClosedError) as exc_info:
                await stream.recv()
            assert exc_info.value.__cause__ is None

    run(main())


def test_aio_send_errors_and_payload_limits() -> None:
    async def main() -> None:
        async with await start_server() as server:
            async with await connect(server) as stream:
                limit = stream.max_payload_size
                assert 1000 < limit < 1200
                await stream.send(b"a" * limit)
                assert await stream.recv() == b"a" * limit
                with pytest.raises(PayloadSizeError):
                    await stream.send(b"a" * (limit + 1))
                with pytest.raises(PayloadSizeError):
                    await stream.send(b"")
                waiting = asyncio.ensure_future(stream.recv())
                await asyncio.sleep(0)
                with pytest.raises(InvalidStateError):
                    await stream.recv()  # one reader at a time
                waiting.cancel()
            with pytest.raises(ConnectionClosedError):
                await stream.send(b"after close")
            with pytest.raises(InvalidStateError):
                stream.export_keying_material("EXPERIMENTAL-x", 16)
            assert stream.srtp_keys() is not None  # what was negotiated stays readable

    run(main())


def test_aio_bad_arguments_are_configuration_errors() -> None:
    async def main() -> None:
        with pytest.raises(ConfigurationError):
            await aio.serve(echo, LOCAL, 0, config(SERVER_CERT))  # no fingerprints
        with pytest.raises(ConfigurationError):
            await aio.connect(LOCAL, 9, client_config(), remote_fingerprints=None)
        with pytest.raises(ConfigurationError):
            await start_server(workers=2)  # workers need reuse_port
        with pytest.raises(ConfigurationError):
            await start_server(max_handshakes=0)
        with pytest.raises(ConfigurationError):
            await start_server(idle_timeout=-1)

    run(main())


# ------------------------------------------------------------------ clients that fail


def test_aio_connect_to_silent_peer_times_out() -> None:
    async def main() -> None:
        silent = await raw_peer(None, local_addr=(LOCAL, 0))
        host, port = silent.sockname()
        started = time.monotonic()
        with pytest.raises(HandshakeTimeoutError):
            await aio.connect(
                host, port, client_config(), remote_fingerprints=[SERVER_FP], handshake_timeout=0.4
            )
        assert 0.35 < time.monotonic() - started < 2.0
        assert silent.queue.qsize() >= 2  # the ClientHello was retransmitted
        silent.close()

    run(main())


def test_aio_connect_to_closed_port_times_out_with_icmp_cause() -> None:
    async def main() -> None:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((LOCAL, 0))
        port = probe.getsockname()[1]
        probe.close()  # nobody listens there now: the kernel answers ICMP port unreachable
        with pytest.raises(HandshakeTimeoutError) as exc_info:
            await aio.connect(
                LOCAL, port, client_config(), remote_fingerprints=[SERVER_FP], handshake_timeout=0.4
            )
        assert isinstance(exc_info.value.__cause__, ConnectionRefusedError)

    run(main())


def test_aio_connect_cancelled_closes_its_socket() -> None:
    async def main() -> None:
        silent = await raw_peer(None, local_addr=(LOCAL, 0))
        host, port = silent.sockname()
        task = asyncio.ensure_future(
            aio.connect(host, port, client_config(), remote_fingerprints=[SERVER_FP])
        )
        await silent.recv()  # the ClientHello arrived
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.3)
        while not silent.queue.empty():
            silent.queue.get_nowait()
        await asyncio.sleep(0.4)
        assert silent.queue.empty()  # no more retransmissions
        silent.close()

    run(main())


# ------------------------------------------------------------------- many peers, load


def test_aio_200_concurrent_clients_each_verify_srtp_keys() -> None:
    n = 200
    server_keys = {}

    async def handler(stream: aio.DtlsStream) -> None:
        server_keys[stream.peer_address] = stream.srtp_keys()
        await echo(stream)

    async def one(server: aio.DtlsServer, i: int) -> aio.DtlsStream:
        stream = await connect(server)
        payload = f"client {i}".encode()
        await roundtrip(stream, payload)
        return stream

    async def main() -> None:
        # Patient timers: 200 hellos at once keep the server busy for a while.
        cfg = config(SERVER_CERT, initial_retransmit_timeout=0.5, max_retransmit_timeout=2.0)
        async with await start_server(handler, configuration=cfg) as server:
            started = time.monotonic()
            streams = await asyncio.gather(*(one(server, i) for i in range(n)))
            elapsed = time.monotonic() - started
            stats = server.stats
            assert stats.handshakes_completed == n and stats.active_peers == n
            assert stats.handshakes_failed == 0 and stats.handshakes_in_progress == 0
            for stream in streams:
                assert stream.srtp_keys().mirrors(server_keys[local_address(stream)])
            await asyncio.gather(*(s.aclose() for s in streams))
            await eventually(lambda: server.stats.active_peers == 0, what="all closed")
            print(f"{n} clients: handshake + echo in {elapsed:.2f} s")

    run(main(), timeout=30)


def test_aio_spoofed_hello_flood_creates_no_state_while_peers_keep_talking() -> None:
    n_peers = 10
    n_sockets = 50
    per_socket = 60  # 3,000 spoofed ClientHellos from 50 source ports

    async def main() -> None:
        async with await start_server() as server:
            peers = await asyncio.gather(*(connect(server) for _ in range(n_peers)))
            before = server.stats
            hello = first_client_hello()
            replayed = await hello_with_cookie(server)
            floods = [await raw_peer(server.address) for _ in range(n_sockets)]
            stop = asyncio.Event()

            async def flood() -> None:
                for _ in range(per_socket):
                    for f in floods:
                        f.send(hello)
                    await asyncio.sleep(0.002)
                # Replayed cookies too: valid for another address only, so rejected.
                for f in floods[:10]:
                    f.send(replayed)
                stop.set()

            async def chatter(stream: aio.DtlsStream, i: int) -> int:
                count = 0
                while not stop.is_set() or count < 5:
                    await roundtrip(stream, f"{i}:{count}".encode())
                    count += 1
                return count

            flooding = asyncio.ensure_future(flood())
            counts = await asyncio.gather(*(chatter(s, i) for i, s in enumerate(peers)))
            await flooding
            await asyncio.sleep(0.1)
            stats = server.stats
            sent = n_sockets * per_socket
            assert stats.hello_verify_sent - before.hello_verify_sent > sent // 2
            assert stats.active_peers == n_peers  # no state for the flood...
            assert stats.handshakes_in_progress == 0
            assert len(single_endpoint(server).streams) == n_peers
            assert stats.handshakes_completed == n_peers  # ...and no damage to the peers
            assert stats.handshakes_failed == 0
            assert stats.cookies_rejected >= 5
            assert min(counts) >= 5
            for f in floods:
                f.close()
            await asyncio.gather(*(p.aclose() for p in peers))

    run(main(), timeout=30)


def test_aio_client_stopping_mid_handshake_is_reaped_by_the_deadline() -> None:
    async def main() -> None:
        async with await start_server(handshake_timeout=0.5) as server:
            peer = await raw_peer(server.address)
            now = time.monotonic()
            conn = DtlsConnection(
                client_config(), role=Role.CLIENT, remote_fingerprints=[SERVER_FP]
            )
            conn.connect(now)
            for d in conn.datagrams_to_send(now):
                peer.send(d)
            conn.receive_datagram(await peer.recv(), now)  # HelloVerifyRequest
            for d in conn.datagrams_to_send(now):
                peer.send(d)  # the hello with the cookie: now the server has state
            await peer.recv()  # the server's first flight; we answer nothing more
            await eventually(lambda: server.stats.handshakes_in_progress == 1)
            async with await connect(server) as other:  # others are served meanwhile
                await roundtrip(other, b"still fine")
                await eventually(
                    lambda: server.stats.handshakes_in_progress == 0, timeout=2, what="reaping"
                )
                stats = server.stats
                assert stats.handshakes_timed_out == 1 and stats.handshakes_failed == 1
                assert peer.queue.qsize() >= 1  # the server retransmitted before giving up
                await roundtrip(other, b"still fine after")
            peer.close()

    run(main())


@pytest.mark.parametrize("late_first", [False, True], ids=["in-order", "late-fragment-first"])
def test_aio_fragmented_client_hello_with_cookie_over_udp(late_first: bool) -> None:
    """A ClientHello in three fragments (as browsers' 1.4 KB post-quantum hellos arrive)."""
    from test_framing import HS_HDR, _split_hello, parse_records

    async def main() -> None:
        async with await start_server() as server:
            peer = await raw_peer(server.address)
            now = time.monotonic()
            conn = DtlsConnection(
                client_config(), role=Role.CLIENT, remote_fingerprints=[SERVER_FP]
            )
            conn.connect(now)
            for d in conn.datagrams_to_send(now):
                peer.send(d)
            conn.receive_datagram(await peer.recv(), now)  # HelloVerifyRequest
            (hello,) = conn.datagrams_to_send(now)
            (rec,) = parse_records(hello)
            body = rec.body[HS_HDR:]
            # The first fragment must hold the cookie (version, random, session_id, cookie).
            cookie_end = 2 + 32 + 1 + body[34] + 1 + body[35 + body[34]]
            cuts = [max(len(body) // 3, cookie_end), 2 * len(body) // 3]
            frags = _split_hello(rec, body, cuts, [rec.seq, rec.seq + 30, rec.seq + 31])
            if late_first:
                peer.send(frags[2])  # no cookie in it, unknown address: dropped, no state
                await asyncio.sleep(0.05)
                assert server.stats.handshakes_in_progress == 0
                assert server.stats.datagrams_dropped == 1
            for f in frags:
                peer.send(f)
            while conn.handshake_info is None:  # drive the rest of the handshake by hand
                conn.receive_datagram(await peer.recv(), time.monotonic())
                for d in conn.datagrams_to_send(time.monotonic()):
                    peer.send(d)
            await eventually(lambda: server.stats.handshakes_completed == 1)
            assert server.stats.hello_verify_sent == 1
            conn.send(b"fragmented hello worked", time.monotonic())
            for d in conn.datagrams_to_send(time.monotonic()):
                peer.send(d)
            reply = await peer.recv()
            conn.receive_datagram(reply, time.monotonic())
            received = [e.data for e in iter(conn.next_event, None) if hasattr(e, "data")]
            assert received == [b"fragmented hello worked"]
            peer.close()

    run(main())


def test_aio_garbage_datagrams_do_not_disturb_others() -> None:
    async def main() -> None:
        async with await start_server() as server, await connect(server) as stream:
            junk = await raw_peer(server.address)
            hello = first_client_hello()
            samples = [
                b"",
                b"\x00",
                os.urandom(1),
                os.urandom(13),
                os.urandom(1500),
                b"\x16\xfe\xfd" + os.urandom(200),  # looks like a DTLS handshake
                b"\x17\xfe\xfd" + os.urandom(100),  # looks like application data
                hello[:30],  # truncated ClientHello
                hello[:-1] + b"\x00",
                b"\x80" + os.urandom(50),  # RTP: no callback on a server
            ]
            for _ in range(20):
                for s in samples:
                    junk.send(s)
                await roundtrip(stream, b"ping")
            await asyncio.sleep(0.05)
            stats = server.stats
            assert stats.active_peers == 1 and stats.handshakes_in_progress == 0
            assert stats.datagrams_dropped >= 20 * 5
            await roundtrip(stream, b"still fine")
            junk.close()

    run(main())


def test_aio_network_error_on_the_server_socket_harms_nobody() -> None:
    async def main() -> None:
        async with await start_server() as server, await connect(server) as stream:
            for _ in range(3):
                single_endpoint(server).error_received(ConnectionRefusedError(111, "refused"))
            await roundtrip(stream, b"fine")
            assert server.stats.network_errors == 3

    run(main())


def test_aio_handler_exception_closes_only_that_peer() -> None:
    async def handler(stream: aio.DtlsStream) -> None:
        data = await stream.recv()
        if data == b"boom":
            raise RuntimeError("handler bug")
        await stream.send(data)
        await echo(stream)

    async def main() -> None:
        async with await start_server(handler) as server:
            good = await connect(server)
            bad = await connect(server)
            await roundtrip(good, b"hello")
            await bad.send(b"boom")
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(bad.recv(), 2)  # the server closed it
            await roundtrip(good, b"still here")
            assert server.stats.handler_errors == 1
            await good.aclose()

    run(main())


def test_aio_restarted_client_replaces_its_association() -> None:
    """RFC 6347 §4.2.8: a new, cookie-verified hello from a live peer's address."""
    ends = []

    async def handler(stream: aio.DtlsStream) -> None:
        try:
            await echo(stream)
        except ConnectionClosedError as exc:
            ends.append(exc.__cause__)

    async def main() -> None:
        async with await start_server(handler) as server:
            first, transport = await crashable_client(server)
            await roundtrip(first, b"one")
            local = first.local_address
            transport.abort()  # the client process "restarts" on the same port
            await asyncio.sleep(0.05)
            second = await connect(server, local_addr=local)
            await roundtrip(second, b"two")
            stats = server.stats
            assert stats.peers_restarted == 1 and stats.active_peers == 1
            await eventually(lambda: len(ends) == 1)
            assert isinstance(ends[0], ConnectionClosedError)
            await second.aclose()

    run(main())


# ------------------------------------------------------------------------------ limits


def test_aio_max_handshakes_drops_new_hellos_while_existing_peers_continue() -> None:
    async def main() -> None:
        async with await start_server(
            cookie_exchange=False, max_handshakes=5, handshake_timeout=1.0
        ) as server:
            established = await asyncio.gather(*(connect(server) for _ in range(3)))
            hello = first_client_hello()
            stalled = [await raw_peer(server.address) for _ in range(8)]
            for s in stalled:
                s.send(hello)  # without cookies each hello creates a connection...
            await eventually(lambda: server.stats.handshakes_in_progress == 5)
            stats = server.stats
            assert stats.peers_rejected_limit == 3  # ...up to the limit
            with pytest.raises(HandshakeTimeoutError):
                await connect(server, handshake_timeout=0.3)  # new work is dropped
            for i, stream in enumerate(established):  # old work is not
                await roundtrip(stream, f"established {i}".encode())
            # The stalled ones hit their deadline; then new peers are welcome again.
            await eventually(lambda: server.stats.handshakes_in_progress == 0, timeout=3)
            async with await connect(server) as late:
                await roundtrip(late, b"late")
            assert server.stats.handshakes_timed_out == 5
            for s in stalled:
                s.close()
            await asyncio.gather(*(s.aclose() for s in established))

    run(main())


def test_aio_max_peers_drops_new_peers_never_old_ones() -> None:
    async def main() -> None:
        async with await start_server(max_peers=2) as server:
            a = await connect(server)
            b = await connect(server)
            with pytest.raises(HandshakeTimeoutError):
                await connect(server, handshake_timeout=0.3)
            assert server.stats.peers_rejected_limit >= 1
            await roundtrip(a, b"a")
            await roundtrip(b, b"b")
            await a.aclose()
            await eventually(lambda: server.stats.active_peers == 1)
            async with await connect(server) as c:  # a slot is free again
                await roundtrip(c, b"c")
            await b.aclose()

    run(main())


def test_aio_idle_timeout_reaps_idle_peers_only() -> None:
    causes = []

    async def handler(stream: aio.DtlsStream) -> None:
        try:
            await echo(stream)
        except ConnectionClosedError as exc:
            causes.append(exc.__cause__)

    async def main() -> None:
        async with await start_server(handler, idle_timeout=0.5) as server:
            idle = await connect(server)
            busy = await connect(server)
            started = time.monotonic()
            while time.monotonic() - started < 1.5:
                await roundtrip(busy, b"keepalive")
                await asyncio.sleep(0.1)
            assert idle.closed  # the server's close_notify ended it cleanly
            with pytest.raises(ConnectionClosedError) as exc_info:
                await idle.recv()
            assert exc_info.value.__cause__ is None
            assert len(causes) == 1 and isinstance(causes[0], IdleTimeoutError)
            stats = server.stats
            assert stats.peers_reaped_idle == 1 and stats.active_peers == 1
            await busy.aclose()

    run(main())
