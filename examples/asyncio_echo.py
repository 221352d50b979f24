"""A DTLS echo server and client with asyncio: ``aio.serve`` and ``aio.connect``.

The server keeps one connection per peer address on one UDP socket (with stateless cookies)
and runs ``echo(stream)`` once per established peer; each ``send`` is one DTLS record, each
``recv`` returns one. Both sides pin the other's certificate by its fingerprint, as WebRTC
peers do with the ``a=fingerprint`` line of the SDP. The client sends three messages, checks
every echo, and closes (close_notify), which ends the server's ``async for`` loop cleanly.

Run it::

    python examples/asyncio_echo.py

Exit status 0 when every echo came back intact, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import sys

from dtls_ossl import Certificate, ConnectionClosedError, DtlsConfiguration, DtlsError, aio

MESSAGES = [b"hello", b"over", b"DTLS"]


async def main() -> int:
    """Serve on an ephemeral port, connect, echo MESSAGES; return the exit status."""
    server_cert, client_cert = Certificate.generate(), Certificate.generate()
    peer_left = asyncio.Event()

    async def echo(stream: aio.DtlsStream) -> None:
        """Send every record back until the peer closes (runs once per peer)."""
        async with stream:
            async for data in stream:  # stops quietly on close_notify, raises on an error
                await stream.send(data)
        print("server: the peer closed cleanly (close_notify)")
        peer_left.set()

    server = await aio.serve(
        echo,
        "127.0.0.1",
        0,
        DtlsConfiguration(certificate=server_cert),
        remote_fingerprints=[client_cert.fingerprint()],
    )
    async with server:
        host, port = server.address
        print(f"server: listening on {host}:{port}")
        try:
            stream = await aio.connect(
                host,
                port,
                DtlsConfiguration(certificate=client_cert),
                remote_fingerprints=[server_cert.fingerprint()],
                handshake_timeout=10.0,
            )
        except DtlsError as exc:  # FingerprintMismatchError, HandshakeTimeoutError, ...
            print(f"client: handshake failed: {exc!r}", file=sys.stderr)
            return 1
        async with stream:
            info = await stream.wait_handshake()  # done already: connect() waited for it
            print(f"client: connected, {info.protocol_version} {info.cipher}")
            for message in MESSAGES:
                await stream.send(message)
                try:
                    reply = await asyncio.wait_for(stream.recv(), timeout=5.0)
                except (ConnectionClosedError, asyncio.TimeoutError) as exc:
                    print(f"client: no echo for {message!r}: {exc!r}", file=sys.stderr)
                    return 1
                print(f"client: sent {message!r}, echoed {reply!r}")
                if reply != message:
                    return 1
        # Leaving the block sent close_notify, which ends the server's `async for`.
        await asyncio.wait_for(peer_left.wait(), timeout=5.0)
        print(f"server: handshakes completed {server.stats.handshakes_completed}")
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
