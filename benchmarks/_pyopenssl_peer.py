"""The benchmark work done with pyOpenSSL: in-memory DTLS 1.2 handshakes, records, memory.

Runs as a script under any interpreter that has pyOpenSSL and cryptography, so the same file
measures the PyPI wheel (which bundles its own, newer OpenSSL) and Debian's python3-openssl
(which uses the system OpenSSL, like dtls_ossl and the C baseline)::

    python benchmarks/_pyopenssl_peer.py handshake N
    python benchmarks/_pyopenssl_peer.py records N SIZE
    python benchmarks/_pyopenssl_peer.py memory N
    /usr/bin/python3 benchmarks/_pyopenssl_peer.py handshake N

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
import sys
import time
import warnings
from collections.abc import Iterator

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
    """A self-signed ECDSA P-256 certificate, its key and its SHA-256 fingerprint."""

    def __init__(self, common_name: str) -> None:
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


def make_context(identity: Identity) -> SSL.Context:
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.set_min_proto_version(DTLS1_2_VERSION)
    ctx.set_max_proto_version(DTLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_RENEGOTIATION)
    ctx.use_certificate(identity.x509)
    ctx.use_privatekey(identity.pkey)
    ctx.check_privatekey()
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _accept)
    ctx.set_cipher_list(CIPHERS)
    ctx.set_tlsext_use_srtp(SRTP_PROFILES)
    return ctx


class Endpoint:
    """One side of an in-memory DTLS association."""

    def __init__(self, ctx: SSL.Context, server: bool, peer: Identity) -> None:
        self.conn = SSL.Connection(ctx, None)  # None: memory BIOs
        self.conn.set_ciphertext_mtu(MTU)
        if server:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
        self.peer_fingerprint = peer.fingerprint
        self.done = False

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


def pack_datagrams(data: bytes, mtu: int = MTU) -> Iterator[bytes]:
    """Split joined DTLS records on their headers and pack them into datagrams <= mtu."""
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
    return moved


class Setup:
    def __init__(self) -> None:
        self.client_id = Identity("client")
        self.server_id = Identity("server")
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


def mode_records(n: int, size: int) -> None:
    setup = Setup()
    client, server = setup.handshake_pair()
    c, s = client.conn, server.conn
    data = b"\x5a" * size
    warm = n // 20 + 10
    datagram = b""
    t0 = 0.0
    for i in range(-warm, n):
        if i == 0:
            t0 = time.perf_counter()
        c.send(data)
        datagram = c.bio_read(65536)
        s.bio_write(datagram)
        if len(s.recv(65536)) != size:
            raise RuntimeError("short read")
    dt = time.perf_counter() - t0
    print_header()
    print(f"cipher={s.get_cipher_name()}")
    print(f"records={n}\nrecord_size={size}\ndatagram_size={len(datagram)}")
    print(f"seconds={dt:.6f}\nrecords_per_s={n / dt:.2f}")


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
    if len(argv) == 2 and argv[0] == "handshake":
        mode_handshake(int(argv[1]))
    elif len(argv) == 3 and argv[0] == "records":
        mode_records(int(argv[1]), int(argv[2]))
    elif len(argv) == 2 and argv[0] == "memory":
        mode_memory(int(argv[1]))
    elif len(argv) == 1 and argv[0] == "version":
        print_header()
    else:
        print(
            "usage: _pyopenssl_peer.py handshake N | records N SIZE | memory N | version",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
