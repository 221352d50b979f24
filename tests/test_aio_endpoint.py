"""DtlsEndpoint: RFC 7983 demultiplexing on one socket (WebRTC), the single timer, streams.

Real UDP sockets on 127.0.0.1, except where a test needs to order events exactly: there two
endpoints are wired back to back in memory (``sendto`` delivers through ``call_soon``).
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable
from typing import Any

import pytest
from test_aio import (
    CLIENT_CERT,
    CLIENT_FP,
    LOCAL,
    SERVER_CERT,
    SERVER_FP,
    config,
    eventually,
    roundtrip,
    run,
    start_server,
)

from dtls_ossl import Certificate, ConnectionClosedError, InvalidStateError, Role, aio

STUN_BINDING = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, os.urandom(12))


def rtp_packet(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 160, 0x1234) + os.urandom(40)


class Recorder:
    def __init__(self) -> None:
        self.stun: list[bytes] = []
        self.rtp: list[bytes] = []
        self.other: list[bytes] = []

    def callbacks(self) -> dict[str, Callable[[bytes, Any], None]]:
        return {
            "on_stun": lambda d, a: self.stun.append(d),
            "on_rtp": lambda d, a: self.rtp.append(d),
            "on_other": lambda d, a: self.other.append(d),
        }


async def udp_endpoint(
    cert: Certificate, **kwargs: Any
) -> tuple[aio.DtlsEndpoint, asyncio.DatagramTransport]:
    loop = asyncio.get_running_loop()
    endpoint = aio.DtlsEndpoint(config(cert), **kwargs)
    transport, _ = await loop.create_datagram_endpoint(lambda: endpoint, local_addr=(LOCAL, 0))
    return endpoint, transport


def wakeups(endpoint: aio.DtlsEndpoint) -> int:
    """The endpoint's timer wake-ups so far (a public counter)."""
    return endpoint.stats.timer_wakeups


def test_aio_endpoint_demuxes_stun_rtp_and_dtls_on_one_socket() -> None:
    async def main() -> None:
        seen_a, seen_b = Recorder(), Recorder()
        a, ta = await udp_endpoint(CLIENT_CERT, **seen_a.callbacks())
        b, tb = await udp_endpoint(SERVER_CERT, **seen_b.callbacks())
        addr_a = ta.get_extra_info("sockname")
        addr_b = tb.get_extra_info("sockname")
        # ICE found the pair: each side knows the other's address and fingerprint.
        server = b.connection_for(addr_a, Role.SERVER, [CLIENT_FP])
        # STUN and RTP before, during and after the handshake, from the same 5-tuple.
        for i in range(3):
            ta.sendto(STUN_BINDING, addr_b)
            tb.sendto(STUN_BINDING, addr_a)
            ta.sendto(rtp_packet(i), addr_b)
        client = a.connection_for(addr_b, Role.CLIENT, [SERVER_FP])
        for i in range(3, 6):
            ta.sendto(rtp_packet(i), addr_b)
            tb.sendto(rtp_packet(i), addr_a)
            ta.sendto(b"\x40\x00\x00\x04abcd", addr_b)  # TURN ChannelData
        info = await client.wait_handshake()
        await server.wait_handshake()
        assert info.srtp_profile is not None
        assert client.srtp_keys().mirrors(server.srtp_keys())
        ta.sendto(STUN_BINDING, addr_b)
        await client.send(b"over dtls")
        assert await server.recv() == b"over dtls"
        await server.send(b"and back")
        assert await client.recv() == b"and back"
        await eventually(lambda: len(seen_b.stun) == 4)
        assert seen_b.stun == [STUN_BINDING] * 4 and seen_a.stun == [STUN_BINDING] * 3
        assert len(seen_b.rtp) == 6 and len(seen_a.rtp) == 3
        assert [d[0] for d in seen_b.rtp] == [0x80] * 6
        assert seen_b.other == [b"\x40\x00\x00\x04abcd"] * 3 and seen_a.other == []
        assert a.stats.datagrams_dropped == 0 and b.stats.datagrams_dropped == 0
        assert b.get_stream(addr_a) is server
        assert b.connection_for(addr_a, Role.SERVER) is server  # get-or-create
        with pytest.raises(InvalidStateError):
            b.connection_for(addr_a, Role.CLIENT)
        await client.aclose()
        await eventually(lambda: server.closed)
        await a.close()
        await b.close()
        ta.close()
        tb.close()

    run(main())


def test_aio_endpoint_with_caller_owned_transport_and_late_fingerprints() -> None:
    """The SFU keeps its own protocol; the answer's fingerprint arrives after the hello."""

    class SfuProtocol(asyncio.DatagramProtocol):
        endpoint: aio.DtlsEndpoint

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.endpoint.datagram_received(data, addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rtp_seen = []
        transport, proto = await loop.create_datagram_endpoint(SfuProtocol, local_addr=(LOCAL, 0))
        proto.endpoint = aio.DtlsEndpoint(
            config(SERVER_CERT),
            sendto=transport.sendto,
            on_rtp=lambda d, a: rtp_seen.append((d, a)),
        )
        sfu_addr = transport.get_extra_info("sockname")
        # The browser side: a client endpoint on its own socket.
        client_ep, client_t = await udp_endpoint(CLIENT_CERT)
        browser_addr = client_t.get_extra_info("sockname")
        stream = proto.endpoint.connection_for(browser_addr, Role.SERVER, None)
        client = client_ep.connection_for(sfu_addr, Role.CLIENT, [SERVER_FP])
        await eventually(lambda: stream.stats.datagrams_held > 0, what="held flight")
        assert stream.handshake_info is None
        stream.set_remote_fingerprints([CLIENT_FP])  # the SDP answer arrives
        await asyncio.wait_for(stream.wait_handshake(), 3)
        await client.wait_handshake()
        await roundtrip_pair(client, stream, b"data channel bytes")
        client_t.sendto(rtp_packet(7), sfu_addr)
        await eventually(lambda: len(rtp_seen) == 1)
        assert rtp_seen[0][1] == browser_addr
        await client_ep.close()
        client_t.close()
        await proto.endpoint.close()
        transport.close()

    run(main())


async def roundtrip_pair(a: aio.DtlsStream, b: aio.DtlsStream, data: bytes) -> None:
    await a.send(data)
    assert await asyncio.wait_for(b.recv(), 2) == data
    await b.send(data[::-1])
    assert await asyncio.wait_for(a.recv(), 2) == data[::-1]


def test_aio_endpoint_drops_dtls_from_strangers_without_a_handler() -> None:
    async def main() -> None:
        ep, t = await udp_endpoint(SERVER_CERT)
        stranger, st = await udp_endpoint(CLIENT_CERT)
        stream = stranger.connection_for(t.get_extra_info("sockname"), Role.CLIENT, [SERVER_FP])
        await eventually(lambda: ep.stats.datagrams_dropped >= 2, what="hello retransmitted")
        assert ep.streams == [] and ep.stats.handshakes_in_progress == 0
        stream.close()
        for e in (ep, stranger):
            await e.close()
        t.close()
        st.close()

    run(main())


def test_aio_endpoint_accepts_with_a_handler_and_no_cookies() -> None:
    """A WebRTC-style endpoint may accept unknown peers too (cookie exchange optional)."""

    async def main() -> None:
        seen = []

        async def handler(stream: aio.DtlsStream) -> None:
            seen.append(stream)
            await stream.send(b"welcome")

        ep, t = await udp_endpoint(SERVER_CERT, handler=handler, remote_fingerprints=[CLIENT_FP])
        client_ep, ct = await udp_endpoint(CLIENT_CERT)
        client = client_ep.connection_for(t.get_extra_info("sockname"), Role.CLIENT, [SERVER_FP])
        assert await asyncio.wait_for(client.recv(), 3) == b"welcome"
        assert ep.stats.hello_verify_sent == 0 and len(seen) == 1
        assert seen[0].peer_address == ct.get_extra_info("sockname")
        await client_ep.close()
        await eventually(lambda: seen[0].closed)
        await ep.close()
        t.close()
        ct.close()

    run(main())


# ---------------------------------------------------------------------------- timers


def test_aio_established_peers_cost_no_timer_wakeups() -> None:
    async def main() -> None:
        async with await start_server(idle_timeout=30.0) as server:
            ep = server.endpoint
            assert ep is not None
            start = wakeups(ep)
            from test_aio import connect

            streams = await asyncio.gather(*(connect(server) for _ in range(50)))
            for s in streams:
                await roundtrip(s, b"x")
            await asyncio.sleep(0.5)  # handshake-time entries expire (at most a few wake-ups)
            settled = wakeups(ep)
            await asyncio.sleep(1.0)
            assert wakeups(ep) == settled  # 50 established, idle peers: no wake-up at all
            # One timer for the endpoint, armed at the earliest idle deadline (~30 s away).
            next_wakeup = ep.next_wakeup
            assert next_wakeup is not None
            assert next_wakeup - asyncio.get_running_loop().time() > 25
            assert settled - start < 50  # fewer than one per peer, even with retransmissions
            await asyncio.gather(*(s.aclose() for s in streams))

    run(main())


def test_aio_idle_deadlines_of_many_peers_share_wakeups() -> None:
    async def main() -> None:
        async with await start_server(idle_timeout=0.5) as server:
            from test_aio import connect

            streams = await asyncio.gather(*(connect(server) for _ in range(40)))
            ep = server.endpoint
            assert ep is not None
            start = wakeups(ep)
            await eventually(lambda: server.stats.peers_reaped_idle == 40, timeout=3)
            # Idle deadlines fall on a quarter-second grid: 40 reaps in a few wake-ups.
            assert wakeups(ep) - start <= 3
            await eventually(lambda: all(s.closed for s in streams), what="close_notify")
            assert ep.next_wakeup is None  # nothing left to wake up for

    run(main())


# ---------------------------------------------------------------- in-memory pairs


def memory_pair(
    max_queued: int = 256,
) -> tuple[aio.DtlsStream, aio.DtlsStream, dict[str, aio.DtlsEndpoint]]:
    """Two endpoints wired back to back in memory; returns (client, server) streams.

    ``max_queued`` is the server endpoint's ``max_queued_datagrams``.
    """
    loop = asyncio.get_running_loop()
    addr_a, addr_b = ("198.51.100.1", 1000), ("198.51.100.2", 2000)
    eps: dict[str, aio.DtlsEndpoint] = {}
    eps["a"] = aio.DtlsEndpoint(
        config(CLIENT_CERT),
        sendto=lambda d, to: loop.call_soon(eps["b"].datagram_received, d, addr_a),
    )
    eps["b"] = aio.DtlsEndpoint(
        config(SERVER_CERT),
        sendto=lambda d, to: loop.call_soon(eps["a"].datagram_received, d, addr_b),
        max_queued_datagrams=max_queued,
    )
    server = eps["b"].connection_for(addr_a, Role.SERVER, [CLIENT_FP])
    client = eps["a"].connection_for(addr_b, Role.CLIENT, [SERVER_FP])
    return client, server, eps


def test_aio_recv_cancelled_after_delivery_loses_nothing() -> None:
    async def main() -> None:
        client, server, _ = memory_pair()
        await client.wait_handshake()
        await server.wait_handshake()
        waiting = asyncio.ensure_future(server.recv())
        await asyncio.sleep(0)
        client.send_nowait(b"precious")
        loop = asyncio.get_running_loop()
        loop.call_soon(waiting.cancel)  # runs right after the datagram is delivered
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await server.recv() == b"precious"

    run(main())


def test_aio_send_waits_for_the_handshake_and_queue_is_bounded() -> None:
    async def main() -> None:
        limit = 64
        client, server, eps = memory_pair(max_queued=limit)
        await client.send(b"first")  # waits for the handshake, then sends
        assert await server.recv() == b"first"
        for i in range(limit + 10):
            client.send_nowait(b"%d" % i)
        await asyncio.sleep(0.05)
        assert eps["b"].stats.datagrams_overflowed == 10
        got = [await server.recv() for _ in range(limit)]
        assert got[0] == b"0" and got[-1] == b"%d" % (limit - 1)

    run(main())


def test_aio_update_address_follows_the_peer() -> None:
    async def main() -> None:
        _client, server, eps = memory_pair()
        await server.wait_handshake()
        old = server.peer_address
        new = ("198.51.100.1", 1001)
        eps["b"].update_address(old, new)
        assert server.peer_address == new and eps["b"].get_stream(new) is server
        with pytest.raises(InvalidStateError):
            eps["b"].update_address(old, new)

    run(main())


def test_aio_wait_closed_and_close_from_the_endpoint() -> None:
    async def main() -> None:
        client, _server, eps = memory_pair()
        await client.wait_handshake()
        closing = asyncio.ensure_future(client.wait_closed())
        await eps["b"].close()
        await asyncio.wait_for(closing, 2)  # close_notify reached the client
        assert client.closed and client.error is None
        with pytest.raises(ConnectionClosedError):
            await client.recv()
        with pytest.raises(InvalidStateError):
            eps["b"].connection_for(("198.51.100.9", 9), Role.SERVER)

    run(main())
