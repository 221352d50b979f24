"""Handshakes/s of a dtls_ossl.aio server over loopback UDP, and memory per established peer.

Throughput: ``serve()`` runs in its own process (benchmarks/_server_load.py ``server``) with
cookie exchange on (the default), ECDSA P-256 certificates on both sides, X25519, use_srtp,
client fingerprints checked. Clients run in OTHER processes (2 by default), each a loop of
sans-IO DtlsConnection clients with one UDP socket per client and 32 handshakes in flight;
each client sends close_notify once established, and a new one starts. The rate is the number
of handshakes completed inside a fixed window (after a warm-up), counted with CLOCK_MONOTONIC
timestamps shared by all processes. The same is done with ``serve(workers=2)``. The reference is
the core benchmark's in-memory handshake rate (benchmarks/_dtls_ossl_peer.py ``handshake``: ONE
process doing BOTH sides of each handshake, no sockets, no cookies) measured in the same run.

Every run also reports the CPU each party used during the window, in cores: the server
process(es) from /proc/PID/stat, the clients from their own process_time(), and everything else
on the machine (/proc/stat busy time minus ours). On a machine with few cores the clients
compete with the server for CPU: read the raw rate together with the CPU columns.

The table also gives the server's CPU per handshake (microseconds of server CPU per handshake
completed, against the in-memory pair's microseconds for BOTH sides).

Memory: one server process keeps N established peers (10,000; clients keep their sockets open
and stay quiet, ``idle_timeout=None``); the figure is the server's RSS growth divided by N,
after gc, compared with the C baseline's ``rss N`` (OpenSSL alone, server side, same N) and,
for context, the in-memory per-connection figures of the core benchmark and pyOpenSSL. With the
peers held, the server's CPU at rest is measured for a few seconds: idle peers must cost none.

pyOpenSSL has no DTLS server loop or event loop integration, so it has no UDP row; its
in-memory rows are shown for context.

    python benchmarks/server.py            # full run, 3 rounds, 10,000 peers
    python benchmarks/server.py --quick    # smoke run, under a minute, 2,000 peers

Targets (issue 3): one server process >= 0.70 x the in-memory handshake rate; workers=2 >= 1.7 x
one worker; 10,000 established peers in one process, each within 2 KiB of C's RSS figure.
"""

from __future__ import annotations

import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    BENCH_DIR,
    DTLS_OSSL,
    PYOPENSSL_HERE,
    ROOT,
    BenchError,
    C,
    Impl,
    check,
    discover,
    parser,
    print_machine,
    run_kv,
)

LOAD = str(BENCH_DIR / "_server_load.py")
START_TIMEOUT = 60.0
CLIENT_START = 1.5  # seconds for client interpreters to start before the warm-up begins
TICKS = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


# ------------------------------------------------------------------------------ processes


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path)


class Child:
    """A subprocess whose stdout lines and stderr are read by threads (no pipe deadlock)."""

    def __init__(self, argv: list[str]) -> None:
        self.name = argv[2] if len(argv) > 2 else argv[0]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=ROOT,
        )
        self.pid = self.proc.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump_out, daemon=True),
            threading.Thread(target=self._pump_err, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        self.err.extend(self.proc.stderr)

    def readline(self, timeout: float) -> str:
        """The next stdout line; BenchError on timeout or exit (with its last stderr line)."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"no answer from the {self.name} process in {timeout:.0f} s") from None
        if line is None:
            self.lines.put(None)
            self.proc.wait()
            for t in self._threads:
                t.join(5)
            last = [ln.strip() for ln in self.err if ln.strip()]
            raise BenchError(last[-1] if last else f"{self.name} exited ({self.proc.returncode})")
        return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def results(self, timeout: float) -> dict[str, str]:
        """Every key=value line until the process exits (bounded)."""
        out: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while True:
            try:
                out.update(_kv(self.readline(max(0.1, deadline - time.monotonic()))))
            except BenchError:
                if self.proc.poll() is None:
                    raise
                if self.proc.returncode != 0:
                    raise
                return out

    def stop(self, timeout: float = 15) -> None:
        """Close stdin (the processes' signal to finish), wait, kill if needed."""
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                self.proc.stdin.close()
            self.proc.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _kv(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def _machine_busy() -> tuple[float, float]:
    """(busy seconds, total seconds) summed over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    total = sum(values[:8])
    return (total - idle) / TICKS, total / TICKS


class Server(Child):
    """A _server_load.py ``server`` process."""

    def __init__(self, workers: int, certs: Certs, idle: float) -> None:
        super().__init__(
            [sys.executable, LOAD, "server", str(workers), certs.server_cert, certs.server_key,
             certs.client_fp, str(idle)]
        )  # fmt: skip
        try:
            self.port = int(_kv(self.readline(START_TIMEOUT))["port"])
            pids = _kv(self.readline(START_TIMEOUT))["pids"]
        except (BenchError, KeyError, ValueError):
            self.stop()
            raise
        self.pids = [self.pid, *(int(p) for p in pids.split(",") if int(p) != self.pid)]

    def ask(self, command: str) -> dict[str, str]:
        self.send(command)
        return _kv(self.readline(30))


def _client(mode: str, port: int, certs: Certs, *args: object) -> Child:
    return Child(
        [sys.executable, LOAD, mode, str(port), certs.server_fp, certs.client_cert,
         certs.client_key, *(str(a) for a in args)]
    )  # fmt: skip


@dataclass
class Certs:
    server_cert: str
    server_key: str
    server_fp: str
    client_cert: str
    client_key: str
    client_fp: str


def make_certs(directory: str) -> Certs:
    sys.path.insert(1, str(ROOT))
    from dtls_ossl import Certificate

    paths: dict[str, str] = {}
    for name in ("server", "client"):
        cert = Certificate.generate()
        cert_pem, key_pem = cert.to_pem()
        for suffix, data in (("cert", cert_pem), ("key", key_pem)):
            path = os.path.join(directory, f"{name}.{suffix}.pem")
            Path(path).write_bytes(data)
            paths[f"{name}_{suffix}"] = path
        paths[f"{name}_fp"] = str(cert.fingerprint("sha-256"))
    return Certs(**paths)


# ----------------------------------------------------------------------------- throughput


@dataclass
class Run:
    rate: float
    server_cores: float
    client_cores: float
    other_cores: float
    failed: int
    hvr_per_hs: float


def udp_run(workers: int, certs: Certs, procs: int, conc: int, warmup: float, window: float) -> Run:
    """One throughput run against ``serve(workers=...)``."""
    server = Server(workers, certs, idle=300.0)
    clients: list[Child] = []
    try:
        t_start = time.monotonic() + CLIENT_START + warmup
        t_end = t_start + window
        clients = [
            _client("churn", server.port, certs, conc, f"{t_start:.6f}", f"{t_end:.6f}")
            for _ in range(procs)
        ]
        time.sleep(max(0.0, t_start - time.monotonic()))
        cpu0, (busy0, _) = _cpu_seconds(server.pids), _machine_busy()
        time.sleep(max(0.0, t_end - time.monotonic()))
        cpu1, (busy1, _) = _cpu_seconds(server.pids), _machine_busy()
        results = [c.results(window + warmup + 60) for c in clients]
        stats = server.ask("stats")
    finally:
        for c in clients:
            c.stop(5)
        server.stop()
    done = sum(int(r["handshakes_in_window"]) for r in results)
    client_cpu = sum(float(r["cpu_in_window"]) for r in results)
    server_cpu = cpu1 - cpu0
    other = max(0.0, (busy1 - busy0) - server_cpu - client_cpu)
    completed = int(stats.get("handshakes_completed", "0")) or 1
    return Run(
        rate=done / window,
        server_cores=server_cpu / window,
        client_cores=client_cpu / window,
        other_cores=other / window,
        failed=sum(int(r["failed"]) for r in results) + int(stats.get("handshakes_failed", "0")),
        hvr_per_hs=int(stats.get("hello_verify_sent", "0")) / completed,
    )


@dataclass
class Row:
    name: str
    runs: list[Run] = field(default_factory=list)
    error: str = ""

    def med(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs]
        return statistics.median(values) if values else None


def inmemory_rate(impl: Impl, n: int) -> float:
    if impl.argv is None:
        raise BenchError(impl.unavailable)
    return float(run_kv([*impl.argv, "handshake", str(n)])["handshakes_per_s"])


# --------------------------------------------------------------------------------- memory


def memory_run(certs: Certs, n: int, procs: int, conc: int, rest: float) -> dict[str, float]:
    """RSS growth per established peer of one server process holding ``n`` peers.

    Also the CPU the server uses at rest, ``rest`` seconds with every peer established and
    quiet (``idle_cores``): an idle peer must cost nothing (no per-peer polling or timers).
    """
    server = Server(1, certs, idle=0.0)
    holders: list[Child] = []
    try:
        # Warm-up (lazy tables, free lists), as the C baseline's 20 handshakes; every one of
        # these clients sends close_notify and in-flight ones finish, so nothing stays.
        now = time.monotonic()
        warm = _client("churn", server.port, certs, 8, f"{now:.6f}", f"{now + CLIENT_START:.6f}")
        warm.results(60)
        before = server.ask("rss")
        if int(before["active"]) != 0:
            raise BenchError(f"{before['active']} peers left after the warm-up")
        t0 = time.monotonic()
        share = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        holders = [_client("hold", server.port, certs, conc, k) for k in share]
        established = 0
        for h in holders:
            established += int(_kv(h.readline(600)).get("established", "0"))
            h.readline(10)  # failed=
        fill = time.monotonic() - t0
        after = server.ask("rss")
        time.sleep(0.5)  # the last answers and acknowledgements settle
        cpu0, t_rest = _cpu_seconds(server.pids), time.monotonic()
        time.sleep(rest)
        idle_cores = (_cpu_seconds(server.pids) - cpu0) / (time.monotonic() - t_rest)
    finally:
        for h in holders:
            h.stop(10)
        server.stop()
    active = int(after["active"])
    growth = int(after["rss"]) - int(before["rss"])
    return {
        "established": float(established),
        "active": float(active),
        "bytes_per_peer": growth / active if active else float("nan"),
        "heap_per_peer": (int(after["heap"]) - int(before["heap"])) / active
        if active and int(after["heap"]) >= 0
        else float("nan"),
        "fill_seconds": fill,
        "idle_cores": idle_cores,
    }


# ----------------------------------------------------------------------------------- main


def _fmt(v: float | None, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def print_rows(title: str, heads: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows if len(r) > i)) for i, h in enumerate(heads)]
    print(title)
    print("  " + "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip())
    for r in rows:
        if len(r) == len(heads):
            print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        else:
            print(f"  {r[0].ljust(widths[0])}  {' '.join(r[1:])}")
    print()


def cores(row: Row) -> str:
    """Where the CPU went during a row's windows, in cores of the machine."""
    got = [row.med(k) or 0.0 for k in ("server_cores", "client_cores", "other_cores")]
    return f"cores of {NCPU}: server {got[0]:.2f}, clients {got[1]:.2f}, other {got[2]:.2f}"


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--window", type=float, help="seconds counted per UDP run (8; quick 3)")
    p.add_argument("--warmup", type=float, help="seconds before the window (2; quick 1)")
    p.add_argument("--client-procs", type=int, default=2, help="client processes (2)")
    p.add_argument("--concurrency", type=int, default=32, help="handshakes in flight per process")
    p.add_argument("--handshakes", type=int, help="in-memory handshakes per run (500; quick 100)")
    p.add_argument("--peers", type=int, help="established peers held (10000; quick 2000)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--rest", type=float, help="seconds of CPU at rest measured (5; quick 2)")
    args = p.parse_args()
    quick = bool(args.quick)
    nrounds = args.rounds or (1 if quick else 3)
    window = args.window or (3.0 if quick else 8.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    n_inmem = args.handshakes or (100 if quick else 500)
    peers = args.peers or (2000 if quick else 10000)
    rest = args.rest or (2.0 if quick else 5.0)
    procs, conc = args.client_procs, args.concurrency
    t_begin = time.monotonic()

    print_machine()
    impls = {impl.name: impl for impl in discover()}
    tmp = tempfile.TemporaryDirectory(prefix="dtls-bench-")
    certs = make_certs(tmp.name)

    inmem = {name: Row(name) for name in (DTLS_OSSL, C, PYOPENSSL_HERE)}
    udp = {1: Row("serve(), 1 process"), 2: Row("serve(workers=2)")}
    if not args.skip_throughput:
        print(
            f"Throughput: {nrounds} rounds; UDP runs: {procs} client processes x {conc} in "
            f"flight, {warmup:g} s warm-up, {window:g} s window",
            file=sys.stderr,
        )
        tasks: list[tuple[str, object]] = [("inmem", n) for n in inmem] + [("udp", 1), ("udp", 2)]
        for r in range(nrounds):
            shift = r % len(tasks)
            t0 = time.perf_counter()
            for kind, key in tasks[shift:] + tasks[:shift]:
                if kind == "inmem":
                    row = inmem[str(key)]
                    if row.error:
                        continue
                    try:
                        measured = inmemory_rate(impls[str(key)], n_inmem)
                        row.runs.append(Run(measured, 1.0, 0.0, 0.0, 0, 0.0))
                    except BenchError as exc:
                        row.error = str(exc)
                else:
                    row = udp[int(str(key))]
                    if row.error:
                        continue
                    try:
                        row.runs.append(udp_run(int(str(key)), certs, procs, conc, warmup, window))
                    except BenchError as exc:
                        row.error = str(exc)
            print(f"  round {r + 1}/{nrounds} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)

        ref = inmem[DTLS_OSSL].med("rate")
        heads = ["setup", "handshakes/s", "x in-memory", "server cores", "client cores",
                 "other cores", "hs per server CPU-s", "server CPU us/hs", "failed",
                 "HVR/hs"]  # fmt: skip
        rows: list[list[str]] = []
        for row in inmem.values():
            rate = row.med("rate")
            if rate is None:
                rows.append([f"in-memory pair, {row.name}", row.error or "no result"])
                continue
            x = f"{rate / ref:.2f}" if ref else ""
            rows.append([f"in-memory pair, {row.name}", _fmt(rate), x, "1 (both sides)",
                         "-", "-", _fmt(rate), f"{1e6 / rate:,.0f} (pair)", "-", "-"])  # fmt: skip
        for row in udp.values():
            rate = row.med("rate")
            if rate is None:
                rows.append([f"UDP, {row.name}", row.error or "no result"])
                continue
            srv = row.med("server_cores") or 0.0
            per_cpu = statistics.median(r.rate / r.server_cores for r in row.runs if r.server_cores)
            rows.append([
                f"UDP, {row.name}",
                _fmt(rate),
                f"{rate / ref:.2f}" if ref else "",
                f"{srv:.2f}",
                f"{row.med('client_cores') or 0:.2f}",
                f"{row.med('other_cores') or 0:.2f}",
                _fmt(per_cpu),
                f"{1e6 / per_cpu:,.0f}" if per_cpu else "",
                str(sum(r.failed for r in row.runs)),
                f"{row.med('hvr_per_hs') or 0:.2f}",
            ])  # fmt: skip
        print_rows(
            f"DTLS 1.2 handshakes/s (ECDSA P-256 both sides, X25519, use_srtp; median of "
            f"{nrounds}). UDP: loopback, cookie exchange on, {procs} client processes x {conc} "
            f"in flight, {window:g} s window. pyOpenSSL: no DTLS server loop, in-memory only.",
            heads,
            rows,
        )
        print(
            f"  Note: this machine has {NCPU} CPUs, shared by the server, its clients and "
            "anything else running ('other cores'). A client handshake costs about as much CPU "
            "as a server one, so clients need roughly one core per server core: with 2 CPUs one "
            "server process can get about one core, and workers=2 cannot get two. 'hs per "
            "server CPU-s' is the rate per core the server(s) actually got.\n"
        )

    mem_runs: list[dict[str, float]] = []
    mem_rows: dict[str, tuple[str, float]] = {}  # label -> (measure, bytes per peer)
    mem_err: dict[str, str] = {}
    ours_rss, ours_heap = "dtls_ossl serve(), RSS growth", "dtls_ossl serve(), malloc in use"
    c_rss_label, c_heap_label = "C, RSS growth", "C, OpenSSL's live heap allocations"
    if not args.skip_memory:
        print(
            f"Memory: {peers} established peers held by one server process, {nrounds} rounds",
            file=sys.stderr,
        )
        for _ in range(nrounds):
            try:
                mem_runs.append(memory_run(certs, peers, procs, conc, rest))
            except BenchError as exc:
                mem_err[ours_rss] = str(exc)
                break
        if mem_runs:
            mem_rows[ours_rss] = ("rss", statistics.median(m["bytes_per_peer"] for m in mem_runs))
            mem_rows[ours_heap] = ("heap", statistics.median(m["heap_per_peer"] for m in mem_runs))
        context = min(peers, 1000 if quick else 2000)
        for label, impl, mode, key, n, kind in (
            (c_rss_label, impls[C], "rss", "rss_bytes_per_conn", peers, "rss"),
            (c_heap_label, impls[C], "memory", "bytes_per_conn", peers, "heap"),
            ("dtls_ossl in-memory (core benchmark), RSS", impls[DTLS_OSSL], "memory",
             "rss_bytes_per_conn", context, "rss"),
            (f"{PYOPENSSL_HERE} in-memory, RSS", impls[PYOPENSSL_HERE], "memory",
             "rss_bytes_per_conn", context, "rss"),
        ):  # fmt: skip
            if n != peers:
                label = f"{label} (N={n:,})"
            if impl.argv is None:
                mem_err[label] = impl.unavailable
                continue
            try:
                mem_rows[label] = (kind, float(run_kv([*impl.argv, mode, str(n)])[key]))
            except (BenchError, KeyError, ValueError) as exc:
                mem_err[label] = str(exc) or "no result"
        c_ref = {kind: v for label, (kind, v) in mem_rows.items() if label.startswith("C, ")}
        rows = []
        for label, (kind, v) in mem_rows.items():
            base = c_ref.get(kind)
            diff = "" if base is None or label.startswith("C, ") else f"{(v - base) / 1024:+.2f}"
            rows.append([label, f"{v:,.0f}", f"{v / 1024:.1f}", diff])
        rows += [[label, err] for label, err in mem_err.items()]
        extra = ""
        if mem_runs:
            m = mem_runs[-1]
            each = ", ".join(f"{r['bytes_per_peer'] / 1024:.1f}" for r in mem_runs)
            extra = (
                f" Server: {int(m['active']):,} established peers, filled in "
                f"{m['fill_seconds']:.1f} s ({m['established'] / m['fill_seconds']:,.0f} "
                f"handshakes/s while holding); RSS KiB/peer per round: {each}."
            )
        print_rows(
            f"Memory per established server-side connection, N={peers:,} (RSS growth / N after "
            "gc, median of rounds; 'malloc in use' is glibc mallinfo2, comparable with C's live "
            "heap allocations, and excludes small Python objects, which RSS includes). The "
            "server's RSS depends on how handshakes interleave (which pages get touched), the "
            f"malloc figure does not.{extra}",
            ["what", "bytes/peer", "KiB/peer", "KiB vs C (same measure)"],
            rows,
        )

    print("Targets:")
    if not args.skip_throughput:
        ref = inmem[DTLS_OSSL].med("rate")
        one, two = udp[1].med("rate"), udp[2].med("rate")
        r1 = one / ref if one is not None and ref else None
        check(
            "one server process >= 0.70 x the in-memory handshake rate",
            r1,
            lambda v: v >= 0.70,
            f"{_fmt(one)} / {_fmt(ref)} = {r1 or 0:.2f} ({cores(udp[1])})",
        )
        r2 = two / one if two is not None and one else None
        check(
            "workers=2 >= 1.7 x one worker (raw, on this machine)",
            r2,
            lambda v: v >= 1.7,
            f"{_fmt(two)} / {_fmt(one)} = {r2 or 0:.2f} (workers=2: {cores(udp[2])})",
        )
        if udp[1].runs and ref:
            pc = statistics.median(r.rate / r.server_cores for r in udp[1].runs if r.server_cores)
            print(
                f"         informational: server CPU per handshake completed by serve() "
                f"{1e6 / pc:,.0f} us (one process; cookie exchange, sockets, asyncio) vs "
                f"{1e6 / ref:,.0f} us per in-memory pair (both sides, one process)"
            )
        if udp[1].runs and udp[2].runs:
            pc1 = statistics.median(r.rate / r.server_cores for r in udp[1].runs if r.server_cores)
            pc2 = statistics.median(r.rate / r.server_cores for r in udp[2].runs if r.server_cores)
            print(
                f"         informational: handshakes per server CPU-second {pc1:,.0f} (1 "
                f"process) vs {pc2:,.0f} (workers=2) = {pc2 / pc1:.2f}; workers=2 needs 2 free "
                f"cores for the servers plus about 2 for the clients to show 1.7 x"
            )
    if not args.skip_memory:
        c_rss = mem_rows.get(c_rss_label, ("", None))[1]
        ours = mem_rows.get(ours_rss, ("", None))[1]
        held = min((int(m["active"]) for m in mem_runs), default=0)
        delta = ours - c_rss if ours is not None and c_rss is not None else None
        label = f"{peers:,} established peers in one process, each within 2 KiB of C (RSS)"
        if peers != 10000:
            label += " [target is for 10,000]"
        check(
            label,
            delta if held == peers or delta is None else float("inf"),
            lambda v: v <= 2048,
            f"{held:,} held, {(ours or 0) / 1024:.1f} KiB vs {(c_rss or 0) / 1024:.1f} KiB = "
            f"{(delta or 0) / 1024:+.1f} KiB",
        )
        if mem_runs:
            idle = statistics.median(m["idle_cores"] for m in mem_runs)
            check(
                f"CPU at rest with {held:,} established idle peers < 1% of a core",
                idle,
                lambda v: v < 0.01,
                f"{idle * 1000:.2f} ms of CPU per second ({idle * 1e9 / max(held, 1):,.1f} ns/s "
                f"per peer, {rest:g} s measured)",
            )
        heap, c_heap = (
            mem_rows.get(ours_heap, ("", None))[1],
            mem_rows.get(c_heap_label, ("", None))[1],
        )
        if heap is not None and c_heap is not None:
            print(
                f"         informational: malloc in use {heap / 1024:.1f} KiB/peer vs C's live "
                f"allocations {c_heap / 1024:.1f} KiB = {(heap - c_heap) / 1024:+.2f} KiB"
            )
    print(f"\n({time.monotonic() - t_begin:.0f} s)", file=sys.stderr)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
