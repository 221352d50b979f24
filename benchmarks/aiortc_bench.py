"""Stock aiortc against aiortc on dtls_ossl (``dtls_ossl.aiortc.install()``), in one run.

1. Time to connect (offer to data channel open) between two real ``RTCPeerConnection``s on
   127.0.0.1, through a UDP relay that loses DTLS handshake datagrams (first byte 20..22) with
   seeded random loss each way; ICE and established traffic pass untouched. Median and p90 over
   the seeds; a run that has not connected after ``--give-up`` seconds counts as that long.
2. CPU per DTLS handshake: two ``RTCDtlsTransport``s over an in-memory ICE stand-in, so the
   process CPU is the DTLS handshake plus the asyncio plumbing both stacks share.
3. CPU per 1,000 data-channel messages (100 bytes), each way, between connected peer
   connections (SCTP's cost is the same for both; the difference is DTLS).

    python benchmarks/aiortc_bench.py             # 40 seeds per loss rate
    python benchmarks/aiortc_bench.py --quick     # 5 seeds, fewer handshakes
    python benchmarks/aiortc_bench.py --parallel 8   # overlap the runs (faster, noisier at 0%)

Wall-clock figures depend on the machine's load (shared machines: read them as indicative);
the time-to-connect figures are dominated by retransmission timers, not CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

# The two-peer helper lives with the tests.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "tests"))

import aiortc  # noqa: E402
from aiortc import rtcpeerconnection  # noqa: E402
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport  # noqa: E402
from aiortc_pair import Relay, close_all, loopback_only, make_pc, open_data_channel  # noqa: E402

import dtls_ossl.aiortc  # noqa: E402

STACKS = ("stock", "dtls_ossl")


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


async def connect_once(ours: bool, loss: float, seed: int, give_up: float) -> float:
    relay = Relay(loss=loss, seed=seed)
    await relay.start()
    pc1, pc2 = make_pc(ours), make_pc(ours)
    start = time.monotonic()
    try:
        await asyncio.wait_for(open_data_channel(pc1, pc2, relay=relay), give_up)
        took = time.monotonic() - start
    except asyncio.TimeoutError:
        took = give_up
    await close_all(pc1, pc2)
    relay.close()
    return took


async def connect_times(
    ours: bool, loss: float, seeds: int, give_up: float, parallel: int
) -> list[float]:
    # One run at a time by default: overlapping runs share one event loop, and every peer
    # connection's set-up (certificate, ICE) then delays the others' handshakes.
    gate = asyncio.Semaphore(parallel)

    async def one(seed: int) -> float:
        async with gate:
            return await connect_once(ours, loss, seed, give_up)

    return list(await asyncio.gather(*(one(s) for s in range(seeds))))


class MemoryIce:
    """The two methods and the role RTCDtlsTransport uses of an RTCIceTransport, in memory."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.peer: MemoryIce | None = None

    async def _recv(self) -> bytes:
        data = await self.inbox.get()
        if data is None:
            raise ConnectionError
        return data

    async def _send(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.inbox.put_nowait(data)


def make_certificate(ours: bool) -> Any:
    # While installed (handshake_cpu installs once, as an application would), aiortc's
    # names in rtcpeerconnection are dtls_ossl's.
    if ours:
        return rtcpeerconnection.RTCCertificate.generateCertificate()
    return RTCCertificate.generateCertificate()


def make_transport(ours: bool, ice: MemoryIce, certificate: Any) -> Any:
    if ours:
        return rtcpeerconnection.RTCDtlsTransport(ice, [certificate])  # type: ignore[arg-type, unused-ignore]
    return RTCDtlsTransport(ice, [certificate])  # type: ignore[arg-type, unused-ignore]


async def handshake_cpu(ours: bool, count: int) -> float:
    """Process CPU seconds per handshake (certificates made once, outside the timing)."""
    if ours:
        dtls_ossl.aiortc.install()
    c1, c2 = make_certificate(ours), make_certificate(ours)

    async def one() -> None:
        i1, i2 = MemoryIce("controlling"), MemoryIce("controlled")
        i1.peer, i2.peer = i2, i1
        t1, t2 = make_transport(ours, i1, c1), make_transport(ours, i2, c2)
        t1._set_role("server")
        t2._set_role("client")
        await asyncio.gather(t1.start(t2.getLocalParameters()), t2.start(t1.getLocalParameters()))
        assert t1.state == t2.state == "connected", (t1.state, t2.state)
        await t1.stop()
        await t2.stop()
        i1.inbox.put_nowait(None)
        i2.inbox.put_nowait(None)
        await asyncio.sleep(0)

    for _ in range(5):  # warm-up
        await one()
    start = time.process_time()
    for _ in range(count):
        await one()
    took = (time.process_time() - start) / count
    dtls_ossl.aiortc.uninstall()
    return took


async def messages_cpu(ours: bool, count: int, rounds: int) -> tuple[float, float]:
    """Process CPU seconds per ``count`` messages pc1 -> pc2 and pc2 -> pc1 (medians)."""
    pc1, pc2 = make_pc(ours), make_pc(ours)
    ch1, ch2 = await open_data_channel(pc1, pc2)
    payload = "m" * 100
    results: list[list[float]] = [[], []]
    for _ in range(rounds):
        for way, (tx, rx) in enumerate(((ch1, ch2), (ch2, ch1))):
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            got = 0

            def on_message(_msg: str, done: asyncio.Future[None] = done) -> None:
                nonlocal got
                got += 1
                if got == count and not done.done():
                    done.set_result(None)

            rx.on("message", on_message)
            start = time.process_time()
            for _ in range(count):
                tx.send(payload)
            await asyncio.wait_for(done, 60)
            results[way].append(time.process_time() - start)
            rx.remove_listener("message", on_message)
    await close_all(pc1, pc2)
    return statistics.median(results[0]), statistics.median(results[1])


async def main(args: argparse.Namespace) -> None:
    print(
        f"aiortc {aiortc.__version__}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"\nTime to connect (offer to data channel open), {args.seeds} seeds, seconds:")
    head = f"{'stock median':>12} {'p90':>7} | {'dtls_ossl median':>16} {'p90':>7}"
    print(f"{'loss each way':>14} | {head}")
    for loss in (0.0, 0.1, 0.3):
        row: dict[str, list[float]] = {}
        for stack in STACKS:
            row[stack] = await connect_times(
                stack == "dtls_ossl", loss, args.seeds, args.give_up, args.parallel
            )
        s, o = row["stock"], row["dtls_ossl"]
        print(
            f"{loss:>13.0%} | {statistics.median(s):>12.3f} {p90(s):>7.3f} | "
            f"{statistics.median(o):>16.3f} {p90(o):>7.3f}"
            + (f"   (stock max {max(s):.1f}, ours max {max(o):.1f})" if loss else "")
        )
    print(f"\nCPU per DTLS handshake (both sides, in-memory ICE, {args.handshakes} handshakes):")
    cpu = {stack: await handshake_cpu(stack == "dtls_ossl", args.handshakes) for stack in STACKS}
    for stack in STACKS:
        print(f"  {stack:>10}: {cpu[stack] * 1e3:.2f} ms")
    print(f"\nCPU per 1,000 data-channel messages of 100 bytes (median of {args.rounds} rounds):")
    for stack in STACKS:
        a, b = await messages_cpu(stack == "dtls_ossl", 1000, args.rounds)
        print(
            f"  {stack:>10}: offerer->answerer {a * 1e3:.1f} ms, answerer->offerer {b * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--handshakes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--give-up", type=float, default=60.0)
    parser.add_argument("--parallel", type=int, default=1, help="connection runs at once")
    parser.add_argument("--quick", action="store_true", help="5 seeds, 30 handshakes, 2 rounds")
    ns = parser.parse_args()
    if ns.quick:
        ns.seeds, ns.handshakes, ns.rounds = 5, 30, 2
    with loopback_only():
        asyncio.run(main(ns))
