"""The processes of benchmarks/server.py: a dtls_ossl.aio server, and load-generating clients.

Run by benchmarks/server.py, never by hand (but it works)::

    python benchmarks/_server_load.py server WORKERS CERT KEY CLIENT_FP IDLE
    python benchmarks/_server_load.py churn PORT SERVER_FP CERT KEY CONCURRENCY T_START T_END
    python benchmarks/_server_load.py hold PORT SERVER_FP CERT KEY CONCURRENCY COUNT

``server`` runs ``dtls_ossl.aio.serve`` on 127.0.0.1 (port chosen by the kernel) with a handler
that returns at once (the stream stays open: established peers stay until they close or, with
IDLE > 0, go idle). It prints ``port=`` and ``pids=``, then answers commands on stdin, one per
line: ``stats`` (the ServerStats as key=value), ``rss`` (gc, then this process's RSS and the
number of established peers); end of stdin closes it.

The clients are sans-IO :class:`~dtls_ossl.DtlsConnection` objects, one connected UDP socket
each (so each has its own address, as real clients do), CONCURRENCY handshakes in flight,
driven by one epoll loop without asyncio (the cheapest client Python can be, leaving CPU to the
server). ``churn`` starts a new client whenever one completes (after sending close_notify, so
the server frees that peer) and counts completions whose time lies in [T_START, T_END]
(``time.monotonic()``, which is CLOCK_MONOTONIC and thus shared by every process), with the
CPU time this process used in that window; after T_END it starts no new client and lets the
ones in flight finish (at most 3 s). ``hold`` establishes COUNT connections, keeps every
socket open, prints ``established=``, and waits for end of stdin.
"""

from __future__ import annotations

import contextlib
import gc
import os
import selectors
import socket
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from dtls_ossl import (  # noqa: E402
    Certificate,
    DtlsConfiguration,
    DtlsConnection,
    Role,
    SrtpProfile,
    events,
)

PROFILES = [SrtpProfile.AES128_CM_SHA1_80]  # as in the core benchmark
HANDSHAKE_TIMEOUT = 10.0
TIMER_SCAN = 0.02


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def heap_in_use() -> int:
    """Bytes malloc has handed out and not taken back (glibc mallinfo2), or -1."""
    import ctypes

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                         "fsmblks", "uordblks", "fordblks", "keepcost")
        ]  # fmt: skip

    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = Mallinfo2
    except (OSError, AttributeError):
        return -1
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def configuration(cert: str, key: str) -> DtlsConfiguration:
    return DtlsConfiguration(
        certificate=Certificate.load(cert, key),
        srtp_profiles=PROFILES,
        handshake_timeout=HANDSHAKE_TIMEOUT,
    )


# --------------------------------------------------------------------------------- server


async def noop_handler(stream: Any) -> None:
    """Return at once; the peer stays established (module level: 'spawn' workers need it)."""


async def server_main(workers: int, cert: str, key: str, client_fp: str, idle: float) -> None:
    import asyncio

    from dtls_ossl.aio import serve

    loop = asyncio.get_running_loop()
    server = await serve(
        noop_handler,
        "127.0.0.1",
        0,
        configuration(cert, key),
        remote_fingerprints=[client_fp],
        workers=workers,
        reuse_port=workers > 1,
        idle_timeout=idle if idle > 0 else None,
        handshake_timeout=HANDSHAKE_TIMEOUT,
        max_peers=1_000_000,
    )
    print(f"port={server.address[1]}")
    print(f"pids={','.join(str(p) for p in server.worker_pids)}", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := (await reader.readline()).decode().strip():
            if line == "stats":
                if workers > 1:
                    await asyncio.sleep(0.6)  # the workers report every 0.5 s
                stats = server.stats.as_dict()
                print(" ".join(f"{k}={v}" for k, v in stats.items()), flush=True)
            elif line == "rss":
                gc.collect()
                print(
                    f"rss={rss_bytes()} heap={heap_in_use()} active={server.stats.active_peers}",
                    flush=True,
                )
    finally:
        await server.close(grace=0.1)


# -------------------------------------------------------------------------------- clients


class Client:
    __slots__ = ("conn", "sock")

    def __init__(self, conn: DtlsConnection, sock: socket.socket) -> None:
        self.conn = conn
        self.sock = sock


class Load:
    """CONCURRENCY client handshakes in flight on one epoll loop."""

    def __init__(self, port: int, server_fp: str, cert: str, key: str, concurrency: int) -> None:
        self.addr = ("127.0.0.1", port)
        self.fps = [server_fp]
        self.config = configuration(cert, key)
        self.concurrency = concurrency
        self.sel = selectors.EpollSelector()
        self.inflight: set[Client] = set()
        self.established: list[Client] = []
        self.completed_at: list[float] = []
        self.failed = 0
        self.keep = False

    def start_one(self) -> None:
        now = time.monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(self.addr)
        conn = DtlsConnection(self.config, role=Role.CLIENT, remote_fingerprints=self.fps)
        c = Client(conn, sock)
        self.inflight.add(c)
        self.sel.register(sock, selectors.EVENT_READ, c)
        conn.connect(now)
        self.pump(c, now)

    def send(self, c: Client, now: float) -> None:
        for d in c.conn.datagrams_to_send(now):
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                c.sock.send(d)  # a lost datagram is retransmitted by DTLS

    def finish(self, c: Client) -> None:
        self.inflight.discard(c)
        self.sel.unregister(c.sock)
        if not self.keep:
            c.sock.close()

    def pump(self, c: Client, now: float) -> None:
        self.send(c, now)
        conn = c.conn
        while (ev := conn.next_event()) is not None:
            if isinstance(ev, events.HandshakeCompleted):
                self.completed_at.append(now)
                if self.keep:
                    self.established.append(c)
                else:
                    conn.close(now)  # close_notify: the server frees this peer
                    self.send(c, now)
                self.finish(c)
                return
            if isinstance(ev, events.ConnectionTerminated):
                self.failed += 1
                self.finish(c)
                return

    def step(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            c: Client = key.data
            now = time.monotonic()
            sock = c.sock
            while True:
                try:
                    data = sock.recv(4096)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionRefusedError:
                    continue
                c.conn.receive_datagram(data, now)
            self.pump(c, now)

    def timers(self) -> None:
        now = time.monotonic()
        for c in list(self.inflight):
            t = c.conn.get_timer()
            if t is not None and t <= now:
                c.conn.handle_timer(now)
                self.pump(c, now)


def churn_main(load: Load, t_start: float, t_end: float) -> None:
    cpu0 = cpu1 = None
    next_scan = time.monotonic() + TIMER_SCAN
    while True:
        while len(load.inflight) < load.concurrency:
            load.start_one()
        load.step(TIMER_SCAN)
        now = time.monotonic()
        if cpu0 is None and now >= t_start:
            cpu0 = time.process_time()
        if now >= t_end:
            cpu1 = time.process_time()
            break
        if now >= next_scan:
            load.timers()
            next_scan = now + TIMER_SCAN
    # Drain: finish the handshakes in flight (no new ones), so the server is left with none.
    drain_until = time.monotonic() + 3.0
    while load.inflight and time.monotonic() < drain_until:
        load.step(TIMER_SCAN)
        load.timers()
    in_window = sum(1 for t in load.completed_at if t_start <= t <= t_end)
    print(f"handshakes_in_window={in_window}")
    print(f"handshakes_total={len(load.completed_at)}")
    print(f"failed={load.failed}")
    print(f"cpu_in_window={(cpu1 or 0.0) - (cpu0 or 0.0):.3f}")
    print(f"window={t_end - t_start:.3f}", flush=True)


def hold_main(load: Load, count: int) -> None:
    load.keep = True
    started = 0
    next_scan = time.monotonic() + TIMER_SCAN
    deadline = time.monotonic() + 600
    while len(load.established) < count:
        while len(load.inflight) < load.concurrency and started < count + load.failed:
            load.start_one()
            started += 1
        load.step(TIMER_SCAN)
        now = time.monotonic()
        if now >= next_scan:
            load.timers()
            next_scan = now + TIMER_SCAN
        if now > deadline:
            break
    print(f"established={len(load.established)}")
    print(f"failed={load.failed}", flush=True)
    sys.stdin.read()  # hold every connection until the orchestrator is done


def main(argv: list[str]) -> int:
    mode = argv[0] if argv else ""
    if mode == "server" and len(argv) == 6:
        import asyncio

        workers, cert, key, client_fp, idle = argv[1:]
        asyncio.run(server_main(int(workers), cert, key, client_fp, float(idle)))
        return 0
    if mode in ("churn", "hold") and len(argv) in (7, 8):
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        port, server_fp, cert, key, conc = argv[1:6]
        load = Load(int(port), server_fp, cert, key, int(conc))
        if mode == "churn":
            churn_main(load, float(argv[6]), float(argv[7]))
        else:
            hold_main(load, int(argv[6]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
