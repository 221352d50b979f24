"""serve() admission per source address, and memory given back after failed handshakes.

Issue 9 case 5: one attacker address on many ports must not hold every handshake slot (and
what each may make OpenSSL buffer). Real UDP sockets on 127.0.0.1 and 127.0.0.2 (the whole of
127/8 is loopback on Linux).
"""

from __future__ import annotations

import pytest
from test_aio import (
    connect,
    eventually,
    first_client_hello,
    raw_peer,
    roundtrip,
    run,
    start_server,
)

from dtls_ossl import ConfigurationError, HandshakeTimeoutError


def test_aio_handshakes_per_address_are_limited_while_other_addresses_are_served() -> None:
    async def main() -> None:
        async with await start_server(
            cookie_exchange=False, max_handshakes_per_address=3, handshake_timeout=1.0
        ) as server:
            hello = first_client_hello()
            stalled = [await raw_peer(server.address) for _ in range(5)]  # all 127.0.0.1
            for s in stalled:
                s.send(hello)  # without cookies each hello creates a connection...
            await eventually(lambda: server.stats.peers_rejected_limit == 2)
            assert server.stats.handshakes_in_progress == 3  # ...up to 3 for the address
            with pytest.raises(HandshakeTimeoutError):
                await connect(server, handshake_timeout=0.3)  # 127.0.0.1 is refused
            async with await connect(server, local_addr=("127.0.0.2", 0)) as other:
                await roundtrip(other, b"another address")
            # The stalled ones hit their deadline; then the address is welcome again.
            await eventually(lambda: server.stats.handshakes_in_progress == 0, timeout=3)
            async with await connect(server) as late:
                await roundtrip(late, b"late")
            assert server.stats.handshakes_timed_out == 3
            for s in stalled:
                s.close()

    run(main())


def test_aio_max_handshakes_per_address_must_be_a_positive_int() -> None:
    async def main() -> None:
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ConfigurationError, match="max_handshakes_per_address"):
                await start_server(max_handshakes_per_address=bad)

    run(main())


def test_aio_memory_is_given_back_when_the_last_failed_handshake_ends() -> None:
    async def main() -> None:
        async with await start_server(cookie_exchange=False, handshake_timeout=0.5) as server:
            hello = first_client_hello()
            stalled = [await raw_peer(server.address) for _ in range(4)]
            for s in stalled:
                s.send(hello)
            await eventually(lambda: server.stats.handshakes_in_progress == 4)
            assert server.stats.memory_releases == 0
            await eventually(lambda: server.stats.handshakes_in_progress == 0, timeout=3)
            # Once for the first failure, once when the last one in progress ended (the four
            # time out within a second of each other).
            assert server.stats.memory_releases == 2
            for s in stalled:
                s.close()

    run(main())
