"""A pyOpenSSL DTLS 1.2 endpoint in a thread of this process, on its own OpenSSL build.

pyOpenSSL's wheel carries its own OpenSSL (a different version and build from the system's),
so this is a second implementation driven by a second I/O loop. The endpoint runs an
``SSL.Connection`` on memory BIOs in its own thread with its own UDP socket, splits what OpenSSL
writes on DTLS record headers and packs whole records into datagrams of at most the MTU. It
accepts any certificate (it compares the DER afterwards, as a WebRTC stack would compare the
fingerprint) and echoes back whatever application data it receives.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import Any

from dtls_ossl._records import split_records_untrusted
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.srtp import SRTP_EXPORTER_LABEL, SrtpProfile
from dtls_ossl_conformance._cell import MTU, CellContext, CellOutcome, Endpoint, run_standard_cell
from dtls_ossl_conformance._io import LOCALHOST
from dtls_ossl_conformance._model import Availability, CellFailure, Negotiated
from dtls_ossl_conformance._names import install_command
from dtls_ossl_conformance._peer import Peer

__all__ = ["PyOpenSSLPeer"]

_DTLS1_2_VERSION = 0xFEFD  # pyOpenSSL exports no DTLS version constants


def _split_records(blob: bytes) -> list[bytes]:
    """Split concatenated DTLS records on their 13-byte headers (whole records only)."""
    return [blob[r.offset : r.end] for r in split_records_untrusted(blob)[0]]


def _pack(records: list[bytes], mtu: int) -> list[bytes]:
    """Pack whole records into datagrams of at most ``mtu`` bytes, in order."""
    datagrams: list[bytes] = []
    current = b""
    for record in records:
        if current and len(current) + len(record) > mtu:
            datagrams.append(current)
            current = b""
        current += record
    if current:
        datagrams.append(current)
    return datagrams


class _Endpoint(Endpoint):
    echoes = True

    def __init__(self, ctx: CellContext, certificate: Certificate | None) -> None:
        super().__init__(ctx, certificate)
        from OpenSSL import SSL

        if certificate is None:  # pragma: no cover - always given
            raise CellFailure("the pyOpenSSL peer needs a certificate")
        from cryptography.hazmat.primitives import serialization

        self._ssl = SSL
        profile = ctx.spec.profile or SrtpProfile.AES128_CM_SHA1_80
        self.export_length = profile.keying_material_length
        _, key_pem = certificate.to_pem()
        sslctx = SSL.Context(SSL.DTLS_METHOD)
        sslctx.set_min_proto_version(_DTLS1_2_VERSION)
        sslctx.set_max_proto_version(_DTLS1_2_VERSION)
        sslctx.set_options(SSL.OP_NO_QUERY_MTU)
        sslctx.use_certificate(certificate.x509)
        key: Any = serialization.load_pem_private_key(key_pem, None)  # ECDSA or RSA: both fit
        sslctx.use_privatekey(key)
        sslctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: True)
        sslctx.set_tlsext_use_srtp(profile.openssl_name.encode())
        self.conn: Any = SSL.Connection(sslctx, None)
        self.conn.set_ciphertext_mtu(MTU)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCALHOST, 0))
        self.sock.setblocking(False)
        self.remote: tuple[str, int] | None = None
        self.done = threading.Event()
        self.info: Negotiated | None = None
        self.peer_der: bytes | None = None
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="pyopenssl-peer")
        ctx.on_cleanup(self._shutdown)

    # ------------------------------------------------------------------ the cell's thread

    def start_server(self) -> tuple[str, int]:
        self.conn.set_accept_state()
        self._thread.start()
        host, port = self.sock.getsockname()
        return host, port

    def start_client(self, port: int) -> None:
        self.conn.set_connect_state()
        self.remote = (LOCALHOST, port)
        self.sock.connect(self.remote)
        self._thread.start()

    def failed(self) -> str | None:
        return self.failure

    def wait_established(self) -> None:
        deadline = self.ctx.deadline
        while not self.done.wait(0.01):
            if self.failure is not None:
                raise CellFailure(f"pyOpenSSL peer failed: {self.failure}")
            deadline.check("the pyOpenSSL peer's handshake")

    def negotiated(self) -> Negotiated:
        return self.info or Negotiated()

    def received_certificate(self) -> bytes | None:
        return self.peer_der

    def completed_anyway(self) -> bool | None:
        # Give the peer a moment to process our alert.
        end = time.monotonic() + min(0.3, self.ctx.deadline.remaining())
        while time.monotonic() < end and self.failure is None and not self.done.is_set():
            time.sleep(0.01)
        return self.done.is_set()

    def _shutdown(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self.sock.close()

    # ----------------------------------------------------------------- the peer's thread

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # reported to the cell through failure
            self.failure = f"{type(exc).__name__}: {exc}"

    def _loop(self) -> None:
        if self.remote is not None:
            self._advance()
            self._flush()
        while not self._stop.is_set() and self.failure is None:
            wait = 0.01
            timeout = self.conn.DTLSv1_get_timeout()
            if timeout is not None:
                wait = max(0.0, min(wait, timeout))
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                self._read_all()
            timeout = self.conn.DTLSv1_get_timeout()
            if timeout is not None and timeout <= 0:
                self.conn.DTLSv1_handle_timeout()
            self._flush()

    def _read_all(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if self.remote is None:
                self.remote = addr
                self.sock.connect(addr)
            self.conn.bio_write(data)  # one datagram at a time
            self._advance()
            self._flush()

    def _advance(self) -> None:
        ssl = self._ssl
        if not self.done.is_set():
            try:
                self.conn.do_handshake()
            except ssl.WantReadError:
                return
            except ssl.Error as exc:
                self.failure = f"handshake: {exc}"
                return
            self._record()
        while True:
            try:
                data = self.conn.recv(65535)
            except ssl.WantReadError:
                return
            except ssl.ZeroReturnError:
                with contextlib.suppress(ssl.Error):
                    self.conn.shutdown()
                return
            except ssl.Error as exc:
                self.failure = f"read: {exc}"
                return
            self.conn.send(data)  # echo

    def _record(self) -> None:
        c = self.conn
        from cryptography.hazmat.primitives import serialization

        cert = c.get_peer_certificate(as_cryptography=True)
        self.peer_der = None if cert is None else cert.public_bytes(serialization.Encoding.DER)
        profile = c.get_selected_srtp_profile()
        material = c.export_keying_material(SRTP_EXPORTER_LABEL.encode(), self.export_length)
        self.info = Negotiated(
            version=c.get_protocol_version_name(),
            cipher=c.get_cipher_name(),
            srtp_profile=profile.decode() if profile else None,
            keying_material=bytes(material).hex(),
        )
        self.done.set()

    def _flush(self) -> None:
        try:
            blob = self.conn.bio_read(1 << 16)
        except self._ssl.WantReadError:
            return
        if self.remote is None:
            return
        for datagram in _pack(_split_records(blob), MTU):
            with contextlib.suppress(OSError):
                self.sock.send(datagram)


class PyOpenSSLPeer(Peer):
    """pyOpenSSL on the OpenSSL its wheel carries, in a thread of this process."""

    name = "pyopenssl"
    profiles = tuple(SrtpProfile)
    install = install_command("pyopenssl")

    def availability(self) -> Availability:
        """Available when pyOpenSSL imports and has DTLS."""
        try:
            import OpenSSL
            from OpenSSL import SSL
        except ImportError as exc:
            return Availability(
                False, reason=f"pyOpenSSL is not installed ({exc})", install=self.install
            )
        if not hasattr(SSL, "DTLS_METHOD"):
            return Availability(
                False, reason="this pyOpenSSL has no DTLS_METHOD", install=self.install
            )
        built = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
        return Availability(True, version=f"pyOpenSSL {OpenSSL.__version__} ({built})")

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run one cell against the in-process pyOpenSSL endpoint."""
        return run_standard_cell(ctx, _Endpoint)
