"""Two aiortc peer connections in one process, over loopback, optionally through a lossy relay.

Shared by tests/test_aiortc.py and benchmarks/aiortc_bench.py. ICE gathers only 127.0.0.1 and no
STUN server is asked, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)

import dtls_ossl.aiortc


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Make aioice gather 127.0.0.1 only (it skips loopback by default)."""
    original = aioice.ice.get_host_addresses

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"]

    aioice.ice.get_host_addresses = loopback
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def make_pc(ours: bool, **options: Any) -> RTCPeerConnection:
    """Create a peer connection on dtls_ossl (``ours``, with install options) or stock aiortc."""
    config = RTCConfiguration(iceServers=[])
    if ours:
        with dtls_ossl.aiortc.installed(**options):
            return RTCPeerConnection(config)
    was = dtls_ossl.aiortc.is_installed()
    assert not was, "make_pc(ours=False) while installed would make a dtls_ossl pc"
    return RTCPeerConnection(config)


def set_offer_setup(sdp: str, setup: str) -> str:
    """Rewrite every ``a=setup`` of an SDP (to choose the DTLS roles)."""
    return re.sub(r"a=setup:\w+", f"a=setup:{setup}", sdp)


def corrupt_fingerprint(sdp: str) -> str:
    """Change one hex digit of every ``a=fingerprint`` (a man-in-the-middle's certificate)."""

    def flip(m: re.Match[str]) -> str:
        value = m.group(2)
        first = "0" if value[0] != "0" else "1"
        return f"{m.group(1)}{first}{value[1:]}"

    return re.sub(r"(a=fingerprint:\S+ )(\S+)", flip, sdp)


class Relay:
    """A UDP relay standing between two ICE agents, losing DTLS handshake datagrams.

    Only datagrams whose first byte is 20..22 (ChangeCipherSpec, alert, handshake) are
    impaired, so that ICE (STUN) and the established data are not: what is measured is the DTLS
    handshake's recovery. ``loss`` applies each way; with ``reorder`` a kept handshake datagram
    is delayed by 20 ms (so it arrives after later ones).
    """

    def __init__(self, loss: float, seed: int, reorder: float = 0.0) -> None:
        self.loss = loss
        self.reorder = reorder
        self.random = random.Random(seed)
        self.dropped = 0
        self.forwarded = 0
        # side 0 faces the offerer's peer (pc2 sends to it), side 1 the answerer's peer.
        self._transports: list[asyncio.DatagramTransport] = []
        self._targets: list[tuple[str, int] | None] = [None, None]
        self.ports: list[int] = []

    async def start(self) -> None:
        """Bind the two relay sockets on 127.0.0.1."""
        loop = asyncio.get_running_loop()
        for side in (0, 1):
            transport, _ = await loop.create_datagram_endpoint(
                lambda side=side: _RelaySide(self, side),  # type: ignore[misc]
                local_addr=("127.0.0.1", 0),
            )
            self._transports.append(transport)
            self.ports.append(transport.get_extra_info("sockname")[1])

    def rewrite(self, sdp: str, side: int) -> str:
        """Point the candidates of ``sdp`` at relay side ``side``, remembering the real ones."""

        def sub(m: re.Match[str]) -> str:
            self._targets[side] = (m.group(2), int(m.group(3)))
            return f"{m.group(1)}127.0.0.1 {self.ports[side]}{m.group(4)}"

        return re.sub(r"(a=candidate:\S+ \d+ udp \d+ )(\S+) (\d+)( typ host)", sub, sdp)

    def forward(self, data: bytes, side: int) -> None:
        # Side s stands for the peer whose candidates were rewritten to it: what arrives there
        # goes to that peer, sent from the other side (the sender's stand-in).
        other = 1 - side
        target = self._targets[side]
        if target is None:
            return
        if 20 <= data[0] <= 22:
            if self.random.random() < self.loss:
                self.dropped += 1
                return
            if self.reorder and self.random.random() < self.reorder:
                asyncio.get_running_loop().call_later(
                    0.02, self._transports[other].sendto, data, target
                )
                self.forwarded += 1
                return
        self.forwarded += 1
        self._transports[other].sendto(data, target)

    def close(self) -> None:
        """Close both relay sockets."""
        for t in self._transports:
            t.close()


class _RelaySide(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, side: int) -> None:
        self.relay = relay
        self.side = side

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.forward(data, self.side)


async def negotiate(
    pc1: RTCPeerConnection,
    pc2: RTCPeerConnection,
    *,
    offer_filter: Callable[[str], str] | None = None,
    answer_filter: Callable[[str], str] | None = None,
    relay: Relay | None = None,
    before_answer: Callable[[], object] | None = None,
) -> None:
    """Run the offer/answer exchange (pc1 offers), rewriting the SDP on its way if asked."""
    await pc1.setLocalDescription(await pc1.createOffer())
    offer = pc1.localDescription.sdp
    if offer_filter is not None:
        offer = offer_filter(offer)
    if relay is not None:
        # pc2 reaches pc1 through side 1, whose forwards come from side 0 and vice versa.
        offer = relay.rewrite(offer, 1)
    await pc2.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    if before_answer is not None:
        before_answer()
    await pc2.setLocalDescription(await pc2.createAnswer())
    answer = pc2.localDescription.sdp
    if answer_filter is not None:
        answer = answer_filter(answer)
    if relay is not None:
        answer = relay.rewrite(answer, 0)
    await pc1.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


async def open_data_channel(
    pc1: RTCPeerConnection,
    pc2: RTCPeerConnection,
    *,
    offer_filter: Callable[[str], str] | None = None,
    answer_filter: Callable[[str], str] | None = None,
    relay: Relay | None = None,
) -> tuple[RTCDataChannel, RTCDataChannel]:
    """Negotiate with one data channel and return (pc1's, pc2's) once both are open."""
    loop = asyncio.get_running_loop()
    ch1 = pc1.createDataChannel("echo")
    opened1: asyncio.Future[None] = loop.create_future()
    got2: asyncio.Future[RTCDataChannel] = loop.create_future()

    # Registered by call, not decorator: aiortc's decorator is untyped where aiortc is absent.
    def _on_open() -> None:
        if not opened1.done():
            opened1.set_result(None)

    def _on_channel(channel: RTCDataChannel) -> None:
        if not got2.done():
            got2.set_result(channel)

    ch1.on("open", _on_open)
    pc2.on("datachannel", _on_channel)

    await negotiate(pc1, pc2, offer_filter=offer_filter, answer_filter=answer_filter, relay=relay)
    await opened1
    ch2 = await got2
    return ch1, ch2


async def roundtrip(sender: RTCDataChannel, receiver: RTCDataChannel, message: str) -> str:
    """Send ``message`` on one end and return what the other end receives."""
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_message(msg: str) -> None:
        if not got.done():
            got.set_result(msg)

    receiver.on("message", on_message)
    sender.send(message)
    try:
        return await got
    finally:
        receiver.remove_listener("message", on_message)


async def close_all(*pcs: RTCPeerConnection) -> None:
    """Close every peer connection."""
    for pc in pcs:
        await pc.close()
