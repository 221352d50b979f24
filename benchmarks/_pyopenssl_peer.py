"""The benchmark work done with pyOpenSSL: in-memory DTLS 1.2 handshakes, records, memory.

Runs as a script under any interpreter that has pyOpenSSL and cryptography, so the same file
measures the PyPI wheel (which bundles its own, newer OpenSSL) and Debian's python3-openssl
(which uses the system OpenSSL, like dtls_ossl and the C baseline)::

    python benchmarks/_pyopenssl_peer.py handshake N
    python benchmarks/_pyopenssl_peer.py records N SIZE
    python benchmarks/_pyopenssl_peer.py memory N
    /usr/bin/python3 benchmarks/_pyopenssl_peer.py handshake N
    python benchmarks/_pyopenssl_peer.py CONFIG handshake N   # CONFIG: as the C baseline's
    python benchmarks/_pyopenssl_peer.py CONFIG serve handshake
    python benchmarks/_pyopenssl_peer.py CONFIG serve records SIZE

``serve`` is the long-lived worker benchmarks/_common.py drives chunk by chunk, with the C
baseline's line protocol: setup once (for records an established pair and a warm-up),
``ready``, then one command per line on stdin: ``handshake N`` or ``records N`` runs N units and
prints, on one line, the elapsed seconds (``perf_counter``) and this thread's CPU seconds
(``thread_time``), both measured here; ``report`` prints the
``client.*``/``server.*`` lines and ``end``; ``quit`` or end of input exits.

With CONFIG (the benchmark passes dtls_ossl's, as it does to the C baseline) the contexts are set
up with it as far as pyOpenSSL allows: options, session cache mode, verify mode, versions,
ciphers, SRTP profiles and MTU; there is no groups setter. ``handshake`` and ``records`` end with
``client.*``/``server.*`` lines in the C baseline's format, each taken from pyOpenSSL or its
binding where they offer it; a line they cannot give is left out (and the benchmark says so).

Output is one ``key=value`` per line, the same keys as benchmarks/c/dtls_baseline.c. The work
mirrors the C baseline: DTLS 1.2 only, OP_NO_QUERY_MTU | OP_NO_RENEGOTIATION, MTU 1200,
self-signed ECDSA P-256 certificates made once, an accept-all verify callback, ECDHE-ECDSA AEAD
ciphers, use_srtp, a 60-byte "EXTRACTOR-dtls_srtp" export compared on both sides and a SHA-256
fingerprint check of the peer certificate on both sides. pyOpenSSL has no groups setter; the
OpenSSL default list starts with X25519, which is what gets negotiated either way.

Only the standard library, pyOpenSSL and cryptography are imported: this file must run under
/usr/bin/python3 without the project installed.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import secrets
import sys
import time
import warnings
from collections.abc import Callable, Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

warnings.simplefilter("ignore", DeprecationWarning)

MTU = 1200
DTLS1_2_VERSION = 0xFEFD  # pyOpenSSL exports no DTLS version constants
EXPORT_LABEL = b"EXTRACTOR-dtls_srtp"
EXPORT_LEN = 60
CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305"
)
SRTP_PROFILES = b"SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_128_GCM"
WARMUP_HANDSHAKES = 20


class Identity:
    """A self-signed ECDSA P-256 certificate, its key and its SHA-256 fingerprint.

    Shaped like dtls_ossl's Certificate.generate() and the C baseline's: v3, no extensions, a
    16-hex-character CN, a random serial, one day back and 30 days ahead.
    """

    def __init__(self) -> None:
        common_name = secrets.token_hex(8)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        self.x509 = crypto.X509.from_cryptography(cert)
        self.pkey = crypto.PKey.from_cryptography_key(key)
        self.fingerprint: bytes = self.x509.digest("sha256")


def _accept(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    return True  # WebRTC checks the fingerprint after the handshake instead


CONFIG: dict[str, str] = {}
"The benchmark's CONFIG (dtls_ossl's settings), empty when run without it."

_VERSIONS = {"DTLSv1.2": DTLS1_2_VERSION, "any": 0}


def make_context(identity: Identity) -> SSL.Context:
    from OpenSSL._util import lib

    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.set_min_proto_version(_VERSIONS[CONFIG.get("min-version", "DTLSv1.2")])
    ctx.set_max_proto_version(_VERSIONS[CONFIG.get("max-version", "DTLSv1.2")])
    if "options" in CONFIG:
        if hasattr(lib, "SSL_CTX_clear_options"):  # else only added to OpenSSL's defaults
            lib.SSL_CTX_clear_options(ctx._context, lib.SSL_CTX_set_options(ctx._context, 0))
        ctx.set_options(int(CONFIG["options"], 0))
    else:
        ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_RENEGOTIATION)
    if "session-cache-mode" in CONFIG:
        ctx.set_session_cache_mode(int(CONFIG["session-cache-mode"], 0))
    ctx.use_certificate(identity.x509)
    ctx.use_privatekey(identity.pkey)
    ctx.check_privatekey()
    mode = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
    ctx.set_verify(int(CONFIG.get("verify-mode", str(mode)), 0), _accept)
    ctx.set_cipher_list(CONFIG["ciphers"].encode() if "ciphers" in CONFIG else CIPHERS)
    profiles = CONFIG["srtp-profiles"].encode() if "srtp-profiles" in CONFIG else SRTP_PROFILES
    ctx.set_tlsext_use_srtp(profiles)
    return ctx


class Endpoint:
    """One side of an in-memory DTLS association."""

    def __init__(self, ctx: SSL.Context, server: bool, peer: Identity) -> None:
        self.conn = SSL.Connection(ctx, None)  # None: memory BIOs
        self.conn.set_ciphertext_mtu(int(CONFIG.get("mtu", MTU)))
        if server:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
        self.peer_fingerprint = peer.fingerprint
        self.done = False
        self.sent_datagrams = self.sent_bytes = 0

    def drive(self) -> None:
        if self.done:
            return
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            return
        self.done = True

    def outgoing(self) -> bytes:
        chunks = []
        while True:
            try:
                chunks.append(self.conn.bio_read(65536))
            except SSL.WantReadError:
                return b"".join(chunks)

    def check_established(self) -> bytes:
        if not _srtp_negotiated(self.conn):
            raise RuntimeError("no SRTP profile negotiated")
        peer = self.conn.get_peer_certificate()
        if peer is None or peer.digest("sha256") != self.peer_fingerprint:
            raise RuntimeError("peer fingerprint mismatch")
        km: bytes = self.conn.export_keying_material(EXPORT_LABEL, EXPORT_LEN)
        return km


def _srtp_negotiated(conn: SSL.Connection) -> bool:
    """Connection.get_selected_srtp_profile is missing from 23.0 (Debian): use the binding."""
    if hasattr(SSL.Connection, "get_selected_srtp_profile"):
        return bool(conn.get_selected_srtp_profile())
    from OpenSSL._util import ffi, lib

    return bool(lib.SSL_get_selected_srtp_profile(conn._ssl) != ffi.NULL)


def pack_datagrams(data: bytes, mtu: int = 0) -> Iterator[bytes]:
    """Split joined DTLS records on their headers and pack them into datagrams <= mtu."""
    mtu = mtu or int(CONFIG.get("mtu", MTU))
    start = off = 0
    while off < len(data):
        if len(data) - off < 13:
            raise RuntimeError("truncated DTLS record header")
        rec = 13 + int.from_bytes(data[off + 11 : off + 13], "big")
        if off > start and off + rec - start > mtu:
            yield data[start:off]
            start = off
        off += rec
    if off > start:
        yield data[start:off]


def pump(src: Endpoint, dst: Endpoint) -> int:
    moved = 0
    while data := src.outgoing():
        for datagram in pack_datagrams(data):
            dst.conn.bio_write(datagram)
            dst.drive()
            moved += 1
            src.sent_bytes += len(datagram)
    src.sent_datagrams += moved
    return moved


class Setup:
    def __init__(self) -> None:
        self.client_id = Identity()
        self.server_id = Identity()
        self.client_ctx = make_context(self.client_id)
        self.server_ctx = make_context(self.server_id)

    def handshake_pair(self) -> tuple[Endpoint, Endpoint]:
        client = Endpoint(self.client_ctx, False, self.server_id)
        server = Endpoint(self.server_ctx, True, self.client_id)
        client.drive()
        for _ in range(32):
            moved = pump(client, server) + pump(server, client)
            if client.done and server.done and not moved:
                break
        if not (client.done and server.done):
            raise RuntimeError("handshake did not complete")
        if client.check_established() != server.check_established():
            raise RuntimeError("exported keying material differs")
        return client, server


def _key_name(cert: crypto.X509 | None) -> str:
    """The C probe's format: "EC P-256", "RSA 2048"."""
    if cert is None:
        return "none"
    key = cert.to_cryptography().public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        nist = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"EC {nist.get(key.curve.name, key.curve.name)}"
    bits = getattr(key, "key_size", 0)
    return f"{type(key).__name__.replace('PublicKey', '').replace('_', '')} {bits}"


def _cert_shape(cert: crypto.X509) -> str:
    """The C probe's own_cert_shape line, from the certificate itself."""
    c = cert.to_cryptography()
    cn = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn_len = len(str(cn[0].value)) if cn else -1
    serial_len = ((c.serial_number.bit_length() + 7) // 8 + 3) // 4 * 4
    if hasattr(c, "not_valid_after_utc"):
        days = (c.not_valid_after_utc - c.not_valid_before_utc).days
    else:  # cryptography < 42 (Debian's)
        days = (c.not_valid_after - c.not_valid_before).days
    return (
        f"v{c.version.value + 1}, {len(c.extensions)} extensions, self-issued "
        f"{int(c.subject == c.issuer)}, CN {cn_len} chars, serial <= {serial_len} bytes, "
        f"valid {days} days"
    )


def report(setup: Setup, client: Endpoint, server: Endpoint) -> list[str]:
    """client.* and server.* lines, as far as pyOpenSSL and its binding can tell them."""
    from OpenSSL._util import ffi, lib

    lines: list[str] = []

    def put(prefix: str, key: str, value: object) -> None:
        lines.append(f"{prefix}{key}={value}")

    for prefix, ep, ctx, own in (
        ("client.", client, setup.client_ctx, setup.client_id),
        ("server.", server, setup.server_ctx, setup.server_id),
    ):
        c = ep.conn
        if hasattr(lib, "SSL_get_options"):
            put(prefix, "options", hex(lib.SSL_get_options(c._ssl)))
        put(prefix, "session_cache_mode", hex(ctx.get_session_cache_mode()))
        put(prefix, "verify_mode", hex(ctx.get_verify_mode()))
        put(prefix, "ciphers", ":".join(c.get_cipher_list()))
        put(prefix, "own_key", _key_name(own.x509))
        put(prefix, "own_cert_signature", own.x509.get_signature_algorithm().decode())
        put(prefix, "own_cert_shape", _cert_shape(own.x509))
        put(prefix, "version", c.get_protocol_version_name())
        put(prefix, "cipher", c.get_cipher_name())
        if hasattr(c, "get_group_name"):
            put(prefix, "group", c.get_group_name() or "none")
        if hasattr(lib, "SSL_get_extms_support"):
            put(prefix, "extms", lib.SSL_get_extms_support(c._ssl))
        if hasattr(c, "get_selected_srtp_profile"):
            put(prefix, "srtp_profile", c.get_selected_srtp_profile().decode() or "none")
        if hasattr(lib, "SSL_session_reused"):
            put(prefix, "session_reused", lib.SSL_session_reused(c._ssl))
        sess = lib.SSL_get_session(c._ssl)
        if hasattr(lib, "SSL_SESSION_has_ticket"):
            put(prefix, "ticket", lib.SSL_SESSION_has_ticket(sess) if sess != ffi.NULL else 0)
        if hasattr(lib, "SSL_SESSION_get_ticket_lifetime_hint"):
            hint = lib.SSL_SESSION_get_ticket_lifetime_hint(sess) if sess != ffi.NULL else 0
            put(prefix, "ticket_lifetime_hint", hint)
        put(prefix, "peer_key", _key_name(c.get_peer_certificate()))
        put(prefix, "data_mtu", c.get_cleartext_mtu())
        put(prefix, "handshake_datagrams_sent", ep.sent_datagrams)
        put(prefix, "handshake_bytes_sent", ep.sent_bytes)
        if hasattr(lib, "SSL_CTX_sess_number"):
            put(prefix, "sessions_cached", lib.SSL_CTX_sess_number(ctx._context))
        put(prefix, "fingerprint_check", "sha-256 of the peer certificate DER, compared")
        put(prefix, "fingerprint_how", "X509.digest + == after the handshake")
    return lines


def print_header() -> None:
    import OpenSSL

    version = SSL.OpenSSL_version(SSL.OPENSSL_VERSION)
    print(f"openssl_version={version.decode()}")
    print(f"pyopenssl_version={OpenSSL.__version__}")
    print(f"python={platform.python_version()} ({sys.executable})")


def mode_handshake(n: int) -> None:
    setup = Setup()
    for _ in range(WARMUP_HANDSHAKES):
        setup.handshake_pair()
    t0 = time.perf_counter()
    for _ in range(n):
        setup.handshake_pair()
    dt = time.perf_counter() - t0
    print_header()
    print(f"handshakes={n}\nseconds={dt:.6f}\nhandshakes_per_s={n / dt:.2f}")
    print("\n".join(report(setup, *setup.handshake_pair())))


class Records:
    """An established pair sending size-byte records from client to server."""

    def __init__(self, size: int) -> None:
        self.setup = Setup()
        self.client, self.server = self.setup.handshake_pair()
        self.size = size
        self.data = b"\x5a" * size
        self.datagram = b""

    def run(self, n: int) -> None:
        c, s, data, size = self.client.conn, self.server.conn, self.data, self.size
        datagram = b""
        for _ in range(n):
            c.send(data)
            datagram = c.bio_read(65536)
            s.bio_write(datagram)
            if len(s.recv(65536)) != size:
                raise RuntimeError("short read")
        self.datagram = datagram


def mode_records(n: int, size: int) -> None:
    rec = Records(size)
    rec.run(n // 20 + 10)  # warm-up
    t0 = time.perf_counter()
    rec.run(n)
    dt = time.perf_counter() - t0
    print_header()
    print(f"cipher={rec.server.conn.get_cipher_name()}")
    print(f"records={n}\nrecord_size={size}\ndatagram_size={len(rec.datagram)}")
    print(f"seconds={dt:.6f}\nrecords_per_s={n / dt:.2f}")
    print("\n".join(report(rec.setup, rec.client, rec.server)))


SERVE_WARMUP_RECORDS = 10000


def serve(kind: str, size: int = 0) -> int:
    """The long-lived worker (see the module docstring); returns the exit status."""
    run: Callable[[int], None]
    report_lines: Callable[[], list[str]]
    if kind == "handshake":
        setup = Setup()
        for _ in range(WARMUP_HANDSHAKES):
            setup.handshake_pair()

        def run(count: int) -> None:
            for _ in range(count):
                setup.handshake_pair()

        def report_lines() -> list[str]:
            return report(setup, *setup.handshake_pair())

    else:
        rec = Records(size)
        rec.run(SERVE_WARMUP_RECORDS)
        run = rec.run

        def report_lines() -> list[str]:
            return report(rec.setup, rec.client, rec.server)

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
            print_header()
            out.write("\n".join([*report_lines(), "end"]) + "\n")
        elif words == ["quit"]:
            break
        elif words:
            out.write(f"error=unknown command: {line.strip()}\n")
            out.flush()
            return 2
        out.flush()
    return 0


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mode_memory(n: int) -> None:
    """RSS growth per established server-side connection (client side dropped at once)."""
    setup = Setup()
    for _ in range(WARMUP_HANDSHAKES):
        setup.handshake_pair()
    gc.collect()
    kept: list[Endpoint] = []
    before = rss_bytes()
    for _ in range(n):
        client, server = setup.handshake_pair()
        kept.append(server)
        del client
        gc.collect()  # pyOpenSSL's Connection sits in a reference cycle (its app-data handle)
    after = rss_bytes()
    print_header()
    print(f"connections={n}\nrss_bytes_per_conn={(after - before) / n:.1f}")


def main(argv: list[str]) -> int:
    while len(argv) >= 2 and argv[0].startswith("--"):
        CONFIG[argv[0][2:]] = argv[1]
        argv = argv[2:]
    if len(argv) == 2 and argv[0] == "handshake":
        mode_handshake(int(argv[1]))
    elif len(argv) == 3 and argv[0] == "records":
        mode_records(int(argv[1]), int(argv[2]))
    elif len(argv) == 2 and argv[0] == "memory":
        mode_memory(int(argv[1]))
    elif argv == ["serve", "handshake"]:
        return serve("handshake")
    elif len(argv) == 3 and argv[0:2] == ["serve", "records"]:
        return serve("records", int(argv[2]))
    elif len(argv) == 1 and argv[0] == "version":
        print_header()
    else:
        print(
            "usage: _pyopenssl_peer.py [CONFIG] (handshake N | records N SIZE | memory N | "
            "serve handshake | serve records SIZE) | version",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
