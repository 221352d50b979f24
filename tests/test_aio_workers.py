"""serve(workers=2, reuse_port=True): two processes, one port, handshakes land on both.

The handler is a module-level function so that the 'spawn' start method can pickle it; each
worker announces its pid as the first datagram, then echoes.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from test_aio import CLIENT_FP, LOCAL, SERVER_CERT, config, connect, roundtrip, run

from dtls_ossl import ConfigurationError, aio

pytestmark = pytest.mark.skipif(
    not hasattr(__import__("socket"), "SO_REUSEPORT") or sys.platform != "linux",
    reason="SO_REUSEPORT load balancing is Linux behaviour",
)


async def pid_echo(stream: aio.DtlsStream) -> None:
    await stream.send(str(os.getpid()).encode())
    async for data in stream:
        await stream.send(data)


async def many_clients(server: aio.DtlsServer, n: int) -> set[int]:
    async def one(i: int) -> int:
        async with await connect(server) as stream:
            pid = int(await asyncio.wait_for(stream.recv(), 5))
            await roundtrip(stream, f"client {i}".encode())
            return pid

    return set(await asyncio.gather(*(one(i) for i in range(n))))


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_aio_workers_share_one_port_and_both_take_handshakes(start_method: str) -> None:
    n = 40  # 40 source ports: all on one worker with probability 2**-39

    async def main() -> None:
        server = await aio.serve(
            pid_echo,
            LOCAL,
            0,
            config(SERVER_CERT),
            remote_fingerprints=[CLIENT_FP],
            workers=2,
            reuse_port=True,
            start_method=start_method,
        )
        async with server:
            workers = set(server.worker_pids)
            assert len(workers) == 2 and os.getpid() not in workers
            assert server.endpoint is None
            pids = await many_clients(server, n)
            assert pids == workers  # both processes completed handshakes
            await asyncio.sleep(0.8)  # a stats report from each worker
            stats = server.stats
            assert stats.handshakes_completed == n
            assert stats.hello_verify_sent >= n  # cookies work with both workers
            assert stats.handshakes_failed == 0
        assert not server.is_serving()
        for pid in workers:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # the workers are gone

    run(main(), timeout=60)


def test_aio_workers_need_a_picklable_handler_with_spawn() -> None:
    async def local_handler(stream: aio.DtlsStream) -> None:
        pass

    async def main() -> None:
        with pytest.raises(ConfigurationError):
            await aio.serve(
                local_handler,
                LOCAL,
                0,
                config(SERVER_CERT),
                remote_fingerprints=[CLIENT_FP],
                workers=2,
                reuse_port=True,
            )

    run(main())
