"""Handshakes/s through the kernel's UDP balancer to 1, 2 and 3 DTLS hosts, and its added latency.

Each configuration is a fresh deployment (deploy/lb.py: hosts in network namespaces running
deploy/host.py on ``aio.serve``, nftables NAT in front). Needs root, ``ip``, ``nft`` and
``conntrack``, like tests/test_loadbalancer.py.

Throughput: CLIENTS processes join the client namespace (``ip netns exec``) and run the sans-IO
clients of benchmarks/_server_load.py (``churn``: CONCURRENCY handshakes in flight each, a new
client socket for each handshake, close_notify once established), aimed at the balancer. The
rate counts handshakes completed inside a fixed window after a warm-up. Over the same window
the CPU of every process in each host's namespace (the host and its workers) is read from
/proc/PID/stat; the balancer is the kernel's forwarding path (softirq time, no process of its
own), so its CPU shows only in the "other" column with everything else. ``hs/host-CPU-s``
(handshakes per CPU-second spent by all hosts) is the figure that shows scaling when the
machine has fewer cores than the hosts, clients and balancer want together.

Latency: one client process in the client namespace holds two established DTLS associations,
one through the balancer and one straight to a host, and alternates echo round trips on them
(one datagram each way, sequentially, so no queueing); the balancer's cost is the difference of
the medians (and of the p99s). Each round trip crosses the balancer twice: per datagram it adds
half.

    python benchmarks/loadbalancer.py            # 1, 2, 3 hosts, 8 s windows, 3,000 round trips
    python benchmarks/loadbalancer.py --quick    # 3 s windows, 500 round trips (~1 minute)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TypedDict

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deploy import lb  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass  # gone: its CPU is lost from the sum (no process exits during a window)
    return total / TICKS


def _machine_busy() -> float:
    """CPU-seconds the whole machine has been busy (all CPUs), from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / TICKS  # minus idle, iowait


def _ns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
    return [int(p) for p in out.stdout.split()]


def _kv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _client_argv(dep: lb.Deployment, *args: str) -> list[str]:
    return ["ip", "netns", "exec", dep.client_ns, sys.executable, __file__, *args]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path)


# ------------------------------------------------------------------------------ throughput


class Throughput(TypedDict):
    """One host count's window: rate, CPU per party (seconds), handshakes per host CPU-second."""

    rate: float
    failed: int
    host_cpu: list[float]
    per_host_done: list[int]
    client_cpu: float
    other_cpu: float
    hs_per_host_cpu: float


def throughput(n_hosts: int, args: argparse.Namespace) -> Throughput:
    """One deployment of ``n_hosts``; the rate and the CPU each party spent in the window."""
    # No host dies here: no health monitor, whose probes would queue behind a saturated host.
    with lb.Deployment(n_hosts, args.workers, health_interval=None) as dep:
        host_pids = [_ns_pids(ns) for ns in dep.host_ns]
        t_start = time.monotonic() + args.warmup
        t_end = t_start + args.seconds
        clients = [
            subprocess.Popen(
                _client_argv(
                    dep,
                    "_churn",
                    dep.address[0],
                    str(dep.address[1]),
                    dep.server_fingerprint,
                    str(dep.client_cert),
                    str(dep.client_key),
                    str(args.concurrency),
                    repr(t_start),
                    repr(t_end),
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(),
            )
            for _ in range(args.clients)
        ]
        time.sleep(max(0.0, t_start - time.monotonic()))
        cpu0 = [_cpu_seconds(p) for p in host_pids], _machine_busy()
        time.sleep(max(0.0, t_end - time.monotonic()))
        cpu1 = [_cpu_seconds(p) for p in host_pids], _machine_busy()
        reports = []
        for proc in clients:
            out, err = proc.communicate(timeout=args.seconds + args.warmup + 30)
            if proc.returncode != 0:
                raise RuntimeError(f"client exited {proc.returncode}: {err[-2000:]}")
            reports.append(_kv(out))
        per_host_done = [dep.stats(i)["handshakes_completed"] for i in range(n_hosts)]
    done = sum(int(r["handshakes_in_window"]) for r in reports)
    host_cpu = [b - a for a, b in zip(cpu0[0], cpu1[0], strict=True)]
    client_cpu = sum(float(r["cpu_in_window"]) for r in reports)
    # Everything else the machine ran meanwhile: the balancer's forwarding, and other users.
    other_cpu = cpu1[1] - cpu0[1] - sum(host_cpu) - client_cpu
    return {
        "rate": done / args.seconds,
        "failed": sum(int(r["failed"]) for r in reports),
        "host_cpu": host_cpu,
        "per_host_done": per_host_done,
        "client_cpu": client_cpu,
        "other_cpu": max(0.0, other_cpu),
        "hs_per_host_cpu": done / max(sum(host_cpu), 1e-9),
    }


def churn_main(argv: list[str]) -> int:
    """``_churn ADDR PORT SERVER_FP CERT KEY CONCURRENCY T_START T_END`` (in the client netns)."""
    import resource

    sys.path.insert(0, str(BENCH_DIR))
    from _server_load import Load
    from _server_load import churn_main as churn

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    addr, port, server_fp, cert, key, conc, t_start, t_end = argv
    load = Load(int(port), server_fp, cert, key, int(conc))
    load.addr = (addr, int(port))
    churn(load, float(t_start), float(t_end))
    return 0


# -------------------------------------------------------------------------------- latency


def latency(args: argparse.Namespace) -> dict[str, float]:
    """Round trips through the balancer and straight to host 1, alternated, in microseconds."""
    with lb.Deployment(1, 1, health_interval=None) as dep:
        direct = (dep.host_addresses[0], lb.PORT)
        proc = subprocess.run(
            _client_argv(
                dep,
                "_latency",
                f"{dep.address[0]}:{dep.address[1]}",
                f"{direct[0]}:{direct[1]}",
                dep.server_fingerprint,
                str(dep.client_cert),
                str(dep.client_key),
                str(args.round_trips),
            ),
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"latency client exited {proc.returncode}: {proc.stderr[-2000:]}")
    return {k: float(v) for k, v in _kv(proc.stdout).items()}


def latency_main(argv: list[str]) -> int:
    """``_latency LB_ADDR:PORT HOST_ADDR:PORT SERVER_FP CERT KEY N`` (in the client netns)."""
    from dtls_ossl import Certificate, DtlsConfiguration
    from dtls_ossl.aio import connect

    via_lb, direct, fp, cert, key, n = argv
    config = DtlsConfiguration(certificate=Certificate.load(cert, key))

    def split(a: str) -> tuple[str, int]:
        host, port = a.rsplit(":", 1)
        return host, int(port)

    async def run() -> dict[str, list[float]]:
        streams = {
            name: await connect(*split(a), config, remote_fingerprints=[fp])
            for name, a in (("lb", via_lb), ("direct", direct))
        }
        samples: dict[str, list[float]] = {"lb": [], "direct": []}
        payload = b"x" * 100
        for i in range(int(n) + 100):  # the first 100 of each warm up
            for name, stream in streams.items():
                t0 = time.perf_counter()
                await stream.send(payload)
                reply = await asyncio.wait_for(stream.recv(), 5.0)
                took = time.perf_counter() - t0
                assert reply == payload
                if i >= 100:
                    samples[name].append(took * 1e6)
        for stream in streams.values():
            await stream.aclose()
        return samples

    samples = asyncio.run(run())
    for name, values in samples.items():
        values.sort()
        print(f"{name}_median={statistics.median(values):.1f}")
        print(f"{name}_p99={values[int(0.99 * (len(values) - 1))]:.1f}")
    return 0


# ----------------------------------------------------------------------------------- main


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_churn":
        return churn_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "_latency":
        return latency_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short windows, fewer round trips")
    p.add_argument("--hosts", default="1,2,3", help="host counts to measure (default 1,2,3)")
    p.add_argument("--workers", type=int, default=1, help="aio.serve workers per host")
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument("--concurrency", type=int, default=32, help="handshakes in flight each")
    p.add_argument("--seconds", type=float, help="window (default 8, --quick 3)")
    p.add_argument("--round-trips", type=int, help="per path (default 3000, --quick 500)")
    args = p.parse_args()
    args.seconds = args.seconds or (3.0 if args.quick else 8.0)
    args.round_trips = args.round_trips or (500 if args.quick else 3000)
    args.warmup = 1.5
    if missing := lb.missing_tools():
        sys.exit(f"loadbalancer.py: missing: {', '.join(missing)}")
    print(
        f"{os.cpu_count()} CPUs; {args.clients} client processes x {args.concurrency} in flight; "
        f"{args.workers} worker(s) per host; nftables balancer; {args.seconds:g} s windows",
        flush=True,
    )
    rows = []
    for n in (int(h) for h in args.hosts.split(",")):
        print(f"... {n} host(s): starting, warm-up {args.warmup:g} s, window", flush=True)
        r = throughput(n, args)
        rows.append((n, r))
        cpu_line = " ".join(f"{c:.2f}" for c in r["host_cpu"])
        print(
            f"... {n} host(s): {r['rate']:.0f} hs/s, host CPU-s [{cpu_line}], "
            f"{r['hs_per_host_cpu']:.0f} hs/host-CPU-s, failed {r['failed']:.0f}",
            flush=True,
        )
    print(f"... latency: {args.round_trips} round trips per path", flush=True)
    lat = latency(args)

    print("\nhosts  hs/s  host CPU-s (each)      hosts' cores  client cores  "
          "other cores  hs/host-CPU-s")  # fmt: skip
    for n, r in rows:
        cpu = r["host_cpu"]
        each = " ".join(f"{c:.2f}" for c in cpu)
        print(
            f"{n:5d} {r['rate']:5.0f}  {each:22s} {sum(cpu) / args.seconds:12.2f} "
            f"{r['client_cpu'] / args.seconds:13.2f} "
            f"{r['other_cpu'] / args.seconds:12.2f}  {r['hs_per_host_cpu']:13.0f}"
        )
    print("\nDTLS echo round trip (100-byte record), microseconds:")
    print("            median     p99")
    print(f"direct    {lat['direct_median']:8.0f} {lat['direct_p99']:8.0f}")
    print(f"via lb    {lat['lb_median']:8.0f} {lat['lb_p99']:8.0f}")
    added_med = lat["lb_median"] - lat["direct_median"]
    added_p99 = lat["lb_p99"] - lat["direct_p99"]
    print(f"added     {added_med:8.0f} {added_p99:8.0f}   (per datagram: half of it, "
          f"{added_med / 2:.0f} / {added_p99 / 2:.0f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
