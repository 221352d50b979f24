"""Three DTLS hosts behind nginx's UDP load balancer, in network namespaces (deploy/lb.py).

One deployment for the module (3 hosts x 2 workers, one cookie secret, nginx hashing each
client's address and port). Clients run in this process, in a thread that joined the client
namespace (:func:`deploy.lb.run_in_netns`). The tests run in order; the last one kills a host.
Needs root, ``ip`` and nginx with its stream module (CI installs them); skips otherwise.
Every namespace is removed at the end, also on failure, and stale ones from dead runs first.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from test_cli_cookie_secret import handshake_across  # noqa: E402

from deploy import lb  # noqa: E402
from dtls_ossl import Certificate, DtlsConfiguration, DtlsConnection, Role  # noqa: E402
from dtls_ossl.aio import DtlsStream, connect  # noqa: E402
from dtls_ossl.events import HandshakeCompleted  # noqa: E402

pytestmark = [
    pytest.mark.loadbalancer,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        bool(lb.missing_tools()), reason=f"load balancer deployment needs {lb.missing_tools()}"
    ),
]

T = TypeVar("T")
Stats = dict[str, Any]

HOSTS = 3
HANDSHAKE_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def deployment() -> Iterator[lb.Deployment]:
    dep = lb.Deployment(HOSTS, workers=2, export_srtp=True)
    try:
        dep.start()
        yield dep
    finally:
        dep.stop()
    assert not [ns for ns in lb._namespaces() if ns.startswith(dep.prefix)]


@pytest.fixture(scope="module")
def client_config(deployment: lb.Deployment) -> DtlsConfiguration:
    cert = Certificate.load(str(deployment.client_cert), str(deployment.client_key))
    return DtlsConfiguration(certificate=cert)


def in_clients(dep: lb.Deployment, coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh event loop inside the client namespace."""
    result: T = lb.run_in_netns(dep.client_ns, asyncio.run, coro)
    return result


def totals(dep: lb.Deployment, field: str) -> list[int]:
    return [dep.stats(i)[field] for i in range(dep.n_hosts)]


def wait_stats(
    dep: lb.Deployment, ready: Callable[[list[Stats]], bool], timeout: float = 5.0
) -> list[Stats]:
    """Poll the hosts' counters until ``ready(stats)``; return them (fail at timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = [dep.stats(i) for i in range(dep.n_hosts)]
        if ready(stats):
            return stats
        if time.monotonic() > deadline:
            pytest.fail(f"host counters never got there: {stats}")
        time.sleep(0.1)


async def _connect(
    dep: lb.Deployment, config: DtlsConfiguration, sem: asyncio.Semaphore
) -> DtlsStream:
    async with sem:
        return await connect(
            *dep.address,
            config,
            remote_fingerprints=[dep.server_fingerprint],
            handshake_timeout=HANDSHAKE_TIMEOUT,
        )


async def _echo_once(stream: DtlsStream, payload: bytes) -> None:
    await stream.send(payload)
    assert await asyncio.wait_for(stream.recv(), 5.0) == payload


def test_300_clients_spread_over_every_host_with_mirrored_srtp_keys(
    deployment: lb.Deployment, client_config: DtlsConfiguration
) -> None:
    before = totals(deployment, "handshakes_completed")

    async def run() -> list[dict[str, Any]]:
        sem = asyncio.Semaphore(100)
        streams = await asyncio.gather(
            *(_connect(deployment, client_config, sem) for _ in range(300))
        )
        keys = [s.srtp_keys().to_dict() for s in streams]
        await asyncio.gather(*(_echo_once(s, b"ping %d" % i) for i, s in enumerate(streams)))
        await asyncio.gather(*(s.aclose() for s in streams))
        return keys

    t0 = time.monotonic()
    keys = in_clients(deployment, run())
    took = time.monotonic() - t0
    assert len(keys) == 300
    stats = wait_stats(
        deployment, lambda st: sum(s["handshakes_completed"] for s in st) - sum(before) >= 300
    )
    per_host = [s["handshakes_completed"] - b for s, b in zip(stats, before, strict=True)]
    print(f"300 handshakes through nginx in {took:.2f} s; per host {per_host}")
    assert sum(per_host) == 300
    assert min(per_host) >= 30, per_host  # ~100 each; a host left out would show 0

    # Each host printed its side's keys: the client's local key is the server's remote one.
    server_side = {}
    for i in range(HOSTS):
        for line in (deployment.run_dir / f"h{i + 1}.log").read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                server_side[record["remote_key"]] = record
    hosts_seen = set()
    for k in keys:
        s = server_side[k["local_key"]]
        assert (s["remote_salt"], s["local_key"], s["local_salt"], s["profile"]) == (
            k["local_salt"],
            k["remote_key"],
            k["remote_salt"],
            k["profile"],
        )
        hosts_seen.add(s["host"])
    assert hosts_seen == {f"h{i + 1}" for i in range(HOSTS)}


def test_a_cookie_minted_on_one_host_is_accepted_by_another(
    deployment: lb.Deployment, client_config: DtlsConfiguration
) -> None:
    def run() -> tuple[int, HandshakeCompleted | None]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((lb.CLIENT_DIRECT_ADDRESS, 0))  # next to the hosts
            h1, h2 = ((addr, lb.PORT) for addr in deployment.host_addresses[:2])
            return handshake_across(sock, h1, h2, configuration=client_config)

    answer, done = lb.run_in_netns(deployment.client_ns, run)
    assert answer == 2, "host 2 answered the cookie retry with another HelloVerifyRequest"
    assert done is not None


def _ip_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 + UDP header for a raw IP_HDRINCL socket (the kernel fills length, checksum)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, socket.IPPROTO_UDP, 0,
        socket.inet_aton(src[0]), socket.inet_aton(dst[0]),
    )  # fmt: skip
    return ip + udp


def test_a_spoofed_clienthello_flood_creates_no_state_on_any_host(
    deployment: lb.Deployment, client_config: DtlsConfiguration
) -> None:
    time.sleep(0.8)  # workers report every 0.5 s: start from settled counters
    before = [deployment.stats(i) for i in range(HOSTS)]
    conn = DtlsConnection(client_config, role=Role.CLIENT, insecure_skip_fingerprint_check=True)
    conn.connect(time.monotonic())
    (hello,) = conn.datagrams_to_send(time.monotonic())
    n = 1500
    rng = random.Random(15)

    def flood() -> None:
        # Sources in the subnet that no namespace owns: nginx's answers go nowhere.
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
            for k in range(n):
                src = (f"{lb.CLIENT_SUBNET}.{rng.randint(150, 250)}", rng.randint(1024, 65535))
                raw.sendto(_ip_udp(src, deployment.address, hello), deployment.address)
                if k % 100 == 99:
                    time.sleep(0.01)  # stay under the socket buffers: every hello should land

    lb.run_in_netns(deployment.client_ns, flood)

    def per_host(st: list[Stats]) -> list[int]:
        return [
            s["hello_verify_sent"] - b["hello_verify_sent"]
            for s, b in zip(st, before, strict=False)
        ]

    def answered(st: list[Stats]) -> int:
        return sum(per_host(st))

    after = wait_stats(deployment, lambda st: answered(st) >= 0.9 * n)
    print(f"{n} spoofed hellos: {answered(after)} HelloVerifyRequests, per host {per_host(after)}")
    for a, b in zip(after, before, strict=True):
        assert a["hello_verify_sent"] > b["hello_verify_sent"]  # every host was hit
        assert a["handshakes_in_progress"] == 0
        for field in (
            "active_peers",
            "handshakes_completed",
            "handshakes_failed",
            "peers_rejected_limit",
        ):
            assert a[field] == b[field], field


def test_a_killed_host_fails_only_its_own_peers_and_new_clients_complete(
    deployment: lb.Deployment, client_config: DtlsConfiguration
) -> None:
    victim = HOSTS - 1
    n_clients, period, deadline_s = 45, 0.05, 1.0

    async def run() -> tuple[int, list[tuple[int, str | None]], float]:
        loop = asyncio.get_running_loop()
        base = totals(deployment, "active_peers")  # peers earlier tests may have left open
        sem = asyncio.Semaphore(50)
        streams = await asyncio.gather(
            *(_connect(deployment, client_config, sem) for _ in range(n_clients))
        )
        killed = asyncio.Event()
        results: list[tuple[int, str | None]] = []

        async def pinger(stream: DtlsStream) -> None:
            rounds = 0
            # Until well after the kill: round trips every `period`, each within `deadline_s`.
            stop_at = None
            while stop_at is None or time.monotonic() < stop_at:
                if stop_at is None and killed.is_set():
                    stop_at = time.monotonic() + 2 * deadline_s
                payload = b"%d" % rounds
                await stream.send(payload)
                try:
                    reply = await asyncio.wait_for(stream.recv(), deadline_s)
                except asyncio.TimeoutError:
                    results.append((rounds, f"no reply within {deadline_s} s: host lost"))
                    return
                assert reply == payload
                rounds += 1
                await asyncio.sleep(period)
            results.append((rounds, None))

        tasks = [asyncio.create_task(pinger(s)) for s in streams]
        await asyncio.sleep(0.5)

        def all_counted(st: list[Stats]) -> bool:
            # The hosts rewrite their counters every 0.25 s: wait until they show every client.
            return bool(sum(x["active_peers"] for x in st) - sum(base) == n_clients)

        stats = await loop.run_in_executor(None, wait_stats, deployment, all_counted)
        on_victim = stats[victim]["active_peers"] - base[victim]
        await loop.run_in_executor(None, deployment.kill_host, victim)
        killed.set()
        await asyncio.gather(*tasks)
        for s in streams:
            s.close()
        # nginx does not reroute the dead host's new clients (its passive check counts a UDP
        # upstream as failed only when a send fails, not on the ICMP read error), and a reload
        # without it loses records in flight on the other hosts (deploy/lb.py HealthMonitor):
        # the supervisor restarts the host, as systemd would.
        await loop.run_in_executor(None, deployment.start_host, victim)
        await loop.run_in_executor(None, deployment.wait_hosts)
        t0 = time.monotonic()
        fresh = await asyncio.gather(*(_connect(deployment, client_config, sem) for _ in range(30)))
        await asyncio.gather(*(_echo_once(s, b"after") for s in fresh))
        took = time.monotonic() - t0
        await asyncio.gather(*(s.aclose() for s in fresh))
        return on_victim, results, took

    on_victim, results, took = in_clients(deployment, run())
    failed = [r for r in results if r[1] is not None]
    print(f"victim had {on_victim} peers; {len(failed)} clients failed; 30 new in {took:.2f} s")
    assert 0 < on_victim < n_clients
    assert len(failed) == on_victim, results  # exactly the victim's peers, each with its error
    assert all("host lost" in str(r[1]) for r in failed)
    # The others never missed a round trip, and kept going after the kill.
    assert all(r[0] >= 2 * deadline_s / (period + 0.01) for r in results if r[1] is None)
    assert took < HANDSHAKE_TIMEOUT
    # The restarted host (fresh counters) took its share of the new clients.
    wait_stats(deployment, lambda st: st[victim]["handshakes_completed"] > 0)
