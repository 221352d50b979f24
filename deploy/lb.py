"""Start and stop N DTLS hosts behind the kernel's UDP load balancer (nftables), in namespaces.

Layout (every address exists only inside namespaces made here; none has a route out)::

    <prefix>-cl  10.99.1.100            clients  ─┐
    <prefix>-lb  10.99.1.1, 10.99.0.2   balancer ─┤ bridge br0 in <prefix>-sw
    <prefix>-h1  10.99.0.11             host 1   ─┤
    <prefix>-hN  10.99.0.1N             host N   ─┘

Each host runs ``deploy/host.py`` (``aio.serve`` with ``workers``) with one certificate and one
cookie secret (a 0600 file) shared by all hosts. The balancer namespace forwards, and its
nftables ruleset (``deploy/balancer.nft.in``) rewrites the destination of each new flow to
10.99.1.1:4444 toward one live host, hashed on the client's address and port; conntrack keeps
the flow there. A :class:`HealthMonitor` probes the hosts and swaps a dead one out.

Usage (root)::

    python deploy/lb.py up --hosts 3 --workers 2   # runs until Ctrl-C, then removes it all
    python deploy/lb.py down                       # remove what dead runs left behind
    python deploy/lb.py down --all                 # remove every deployment, live or not

A run's namespaces are named ``dtlslb-<pid>-<token>-*``: ``down`` (and every ``start``)
removes those whose pid is gone, after killing any process left inside them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PREFIX = "dtlslb"
SUBNET = "10.99.0"  # the hosts' side
CLIENT_SUBNET = "10.99.1"  # the clients' side: hosts reach it only through the balancer
LB_ADDRESS = f"{CLIENT_SUBNET}.1"  # where clients send
LB_HOST_ADDRESS = f"{SUBNET}.2"  # the hosts' gateway
CLIENT_ADDRESS = f"{CLIENT_SUBNET}.100"
CLIENT_DIRECT_ADDRESS = f"{SUBNET}.100"  # the client namespace's address next to the hosts
PORT = 4444
NFT_TABLE = "dtls_lb"
_CLONE_NEWNET = 0x40000000

T = TypeVar("T")


def missing_tools() -> list[str]:
    """List what this machine lacks to run a deployment (empty: ready)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (ip netns needs CAP_SYS_ADMIN)")
    for tool in ("ip", "nft", "conntrack"):
        if shutil.which(tool) is None:
            missing.append(tool)
    return missing


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def _namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _remove_namespace(ns: str) -> None:
    """Kill whatever still runs inside ``ns``, then delete it."""
    pids = _ip("netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", ns, check=False)


def clean_stale(*, everything: bool = False) -> list[str]:
    """Remove the namespaces of runs whose process is gone (or all with ``everything``)."""
    removed = []
    for ns in _namespaces():
        parts = ns.split("-")
        if parts[0] != PREFIX or len(parts) < 4 or not parts[1].isdigit():
            continue
        if not everything:
            try:
                os.kill(int(parts[1]), 0)
                continue  # its run is alive
            except ProcessLookupError:
                pass
        _remove_namespace(ns)
        removed.append(ns)
    return removed


def run_in_netns(ns: str, fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn(*args)`` in a thread that joined network namespace ``ns``; return its result.

    The network namespace is per thread: the sockets ``fn`` creates live in ``ns`` (run a
    whole ``asyncio.run`` inside ``fn``), and the calling thread is never moved.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
            finally:
                os.close(fd)
            result.append(fn(*args))
        except BaseException as exc:  # re-raised in the caller
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{ns}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _in_netns(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=check, timeout=10
    )


class Deployment:
    """N hosts behind an nftables balancer in namespaces; :meth:`start` / :meth:`stop`.

    Also a context manager.

    :param hosts: backend hosts (namespaces ``-h1`` .. ``-hN``).
    :param workers: ``aio.serve`` worker processes per host.
    :param export_srtp: hosts print each peer's SRTP keys (tests only: secret keys).
    :param health_interval: seconds between probes of each host (:class:`HealthMonitor`);
        ``None``: no monitor, a dead host keeps its share of new clients.
    :param health_failures: consecutive failed probes that take a host out.
    """

    def __init__(
        self,
        hosts: int = 3,
        workers: int = 2,
        *,
        export_srtp: bool = False,
        health_interval: float | None = 0.2,
        health_failures: int = 2,
    ) -> None:
        """Name the run; nothing is created before :meth:`start`."""
        self.n_hosts = hosts
        self.workers = workers
        self.export_srtp = export_srtp
        self.health_interval = health_interval
        self.health_failures = health_failures
        self.monitor: HealthMonitor | None = None
        self._balancer_lock = threading.Lock()
        self.prefix = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(2)}"
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.lb_ns = f"{self.prefix}-lb"
        self.client_ns = f"{self.prefix}-cl"
        self.host_ns = [f"{self.prefix}-h{i + 1}" for i in range(hosts)]
        self.host_addresses = [f"{SUBNET}.{11 + i}" for i in range(hosts)]
        self.address = (LB_ADDRESS, PORT)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.down: set[int] = set()
        self.server_fingerprint = ""
        self.client_cert = self.run_dir / "client.pem"
        self.client_key = self.run_dir / "client.key"

    # -------------------------------------------------------------------------- network

    def _network(self) -> None:
        sw = f"{self.prefix}-sw"
        members = [
            ("cl", self.client_ns, [CLIENT_ADDRESS, CLIENT_DIRECT_ADDRESS]),
            ("lb", self.lb_ns, [LB_ADDRESS, LB_HOST_ADDRESS]),
        ]
        members += [
            (f"h{i + 1}", ns, [addr])
            for i, (ns, addr) in enumerate(zip(self.host_ns, self.host_addresses, strict=True))
        ]
        for ns in [sw] + [m[1] for m in members]:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "link", "set", "br0", "up")
        for port, ns, addresses in members:
            # Both ends are made inside their namespaces: nothing appears in the caller's.
            _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", port, "netns", sw)
            _ip("-n", sw, "link", "set", port, "master", "br0", "up")
            for addr in addresses:
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        for ns in self.host_ns:
            # Replies to clients go back through the balancer, which un-NATs them.
            _ip("-n", ns, "route", "add", "default", "via", LB_HOST_ADDRESS)
        # The balancer forwards between its two subnets, on one link: no ICMP redirects (they
        # would teach a host to answer the client directly, from the wrong source address).
        for key in ("ip_forward=1", "conf.all.send_redirects=0", "conf.eth0.send_redirects=0"):
            _in_netns(self.lb_ns, "sysctl", "-q", "-w", f"net.ipv4.{key}")

    def _balancer_rule(self) -> str:
        live = [a for i, a in enumerate(self.host_addresses) if i not in self.down]
        match = f"ip daddr {LB_ADDRESS} udp dport {PORT}"
        if not live:
            return f"{match} counter drop"
        targets = ", ".join(f"{k} : {a}" for k, a in enumerate(live))
        return (
            f"{match} counter dnat to jhash ip saddr . udp sport mod {len(live)} "
            f"map {{ {targets} }}"
        )

    def _nft(self, text: str) -> None:
        path = self.run_dir / "balancer.nft"
        path.write_text(text)
        done = _in_netns(self.lb_ns, "nft", "-f", str(path), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"nft -f {path}: {done.stderr.strip()}")

    def _start_balancer(self) -> None:
        template = string.Template((HERE / "balancer.nft.in").read_text())
        self._nft(template.substitute(table=NFT_TABLE, rule=self._balancer_rule()))

    def balancer_ruleset(self) -> str:
        """Return the balancer's live nftables ruleset (``nft list ruleset``)."""
        return _in_netns(self.lb_ns, "nft", "list", "ruleset").stdout

    def balanced_flows(self, host: int | None = None) -> int:
        """Return how many client flows the balancer tracks now (to host ``host`` only: 0-based)."""
        argv = ["conntrack", "-L", "-p", "udp", "--orig-dst", LB_ADDRESS]
        if host is not None:
            argv += ["--reply-src", self.host_addresses[host]]
        out = _in_netns(self.lb_ns, *argv, check=False).stdout
        return sum(1 for line in out.splitlines() if line.startswith("udp"))

    # ----------------------------------------------------------------------- processes

    def _spawn(self, name: str, ns: str, argv: list[str], **env: str) -> None:
        log = (self.run_dir / f"{name}.log").open("ab")  # O_APPEND: a restart adds to it
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        self.processes[name] = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=path, **env),
            start_new_session=True,  # one process group: the host and its workers
        )
        log.close()

    def _secrets(self) -> Path:
        from dtls_ossl import Certificate

        server = Certificate.generate()
        cert, key = server.to_pem()
        (self.run_dir / "server.pem").write_bytes(cert)
        (self.run_dir / "server.key").write_bytes(key)
        self.server_fingerprint = str(server.fingerprint())
        client = Certificate.generate()
        cert, key = client.to_pem()
        self.client_cert.write_bytes(cert)
        self.client_key.write_bytes(key)
        self.client_fingerprint = str(client.fingerprint())
        secret = self.run_dir / "cookie.secret"
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        return secret

    def _start_hosts(self, secret: Path) -> None:
        for i, _ns in enumerate(self.host_ns):
            self.start_host(i, secret)

    def start_host(self, i: int, secret: Path | None = None) -> None:
        """Start host ``i`` (0-based), e.g. again after :meth:`kill_host`.

        The health monitor puts it back in the balancer once it answers.
        """
        name = f"h{i + 1}"
        argv = [
            sys.executable, str(HERE / "host.py"), "--name", name,
            "--host", self.host_addresses[i], "--port", str(PORT),
            "--cert", str(self.run_dir / "server.pem"), "--key", str(self.run_dir / "server.key"),
            "--client-fingerprint", self.client_fingerprint,
            "--cookie-secret-file", str(secret or self.run_dir / "cookie.secret"),
            "--workers", str(self.workers), "--stats", str(self.stats_path(i)),
        ]  # fmt: skip
        if self.export_srtp:
            argv.append("--export-srtp")
        self.stats_path(i).unlink(missing_ok=True)
        self._spawn(name, self.host_ns[i], argv)

    def stats_path(self, i: int) -> Path:
        """Return the path of the JSON counters host ``i`` rewrites every 0.25 s."""
        return self.run_dir / f"h{i + 1}.stats.json"

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    log = (self.run_dir / f"{name}.log").read_text(errors="replace")
                    raise RuntimeError(f"{name} exited ({proc.returncode}): {log[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {timeout} s")
            time.sleep(0.05)

    def wait_hosts(self, timeout: float = 20.0) -> None:
        """Wait until every running host has written its counters."""
        running = [i for i in range(self.n_hosts) if self.processes[f"h{i + 1}"].poll() is None]
        self._wait(lambda: all(self.stats_path(i).exists() for i in running), "hosts", timeout)

    def start(self) -> Deployment:
        """Create the namespaces, start the hosts, then the balancer; wait until all are ready."""
        clean_stale()
        try:
            self._network()
            self._start_hosts(self._secrets())
            self.wait_hosts()
            self._start_balancer()
            if self.health_interval is not None:
                self.monitor = HealthMonitor(self, self.health_interval, self.health_failures)
                self.monitor.start()
        except BaseException:
            self.stop()
            raise
        return self

    def kill_host(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Kill host ``i``'s processes (a crash with SIGKILL: no close_notify is sent)."""
        proc = self.processes[f"h{i + 1}"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(10)

    def mark_down(self, i: int, down: bool = True, *, forget_flows: bool = True) -> None:
        """Take host ``i`` out of the balancer's hash (``down=False``: back in).

        One nft transaction replaces the rule: flows that conntrack already tracks keep their
        host (no datagram of a surviving peer is lost or delayed), new flows hash over the
        live hosts. With ``forget_flows`` taking a host out also deletes the flows toward it,
        or a new client whose source port an old client of the dead host used (conntrack
        keeps a flow 30-120 s) would still reach the dead host; the dead host's own peers
        then reach a live host, which drops their records (unknown peer) as it would anyway.
        """
        with self._balancer_lock:
            if (i in self.down) == down:
                return
            (self.down.add if down else self.down.discard)(i)
            self._nft(
                f"flush chain ip {NFT_TABLE} prerouting\n"
                f"add rule ip {NFT_TABLE} prerouting {self._balancer_rule()}\n"
            )
            if down and forget_flows:
                # Exit status 1 with "0 flow entries have been deleted" is no failure.
                _in_netns(self.lb_ns, "conntrack", "-D", "-p", "udp",
                          "--reply-src", self.host_addresses[i], check=False)  # fmt: skip

    def stats(self, i: int) -> dict[str, Any]:
        """Host ``i``'s last counters (ServerStats fields, summed over its workers)."""
        import json

        result: dict[str, Any] = json.loads(self.stats_path(i).read_text())
        return result

    def stop(self) -> None:
        """Stop everything and remove the namespaces (idempotent; never raises)."""
        if self.monitor is not None:
            self.monitor.stop()
        for _name, proc in self.processes.items():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for ns in _namespaces():
            if ns.startswith(self.prefix + "-"):
                _remove_namespace(ns)
        shutil.rmtree(self.run_dir, ignore_errors=True)  # the secret and the keys with it

    def __enter__(self) -> Deployment:
        """Start; see :meth:`start`."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop; see :meth:`stop`."""
        self.stop()


class HealthMonitor:
    """Probe every host from the balancer's namespace; take a dead host out (or put it back).

    A probe is one DTLS ClientHello sent straight to the host's address (local traffic does
    not pass the balancer's DNAT): a live host answers a HelloVerifyRequest and keeps no state
    (the cookie exchange); a dead one answers ICMP "port unreachable" (the probe fails at
    once) or nothing (it fails after ``timeout``). After ``failures`` failed probes in a row
    the host is marked down (:meth:`Deployment.mark_down`); one answer brings it back.
    Transitions are appended to :attr:`events` and to ``monitor.log`` in the run directory.
    """

    def __init__(
        self, dep: Deployment, interval: float = 0.2, failures: int = 2, timeout: float = 0.5
    ) -> None:
        """Monitor ``dep``'s hosts every ``interval`` seconds (not started yet)."""
        self.dep = dep
        self.interval = interval
        self.failures = failures
        # Longer than the interval: a host slowed by load must not look dead.
        self.timeout = timeout
        self.events: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start probing in a thread that joined the balancer's namespace."""
        self._hello = _client_hello()
        self._thread = threading.Thread(
            target=run_in_netns, args=(self.dep.lb_ns, self._run), name="lb-health", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop probing (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def probe(self, i: int) -> bool:
        """Return whether host ``i`` answered a ClientHello within the timeout."""
        return self._probe(i) == "ok"

    def _probe(self, i: int) -> str:
        """``"ok"``, ``"unreachable"`` (an ICMP error: nothing listens) or ``"timeout"``."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect((self.dep.host_addresses[i], PORT))
                sock.send(self._hello)
                return "ok" if sock.recv(2048) else "timeout"
            except TimeoutError:
                return "timeout"
            except OSError:  # ECONNREFUSED, EHOSTUNREACH: the ICMP error of a dead host
                return "unreachable"

    def _run(self) -> None:
        misses = [0] * self.dep.n_hosts
        log = self.dep.run_dir / "monitor.log"
        while not self._stop.wait(self.interval):
            for i in range(self.dep.n_hosts):
                result = self._probe(i)
                ok = result == "ok"
                misses[i] = 0 if ok else misses[i] + 1
                down = i in self.dep.down
                if not ok and result == "timeout" and len(self.dep.down) == self.dep.n_hosts - 1:
                    # Every other host is out: a slow last host serves better than none.
                    continue
                if (ok and down) or (not down and misses[i] >= self.failures):
                    # Only a host known dead loses its flows: one that is merely slow to
                    # answer (overloaded, a lost probe) keeps its peers, and gets no new ones.
                    self.dep.mark_down(i, not ok, forget_flows=result == "unreachable")
                    state = "up" if ok else f"down ({result})"
                    self.events.append((time.monotonic(), i, state))
                    with log.open("a") as f:
                        f.write(f"{time.time():.3f} h{i + 1} {state}\n")


def _client_hello() -> bytes:
    """One DTLS ClientHello (any certificate: a host answers it before it checks any)."""
    from dtls_ossl import Certificate, DtlsConfiguration, DtlsConnection, Role

    config = DtlsConfiguration(certificate=Certificate.generate())
    conn = DtlsConnection(config, role=Role.CLIENT, insecure_skip_fingerprint_check=True)
    conn.connect(time.monotonic())
    return conn.datagrams_to_send(time.monotonic())[0]


def main(argv: list[str] | None = None) -> int:
    """``up`` (foreground until Ctrl-C) or ``down``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a deployment; Ctrl-C stops and removes it")
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument("--workers", type=int, default=2)
    down = sub.add_parser("down", help="remove deployments whose run has died")
    down.add_argument("--all", action="store_true", help="also those still running")
    args = p.parse_args(argv)
    if missing := missing_tools():
        sys.exit(f"lb.py: missing: {', '.join(missing)}")
    if args.command == "down":
        for ns in clean_stale(everything=args.all):
            print(f"removed {ns}")
        return 0
    dep = Deployment(args.hosts, args.workers)
    with dep:
        print(f"balancer on udp {LB_ADDRESS}:{PORT} -> hosts {', '.join(dep.host_addresses)}")
        print(f"run directory (logs, balancer.nft, monitor.log, certificates): {dep.run_dir}")
        print(f"ruleset: ip netns exec {dep.lb_ns} nft list ruleset")
        print(
            f"try: ip netns exec {dep.client_ns} dtls-ossl client {LB_ADDRESS} {PORT} "
            f"--fingerprint '{dep.server_fingerprint}' --cert {dep.client_cert} "
            f"--key {dep.client_key}"
        )
        print("Ctrl-C stops and removes everything", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            # A second Ctrl-C (or a signal sent to the process and to its group, as
            # timeout(1) does) must not cut the clean-up short and leave namespaces behind.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
