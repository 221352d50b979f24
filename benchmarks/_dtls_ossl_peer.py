"""The benchmark work done with dtls_ossl: the same as the C baseline and _pyopenssl_peer.py.

The three functions the benchmarks call are marked below: ``run_dtls_ossl_handshakes``,
``run_dtls_ossl_records`` (per-datagram or batch API) and ``dtls_ossl_bytes_per_conn``. They are
written against the public API; if a name changes in the library, this is the one file to edit.

Runs as a script too, printing ``key=value`` lines like the other peers::

    python benchmarks/_dtls_ossl_peer.py handshake N
    python benchmarks/_dtls_ossl_peer.py records N SIZE
    python benchmarks/_dtls_ossl_peer.py records-batch N SIZE [BATCH]
    python benchmarks/_dtls_ossl_peer.py memory N
    python benchmarks/_dtls_ossl_peer.py config
    python benchmarks/_dtls_ossl_peer.py serve handshake
    python benchmarks/_dtls_ossl_peer.py serve records SIZE
    python benchmarks/_dtls_ossl_peer.py serve records-batch SIZE [BATCH]

``config`` prints what the benchmark's configuration makes the library set on its ``SSL_CTX``
(options, session cache mode, verify mode, versions, effective ciphers, groups, SRTP profiles,
MTU): benchmarks/_common.py passes exactly that to the C baseline. ``handshake`` and ``records``
end with ``client.*``/``server.*`` lines: what each side is configured with and negotiated, read
from the library's own SSL objects by benchmarks/c/dtls_probe.c (the code that reports for C).

``serve`` is the long-lived worker benchmarks/_common.py drives chunk by chunk, with the same
line protocol as the C baseline's serve mode: setup once (certificates, configurations; for
records an established pair and a warm-up), ``ready``, then one command per line on stdin:
``handshake N`` or ``records N`` runs N units and prints, on one line, the elapsed seconds
(``perf_counter``) and this thread's CPU seconds (``thread_time``), both measured here;
``report`` prints the ``client.*``/``server.*`` lines and ``end``; ``quit`` or end of input
exits.

If ``import dtls_ossl`` fails, the script prints ``error=dtls_ossl not built: ...`` and exits with
status 3, and the benchmark shows that instead of a number.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Benchmark the working tree (in-place `python build_ffi.py` or `pip install -e .`).
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

MTU = 1200
EXPORT_LABEL = "EXTRACTOR-dtls_srtp"
EXPORT_LEN = 60
RECORD_OVERHEAD = 13 + 8 + 16  # DTLS header, AES-GCM explicit nonce and tag
WARMUP_HANDSHAKES = 20
EXIT_NOT_BUILT = 3


class _Setup:
    """Two certificates and two configurations, made once, as in the C baseline."""

    def __init__(self, mtu: int = MTU) -> None:
        # Imported here, not at the top, so that the module can report an unbuilt library; kept
        # on the instance so that a handshake does not run the import machinery (an application
        # imports once).
        from dtls_ossl import (
            Certificate,
            DtlsConfiguration,
            DtlsConnection,
            Role,
            SrtpProfile,
            events,
        )

        self.connection = DtlsConnection
        self.client_role, self.server_role = Role.CLIENT, Role.SERVER
        self.completed_event = events.HandshakeCompleted
        self.terminated_event = events.ConnectionTerminated

        self.client_cert = Certificate.generate()  # ECDSA P-256
        self.server_cert = Certificate.generate()
        self.client_fp = self.client_cert.fingerprint("sha-256")
        self.server_fp = self.server_cert.fingerprint("sha-256")
        profiles = [SrtpProfile.AES128_CM_SHA1_80]
        self.client_config = DtlsConfiguration(
            certificate=self.client_cert, srtp_profiles=profiles, mtu=mtu
        )
        self.server_config = DtlsConfiguration(
            certificate=self.server_cert, srtp_profiles=profiles, mtu=mtu
        )
        self.sent = [0, 0, 0, 0]

    def handshake_pair(self) -> tuple[Any, Any]:
        """Return an established (client, server) pair; both checked as the C baseline does."""
        now = time.monotonic()
        client = self.connection(
            self.client_config, role=self.client_role, remote_fingerprints=[self.server_fp]
        )
        server = self.connection(
            self.server_config, role=self.server_role, remote_fingerprints=[self.client_fp]
        )
        client.connect(now)
        completed: set[int] = set()
        sent = self.sent = [0, 0, 0, 0]  # datagrams, bytes: client's, server's (as C counts)
        for _ in range(32):
            moved = 0
            for side, (src, dst) in enumerate(((client, server), (server, client))):
                for datagram in src.datagrams_to_send(now):
                    dst.receive_datagram(datagram, now)
                    moved += 1
                    sent[side] += 1
                    sent[side + 2] += len(datagram)
            for conn in (client, server):
                while (event := conn.next_event()) is not None:
                    if isinstance(event, self.completed_event):
                        completed.add(id(conn))
                    elif isinstance(event, self.terminated_event):
                        raise RuntimeError(f"handshake failed: {event!r}")
            if len(completed) == 2 and not moved:
                break
        if len(completed) != 2:
            raise RuntimeError("handshake did not complete")
        # The peer fingerprints were checked by the library (remote_fingerprints), and each
        # side exported the EXPORT_LEN bytes of EXPORT_LABEL keying material when its
        # handshake completed (srtp_keys(): RFC 5764 section 4.2): comparing the two sides'
        # keys is the C baseline's export-and-compare. Calling export_keying_material() again
        # would make dtls_ossl export twice per side where C exports once.
        client_keys, server_keys = client.srtp_keys(), server.srtp_keys()
        if client_keys.profile.keying_material_length != EXPORT_LEN or not client_keys.mirrors(
            server_keys
        ):
            raise RuntimeError("exported keying material differs")
        return client, server


# ---------------------------------------------------------------------------------------------
# The three functions the benchmarks call.
# ---------------------------------------------------------------------------------------------


def run_dtls_ossl_handshakes(n: int) -> tuple[float, list[str]]:
    """Return handshakes per second for n in-memory handshakes (after a warm-up).

    Also returns the report lines of one more (untimed) handshake: see :func:`report`.
    """
    setup = _Setup()
    for _ in range(WARMUP_HANDSHAKES):
        setup.handshake_pair()
    t0 = time.perf_counter()
    for _ in range(n):
        setup.handshake_pair()
    rate = n / (time.perf_counter() - t0)
    return rate, report_or_reason(setup, *setup.handshake_pair())


def run_dtls_ossl_records(n: int, size: int, batch: int = 0) -> tuple[float, list[str]]:
    """Return records per second, client to server, for n records of size bytes.

    batch == 0 uses the per-datagram API (send, datagrams_to_send, receive_datagram,
    next_event); batch > 0 sends batch records per call with send_many/receive_datagrams.
    """
    setup, client, server, run = records_runner(size, batch)
    run(n // 20 + 10)  # warm-up
    t0 = time.perf_counter()
    run(n)
    rate = n / (time.perf_counter() - t0)
    return rate, report_or_reason(setup, client, server)


def records_runner(size: int, batch: int = 0) -> tuple[_Setup, Any, Any, Callable[[int], None]]:
    """An established pair and the function that sends ``count`` records through it.

    batch == 0: the per-datagram API; batch > 0: send_many/receive_datagrams, batch records per
    call. Used by the one-shot ``records`` modes and by the ``serve`` worker.
    """
    from dtls_ossl import events

    # dtls_ossl refuses a payload that would not fit one datagram of the configured MTU, while
    # SSL_write in the C baseline and pyOpenSSL simply sends a 1237-byte datagram for a
    # 1200-byte record. A WebRTC data channel sends 1200-byte SCTP packets the same way, so the
    # records runs configure an MTU that fits the record instead of shrinking it.
    setup = _Setup(records_mtu(size))
    client, server = setup.handshake_pair()
    data = b"\x5a" * size
    data_received = events.DataReceived  # a local, as any per-record loop would hold it
    now = time.monotonic()

    def per_datagram(count: int) -> None:
        for _ in range(count):
            client.send(data, now)
            for datagram in client.datagrams_to_send(now):
                server.receive_datagram(datagram, now)
            event = server.next_event()
            if not isinstance(event, data_received) or len(event.data) != size:
                raise RuntimeError(f"unexpected event {event!r}")

    def batched(count: int) -> None:
        if not hasattr(client, "send_many") or not hasattr(server, "receive_datagrams"):
            raise RuntimeError("batch API (send_many/receive_datagrams) not available")
        chunk = [data] * batch
        done = 0
        while done < count:
            k = min(batch, count - done)
            client.send_many(chunk if k == batch else chunk[:k], now)
            server.receive_datagrams(client.datagrams_to_send(now), now)
            got = 0
            while (event := server.next_event()) is not None:
                if not isinstance(event, data_received) or len(event.data) != size:
                    raise RuntimeError(f"unexpected event {event!r}")
                got += 1
            if got != k:
                raise RuntimeError(f"sent {k} records, received {got}")
            done += k

    return setup, client, server, batched if batch > 0 else per_datagram


SERVE_WARMUP_RECORDS = 10000


def serve(kind: str, size: int = 0, batch: int = 0) -> int:
    """The long-lived worker of benchmarks/_common.py (see the module docstring).

    kind is ``handshake`` or ``records`` (batch > 0: the batch API). Returns the exit status.
    """
    run: Callable[[int], None]
    report_lines: Callable[[], list[str]]
    if kind == "handshake":
        setup = _Setup()
        for _ in range(WARMUP_HANDSHAKES):
            setup.handshake_pair()

        def run(count: int) -> None:
            for _ in range(count):
                setup.handshake_pair()

        def report_lines() -> list[str]:
            return report_or_reason(setup, *setup.handshake_pair())

    else:
        setup, client, server, run = records_runner(size, batch)
        run(SERVE_WARMUP_RECORDS)

        def report_lines() -> list[str]:
            return report_or_reason(setup, client, server)

    out = sys.stdout
    out.write("ready\n")
    out.flush()
    clock, cpu = time.perf_counter, time.thread_time
    for line in sys.stdin:
        words = line.split()
        if len(words) == 2 and words[0] == kind and words[1].isdigit():
            count = int(words[1])
            t0, c0 = clock(), cpu()
            run(count)
            c1, t1 = cpu(), clock()
            out.write(f"{t1 - t0:.9f} {c1 - c0:.9f}\n")
        elif words == ["report"]:
            _print_header()
            out.write("\n".join([*report_lines(), "end"]) + "\n")
        elif words == ["quit"]:
            break
        elif words:
            out.write(f"error=unknown command: {line.strip()}\n")
            out.flush()
            return 2
        out.flush()
    return 0


def records_mtu(size: int) -> int:
    """The MTU used for the records runs: 1200, or Ethernet's 1500 if a record needs more."""
    return MTU if size <= MTU - RECORD_OVERHEAD else max(1500, size + RECORD_OVERHEAD)


def dtls_ossl_bytes_per_conn(n: int) -> float:
    """Return RSS growth per established server-side connection (client side dropped at once).

    tracemalloc cannot see OpenSSL's malloc, so this reads /proc/self/statm, as the C baseline's
    ``rss`` mode and the pyOpenSSL peer do.
    """
    setup = _Setup()
    for _ in range(WARMUP_HANDSHAKES):
        setup.handshake_pair()
    gc.collect()
    kept: list[Any] = []
    before = _rss_bytes()
    for _ in range(n):
        client, server = setup.handshake_pair()
        kept.append(server)
        del client
        gc.collect()  # same as the pyOpenSSL peer, so reference cycles cannot favour either
    return (_rss_bytes() - before) / n


# ---------------------------------------------------------------------------------------------
# What the library set and negotiated, read by the C baseline's own reporting code.
# ---------------------------------------------------------------------------------------------


class ProbeError(Exception):
    """benchmarks/c/dtls_probe.c could not be built or loaded."""


_probe: Any = None


def _load_probe() -> Any:
    """Load benchmarks/c/dtls_probe.c (built by _common) into this process, once."""
    global _probe
    if _probe is not None:
        return _probe
    import ctypes

    from _common import BenchError, build_probe_library

    from dtls_ossl._binding import lib

    try:
        path = build_probe_library()
    except BenchError as exc:
        raise ProbeError(str(exc)) from exc
    # The library's libssl is loaded already; the probe binds to that same soname. Refuse to
    # read its SSL objects through any other libssl.
    probe = ctypes.CDLL(str(path))
    probe.dtls_probe_openssl_version_num.restype = ctypes.c_ulong
    ours, theirs = int(lib.OpenSSL_version_num()), int(probe.dtls_probe_openssl_version_num())
    if ours != theirs:
        raise ProbeError(
            f"probe runs on OpenSSL {theirs:#x}, dtls_ossl on {ours:#x}: not the same libssl"
        )
    for name in ("dtls_probe_configured", "dtls_probe_negotiated"):
        fn = getattr(probe, name)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
        fn.restype = ctypes.c_int
    _probe = probe
    return probe


def _probe_lines(what: str, conn: Any, prefix: str) -> list[str]:
    import ctypes

    from dtls_ossl._binding import ffi

    fn = getattr(_load_probe(), f"dtls_probe_{what}")
    buf = ctypes.create_string_buffer(1 << 15)
    ssl = int(ffi.cast("uintptr_t", conn._c.ssl))  # the library's own SSL object
    if fn(ssl, prefix.encode(), buf, len(buf)) < 0:
        raise ProbeError("probe buffer too small")
    return buf.value.decode().splitlines()


def report(setup: _Setup, client: Any, server: Any) -> list[str]:
    """client.* and server.* lines for the pair setup made last (as the C baseline prints them).

    The fingerprint line is derived from what the library reports it matched, not assumed.
    """
    lines: list[str] = []
    for side, (prefix, conn, expected) in enumerate(
        (("client.", client, setup.server_fp), ("server.", server, setup.client_fp))
    ):
        lines += _probe_lines("configured", conn, prefix)
        lines += _probe_lines("negotiated", conn, prefix)
        lines.append(f"{prefix}handshake_datagrams_sent={setup.sent[side]}")
        lines.append(f"{prefix}handshake_bytes_sent={setup.sent[side + 2]}")
        info = conn.handshake_info
        matched = None if info is None else info.peer_fingerprint
        if matched is not None and matched == expected:
            check = f"{matched.algorithm} of the peer certificate DER, compared"
        else:
            check = f"not done (matched {matched!r})"
        lines.append(f"{prefix}fingerprint_check={check}")
        lines.append(
            f"{prefix}fingerprint_how=i2d_X509 + EVP_Digest + CRYPTO_memcmp in the "
            "certificate verify callback (C), during the handshake"
        )
    return lines


def report_or_reason(setup: _Setup, client: Any, server: Any) -> list[str]:
    """:func:`report`, or one ``probe_error=`` line (no gcc): the rate still counts."""
    try:
        return report(setup, client, server)
    except ProbeError as exc:
        return [f"probe_error={exc}"]


def configured() -> list[str]:
    """What the benchmark's configuration makes the library set (the C baseline's CONFIG)."""
    from dtls_ossl import DtlsConnection, Role

    setup = _Setup()
    conn = DtlsConnection(
        setup.client_config, role=Role.CLIENT, remote_fingerprints=[setup.server_fp]
    )
    lines = _probe_lines("configured", conn, "")
    ciphers = next(ln.partition("=")[2] for ln in lines if ln.startswith("ciphers="))
    # TLS 1.3 suites are a separate list (SSL_CTX_set_ciphersuites), unused by DTLS 1.2 and left
    # at OpenSSL's default by both; the report compares the full effective list anyway.
    tls12 = ":".join(c for c in ciphers.split(":") if not c.startswith("TLS_"))
    lines.append(f"tls12_ciphers={tls12}")
    lines.append(f"groups={setup.client_config.groups}")
    lines.append(f"mtu={setup.client_config.mtu}")
    return lines


# ---------------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _print_header() -> None:
    import dtls_ossl

    version: Any = getattr(dtls_ossl, "openssl_version", None)
    if callable(version):
        version = version()
    if not isinstance(version, str):
        try:  # the libssl the extension module is linked against (0 is OPENSSL_VERSION)
            from dtls_ossl import _openssl

            version = _openssl.ffi.string(_openssl.lib.OpenSSL_version(0)).decode()
        except Exception:
            version = "?"
    print(f"openssl_version={version}")
    print(f"dtls_ossl_version={getattr(dtls_ossl, '__version__', '?')}")
    print(f"python={platform.python_version()} ({sys.executable})")


def main(argv: list[str]) -> int:
    try:  # the whole API contract, not just the package (a bare directory imports too)
        from dtls_ossl import (  # noqa: F401
            Certificate,
            DtlsConfiguration,
            DtlsConnection,
            Role,
            SrtpProfile,
            events,
        )
    except Exception as exc:
        print(f"error=dtls_ossl not built: {type(exc).__name__}: {exc}".replace("\n", " "))
        return EXIT_NOT_BUILT
    if len(argv) == 2 and argv[0] == "handshake":
        n = int(argv[1])
        rate, lines = run_dtls_ossl_handshakes(n)
        _print_header()
        print(f"handshakes={n}\nhandshakes_per_s={rate:.2f}")
        print("\n".join(lines))
    elif len(argv) == 3 and argv[0] == "records":
        n, size = int(argv[1]), int(argv[2])
        rate, lines = run_dtls_ossl_records(n, size)
        _print_header()
        print(f"records={n}\nrecord_size={size}\nmtu={records_mtu(size)}")
        print(f"records_per_s={rate:.2f}")
        print("\n".join(lines))
    elif len(argv) in (3, 4) and argv[0] == "records-batch":
        n, size = int(argv[1]), int(argv[2])
        batch = int(argv[3]) if len(argv) == 4 else 64
        rate, lines = run_dtls_ossl_records(n, size, batch)
        _print_header()
        print(f"records={n}\nrecord_size={size}\nmtu={records_mtu(size)}\nbatch={batch}")
        print(f"records_per_s={rate:.2f}")
        print("\n".join(lines))
    elif len(argv) == 2 and argv[0] == "memory":
        n = int(argv[1])
        per_conn = dtls_ossl_bytes_per_conn(n)
        _print_header()
        print(f"connections={n}\nrss_bytes_per_conn={per_conn:.1f}")
    elif len(argv) == 2 and argv[0:2] == ["serve", "handshake"]:
        return serve("handshake")
    elif len(argv) == 3 and argv[0:2] == ["serve", "records"]:
        return serve("records", int(argv[2]))
    elif len(argv) in (3, 4) and argv[0:2] == ["serve", "records-batch"]:
        return serve("records", int(argv[2]), int(argv[3]) if len(argv) == 4 else 64)
    elif len(argv) == 1 and argv[0] == "version":
        _print_header()
    elif len(argv) == 1 and argv[0] == "config":
        try:
            print("\n".join(configured()))
        except ProbeError as exc:
            print(f"probe_error={exc}")
            return 1
    else:
        print(
            "usage: _dtls_ossl_peer.py handshake N | records N SIZE | "
            "records-batch N SIZE [BATCH] | memory N | version | config | serve handshake | "
            "serve records SIZE | serve records-batch SIZE [BATCH]",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
