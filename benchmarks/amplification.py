"""Memory amplification attack on an ``aio.serve()`` server (issue 9 case 5).

One attacker address (127.0.0.1) opens PORTS UDP ports. From each it completes the stateless
cookie exchange honestly (a real ClientHello, the HelloVerifyRequest, the ClientHello with the
cookie), so the server creates a connection that waits for flight 3; then it sends forged
buffers: 10 handshake fragments claiming ~100 KiB messages (26 bytes each) and 100 next-epoch
records (45 bytes each). The server is a separate process running ``aio.serve()`` with its
defaults (10 s handshake deadline); its resident set size is read from /proc:

* before: after one genuine handshake warmed the code paths, before the attack;
* peak: the process's high-water mark (VmHWM) once every forged datagram was handled;
* after: once every attacked handshake has timed out.

Targets: peak under 50 MB, after within 5 MB of before; PASS/FAIL is printed for each. Takes
about 20 s with the default 1000 ports::

    python benchmarks/amplification.py [--ports 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import resource
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from dtls_ossl import (  # noqa: E402
    Certificate,
    ConnectionState,
    DtlsConfiguration,
    DtlsConnection,
    Fingerprint,
    Role,
    aio,
)

PEAK_TARGET = 50 * 1024 * 1024
AFTER_TARGET = 5 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0  # serve()'s default


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


# ----------------------------------------------------------------------------- the server


async def _serve(client_fp: str, per_address: int) -> None:
    async def handler(stream: aio.DtlsStream) -> None:
        async with stream:
            async for data in stream:
                await stream.send(data)

    config = DtlsConfiguration()
    limits: dict[str, Any] = {}
    if per_address:
        limits["max_handshakes_per_address"] = per_address
    server = await aio.serve(
        handler,
        "127.0.0.1",
        0,
        config,
        remote_fingerprints=[Fingerprint.parse(client_fp)],
        **limits,
    )
    print(f"port={server.address[1]}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "rss":
            gc.collect()
            st = proc_status()
            print(f"rss={st['VmRSS']} hwm={st['VmHWM']}", flush=True)
        elif line == "trim":  # diagnosis: what glibc keeps but could give back
            import ctypes

            t = time.perf_counter()
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            us = round((time.perf_counter() - t) * 1e6)
            print(f"rss={proc_status()['VmRSS']} us={us}", flush=True)
        elif line == "stats":
            s = server.stats
            print(" ".join(f"{k}={v}" for k, v in s.as_dict().items()), flush=True)
    await server.close()


# --------------------------------------------------------------------------- the attacker


def record(typ: int, epoch: int, seq: int, body: bytes) -> bytes:
    return (
        bytes([typ, 0xFE, 0xFD])
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + len(body).to_bytes(2, "big")
        + body
    )


def fragment(msg_type: int, total: int, message_seq: int, offset: int, data: bytes) -> bytes:
    return (
        bytes([msg_type])
        + total.to_bytes(3, "big")
        + message_seq.to_bytes(2, "big")
        + offset.to_bytes(3, "big")
        + len(data).to_bytes(3, "big")
        + data
    )


def forged_buffers(rng: random.Random) -> list[bytes]:
    """The issue's forged datagrams: 10 fragments (260 bytes), 100 next-epoch records (4.5 KB)."""
    frags = [record(22, 0, 2 + i, fragment(11, 100 * 1024 - 12, 2 + i, 0, b"x")) for i in range(10)]
    future = [record(22, 1, i, rng.randbytes(32)) for i in range(100)]
    return frags + future


class Server:
    """The server process and its line protocol."""

    def __init__(self, client_fp: str, per_address: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", client_fp, "--per-address", str(per_address)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in, self._out = self.proc.stdin, self.proc.stdout
        self.port = int(self._out.readline().strip().partition("=")[2])

    def ask(self, command: str) -> dict[str, int]:
        self._in.write(command + "\n")
        self._in.flush()
        line = self._out.readline().split()
        return {k: int(v) for k, _, v in (item.partition("=") for item in line)}

    def close(self) -> None:
        self._in.close()
        self.proc.wait(timeout=10)


def _drain(socks: list[socket.socket], seconds: float) -> dict[int, list[bytes]]:
    """Read what arrives on any socket for ``seconds``; keyed by socket index."""
    got: dict[int, list[bytes]] = {}
    index = {s.fileno(): i for i, s in enumerate(socks)}
    poll = select.epoll()
    for s in socks:
        poll.register(s.fileno(), select.EPOLLIN)
    end = time.monotonic() + seconds
    try:
        while (left := end - time.monotonic()) > 0:
            for fd, _ in poll.poll(left):
                i = index[fd]
                while True:
                    try:
                        got.setdefault(i, []).append(socks[i].recv(65536))
                    except BlockingIOError:
                        break
    finally:
        poll.close()
    return got


def genuine_handshake(port: int, cert: Certificate) -> None:
    """One real client handshake: warms the server's code paths before 'before' is read."""

    async def run() -> None:
        config = DtlsConfiguration(certificate=cert)
        async with await aio.connect(
            "127.0.0.1",
            port,
            config,
            remote_fingerprints=None,
            insecure_skip_fingerprint_check=True,
        ) as stream:
            await stream.send(b"warm-up")
            assert await stream.recv() == b"warm-up"

    asyncio.run(run())


def attack(port: int, cert: Certificate, n_ports: int, seed: int, pace: float) -> tuple[int, int]:
    """Cookie exchange from n_ports ports, then the forged buffers. Returns (ports that got
    their cookie back, bytes sent after it)."""
    rng = random.Random(seed)
    # A long first timeout: with 1 s, OpenSSL would retransmit the first ClientHello when the
    # HelloVerifyRequest comes in after a second of setting up ports.
    config = DtlsConfiguration(
        certificate=cert, initial_retransmit_timeout=60.0, handshake_timeout=120.0
    )
    socks, clients = [], []
    now = time.monotonic()
    for _ in range(n_ports):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        c = DtlsConnection(
            config, role=Role.CLIENT, remote_fingerprints=None, insecure_skip_fingerprint_check=True
        )
        c.connect(now)
        for d in c.datagrams_to_send(now):
            s.send(d)
        socks.append(s)
        clients.append(c)
    # The HelloVerifyRequests; answer each with the ClientHello carrying the cookie.
    for i, datagrams in _drain(socks, 1.0).items():
        for d in datagrams:
            clients[i].receive_datagram(d, now)
        for d in clients[i].datagrams_to_send(now):
            socks[i].send(d)
    answered = _drain(socks, 1.0)  # flight 2 from the connections the server created
    sent = 0
    for s in socks:
        for d in forged_buffers(rng):
            s.send(d)
            sent += len(d)
        time.sleep(pace)  # let the server keep up: loopback drops when its buffer fills
    for s in socks:
        s.close()
    assert all(c.state is ConnectionState.HANDSHAKING for c in clients)
    return len(answered), sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=1000, help="attacker ports (default 1000)")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--pace", type=float, default=0.004, help="seconds between ports (default 0.004)"
    )
    parser.add_argument(
        "--per-address",
        type=int,
        default=0,
        help="serve(max_handshakes_per_address=N); 0 (default) keeps serve()'s default",
    )
    parser.add_argument("--rounds", type=int, default=1, help="attacks in a row (default 1)")
    parser.add_argument("--trim", action="store_true", help="also report RSS after malloc_trim")
    parser.add_argument("--serve", metavar="CLIENT_FP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve, args.per_address))
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.ports + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.ports + 64), hard))
    cert = Certificate.generate()
    server = Server(str(cert.fingerprint()), args.per_address)
    mb = 1024 * 1024
    afters = []
    try:
        genuine_handshake(server.port, cert)
        before = server.ask("rss")["rss"]
        for r in range(args.rounds):
            t0 = time.monotonic()
            answered, sent = attack(server.port, cert, args.ports, args.seed + r, args.pace)
            # Every forged datagram handled: the server's counter stops moving.
            last = -1
            while (received := server.ask("stats")["datagrams_received"]) != last:
                last = received
                time.sleep(0.3)
            peak = server.ask("rss")["hwm"]
            during = server.ask("stats")
            deadline = t0 + HANDSHAKE_TIMEOUT + 5.0
            while server.ask("stats")["handshakes_in_progress"] and time.monotonic() < deadline:
                time.sleep(0.5)
            after = server.ask("rss")["rss"]
            afters.append(after)
            print(
                f"round {r + 1}: {args.ports} ports of 127.0.0.1, {answered} answered after the "
                f"cookie, {sent / 1e6:.1f} MB of forged datagrams; server: "
                f"{during['handshakes_in_progress']} handshakes in progress, "
                f"{during['peers_rejected_limit']} hellos refused by limits, "
                f"{during['datagrams_dropped']} datagrams dropped; "
                f"peak {peak / mb:.1f} MB, after {after / mb:.1f} MB"
            )
        stats = server.ask("stats")
        trimmed = server.ask("trim") if args.trim else None
    finally:
        server.close()
    print(
        f"server: {stats['datagrams_received']} datagrams received, "
        f"{stats['handshakes_timed_out']} handshakes timed out, "
        f"{stats['handshakes_in_progress']} still in progress"
    )
    after = afters[-1]
    print(f"RSS before {before / mb:.1f} MB, peak {peak / mb:.1f} MB, after {after / mb:.1f} MB")
    if trimmed is not None:
        print(
            f"RSS after malloc_trim(0): {trimmed['rss'] / mb:.1f} MB "
            f"(the call took {trimmed['us'] / 1000:.1f} ms)"
        )
    ok_peak = peak < PEAK_TARGET
    ok_after = after - before <= AFTER_TARGET
    print(f"{'PASS' if ok_peak else 'FAIL'}: peak {peak / mb:.1f} MB < {PEAK_TARGET / mb:.0f} MB")
    print(
        f"{'PASS' if ok_after else 'FAIL'}: after - before {(after - before) / mb:+.1f} MB "
        f"<= {AFTER_TARGET / mb:.0f} MB"
    )
    return 0 if ok_peak and ok_after else 1


if __name__ == "__main__":
    sys.exit(main())
