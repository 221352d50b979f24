"""An SFU's single UDP socket carrying STUN, DTLS and RTP for two clients: ``aio.DtlsEndpoint``.

WebRTC puts ICE (STUN), DTLS and SRTP on one 5-tuple, and an SFU often serves every client on
one port. ``aio.DtlsEndpoint`` is the socket's ``asyncio`` protocol: it looks at each
datagram's first byte (RFC 7983) and hands DTLS to the connection of its source address, STUN
to ``on_stun`` and RTP/RTCP to ``on_rtp``.

The flow, per client (alice and bob, each on its own socket with its own endpoint):

1. Signalling (not shown) gave the SFU each client's ICE username fragment and certificate
   fingerprint, and the clients the SFU's fingerprint.
2. The client sends a STUN Binding request to the SFU. The SFU's ``on_stun`` maps the source
   address to the client by its USERNAME, creates a DTLS server connection for that address
   with that client's fingerprint (``connection_for``) and answers with a Binding success.
3. The client starts the DTLS handshake (``connection_for`` as client), sends one DTLS record
   and gets one back, then sends one RTP packet, which the SFU's ``on_rtp`` receives.

The STUN messages are bare (no MESSAGE-INTEGRITY or FINGERPRINT attribute as real ICE uses,
RFC 8445) and the RTP packet is not SRTP-protected: this shows the routing; see
``sansio_udp.py`` for keying SRTP from the handshake.

Run it::

    python examples/sfu_endpoint.py

Exit status 0 when both clients went through every step, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys

from dtls_ossl import Certificate, DtlsConfiguration, Fingerprint, Role, aio

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST, BINDING_SUCCESS = 0x0001, 0x0101
USERNAME, XOR_MAPPED_ADDRESS = 0x0006, 0x0020
TIMEOUT = 10.0
"Seconds any one step may take before the example gives up."


def stun_message(kind: int, transaction: bytes, attributes: list[tuple[int, bytes]]) -> bytes:
    """Encode a STUN message (RFC 8489 §5): header, then attributes padded to 4 bytes."""
    body = b"".join(
        struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4) for t, v in attributes
    )
    return struct.pack("!HHI", kind, len(body), MAGIC_COOKIE) + transaction + body


def stun_attributes(data: bytes) -> tuple[int, bytes, dict[int, bytes]]:
    """Decode a STUN message into (type, transaction id, {attribute type: value})."""
    kind, length = struct.unpack_from("!HH", data)
    attributes, offset = {}, 20
    while offset + 4 <= 20 + length:
        t, n = struct.unpack_from("!HH", data, offset)
        attributes[t] = data[offset + 4 : offset + 4 + n]
        offset += 4 + n + (-n % 4)
    return kind, data[8:20], attributes


def xor_address(host: str, port: int) -> bytes:
    """Encode an IPv4 XOR-MAPPED-ADDRESS value (RFC 8489 §14.2); XOR is its own inverse."""
    ip = int.from_bytes(socket.inet_aton(host), "big") ^ MAGIC_COOKIE
    return struct.pack("!BBHI", 0, 1, port ^ (MAGIC_COOKIE >> 16), ip)


def unxor_address(value: bytes) -> str:
    """Decode an IPv4 XOR-MAPPED-ADDRESS value as ``host:port``."""
    _, _, port, ip = struct.unpack("!BBHI", value)
    host = socket.inet_ntoa((ip ^ MAGIC_COOKIE).to_bytes(4, "big"))
    return f"{host}:{port ^ (MAGIC_COOKIE >> 16)}"


def rtp_packet(ssrc: int, seq: int) -> bytes:
    """Return an RTP packet (RFC 3550) with a 40-byte payload."""
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, ssrc) + bytes(40)


class Sfu:
    """The server: one socket, one endpoint, clients known from signalling by ICE ufrag."""

    def __init__(self, certificate: Certificate, clients: dict[str, Fingerprint]) -> None:
        """Remember the clients' fingerprints by ICE username fragment."""
        self.certificate = certificate
        self.clients = clients
        self.names: dict[aio.Address, str] = {}  # what ICE taught us: address -> client
        self.tasks: list[asyncio.Task[None]] = []  # one per client, awaited by main()
        self.stun = self.rtp = 0
        self.all_rtp = asyncio.Event()

    async def start(self) -> tuple[str, int]:
        """Bind the shared socket with the endpoint as its protocol; return its address."""
        self.endpoint = aio.DtlsEndpoint(
            DtlsConfiguration(certificate=self.certificate),
            on_stun=self.on_stun,
            on_rtp=self.on_rtp,
        )
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self.endpoint, local_addr=("127.0.0.1", 0)
        )
        host, port = self.transport.get_extra_info("sockname")
        print(f"sfu: listening on {host}:{port} (STUN, DTLS and RTP on one socket)")
        return host, port

    def on_stun(self, data: bytes, addr: aio.Address) -> None:
        """Handle an ICE connectivity check: learn who is at ``addr``, get DTLS ready, answer."""
        kind, transaction, attributes = stun_attributes(data)
        name = attributes.get(USERNAME, b"").decode().partition(":")[2]  # "sfu:<client ufrag>"
        if kind != BINDING_REQUEST or name not in self.clients:
            return
        self.stun += 1
        print(f"sfu: STUN binding request from {name} at {addr[0]}:{addr[1]}")
        if self.endpoint.get_stream(addr) is None:
            self.names[addr] = name
            stream = self.endpoint.connection_for(addr, Role.SERVER, [self.clients[name]])
            self.tasks.append(asyncio.get_running_loop().create_task(self.serve(stream, name)))
        answer = [(XOR_MAPPED_ADDRESS, xor_address(addr[0], addr[1]))]
        self.transport.sendto(stun_message(BINDING_SUCCESS, transaction, answer), addr)

    def on_rtp(self, data: bytes, addr: aio.Address) -> None:
        """Handle RTP or RTCP from a client (SRTP in a call: keys from ``stream.srtp_keys()``)."""
        _, _, seq, _, ssrc = struct.unpack_from("!BBHII", data)
        stream = self.endpoint.get_stream(addr)
        state = "no DTLS" if stream is None else stream.state.value
        print(f"sfu: RTP from {self.names.get(addr)}: ssrc {ssrc:#x}, seq {seq}, DTLS {state}")
        self.rtp += 1
        if self.rtp == len(self.clients):
            self.all_rtp.set()

    async def serve(self, stream: aio.DtlsStream, name: str) -> None:
        """Per client: wait for the handshake, read one record, answer it."""
        info = await stream.wait_handshake()
        profile = None if info.srtp_profile is None else info.srtp_profile.name
        print(f"sfu: DTLS handshake with {name}: {info.protocol_version}, SRTP {profile}")
        print(f"sfu: DTLS record from {name}: {await stream.recv()!r}")
        await stream.send(f"welcome {name}".encode())


async def client(
    name: str, ssrc: int, certificate: Certificate, sfu: tuple[str, int], sfu_fp: Fingerprint
) -> None:
    """One client: STUN check, DTLS handshake and one record each way, one RTP packet."""
    loop = asyncio.get_running_loop()
    stun_answer: asyncio.Future[bytes] = loop.create_future()

    def on_stun(data: bytes, addr: aio.Address) -> None:
        if not stun_answer.done():
            stun_answer.set_result(data)

    endpoint = aio.DtlsEndpoint(DtlsConfiguration(certificate=certificate), on_stun=on_stun)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: endpoint, local_addr=("127.0.0.1", 0)
    )
    try:
        transaction = os.urandom(12)
        request = stun_message(BINDING_REQUEST, transaction, [(USERNAME, f"sfu:{name}".encode())])
        transport.sendto(request, sfu)
        _, _, attributes = stun_attributes(await asyncio.wait_for(stun_answer, TIMEOUT))
        mapped = unxor_address(attributes[XOR_MAPPED_ADDRESS])
        print(f"{name}: STUN binding success, mapped {mapped}")
        stream = endpoint.connection_for(sfu, Role.CLIENT, [sfu_fp])
        async with stream:
            await asyncio.wait_for(stream.wait_handshake(), TIMEOUT)
            await stream.send(f"hello from {name}".encode())
            reply = await asyncio.wait_for(stream.recv(), TIMEOUT)
            print(f"{name}: DTLS record from sfu: {reply!r}")
            transport.sendto(rtp_packet(ssrc, seq=1), sfu)
    finally:
        await endpoint.close()
        transport.close()


async def main() -> int:
    """Start the SFU, run both clients at once, check what the SFU routed."""
    sfu_cert, alice_cert, bob_cert = (Certificate.generate() for _ in range(3))
    sfu = Sfu(sfu_cert, {"alice": alice_cert.fingerprint(), "bob": bob_cert.fingerprint()})
    address = await sfu.start()
    sfu_fp = sfu_cert.fingerprint()
    try:
        await asyncio.gather(
            client("alice", 0x1111, alice_cert, address, sfu_fp),
            client("bob", 0x2222, bob_cert, address, sfu_fp),
        )
        await asyncio.wait_for(sfu.all_rtp.wait(), TIMEOUT)
        await asyncio.gather(*sfu.tasks)
    except Exception as exc:  # a DtlsError from a handshake, a timeout, ...
        print(f"FAILED: {exc!r}", file=sys.stderr)
        return 1
    finally:
        stats = sfu.endpoint.stats
        await sfu.endpoint.close()
    print(
        f"sfu: routed {sfu.stun} STUN, {stats.handshakes_completed} DTLS handshakes, "
        f"{sfu.rtp} RTP; dropped {stats.datagrams_dropped}"
    )
    ok = sfu.stun == sfu.rtp == stats.handshakes_completed == 2 and not stats.datagrams_dropped
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
