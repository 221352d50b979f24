"""aiortc's ``RTCDtlsTransport`` in a thread of this process, over a real loopback UDP socket.

aiortc drives pyOpenSSL with WebRTC's settings (ECDHE-ECDSA suites only, no tickets, use_srtp
with its three profiles) and sets up real libsrtp sessions (pylibsrtp) from the exported keys.
In place of its ICE transport it gets a small object with ``role``, ``_send`` and ``_recv`` on
a UDP socket; its DTLS role follows the ICE role as in ORTC (controlling: server). It checks
our fingerprint itself (``RTCDtlsParameters``), echoes the application data it receives, and
its SRTP sessions are checked against ours: an RTP packet protected by aiortc's ``_tx_srtp`` is
unprotected with pylibsrtp and the keys split from our exported material (the cell's
keying_material check ties those to ``srtp_keys()``), and one we protect is unprotected by
aiortc's ``_rx_srtp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
import threading
import time
from typing import Any

from dtls_ossl._roles import Role
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.srtp import SRTP_EXPORTER_LABEL, SrtpKeys, SrtpProfile
from dtls_ossl_conformance._cell import CellContext, CellOutcome, Endpoint, run_standard_cell
from dtls_ossl_conformance._io import LOCALHOST
from dtls_ossl_conformance._model import Availability, CellFailure, CellKind, Negotiated
from dtls_ossl_conformance._names import install_command
from dtls_ossl_conformance._peer import Peer

__all__ = ["AiortcPeer"]

_RTP = bytes.fromhex("806f0001000000640000abcd") + b"aiortc conformance audio payload"
"An RTP packet: version 2, payload type 111, sequence 1, timestamp 100, SSRC 0xabcd."


def _aiortc() -> Any:
    """Import aiortc untyped: mypy runs where the optional peers are not installed."""
    return importlib.import_module("aiortc")


class _IceTransport:
    """What RTCDtlsTransport uses of its RTCIceTransport: ``role``, ``_send``, ``_recv``."""

    def __init__(self, role: str, sock: socket.socket, remote: tuple[str, int] | None) -> None:
        self.role = role
        self.sock = sock
        self.remote = remote
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.state = "completed"

    def datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.remote is None:
            self.remote = addr
        self.queue.put_nowait(data)

    async def _send(self, data: bytes) -> None:
        if self.remote is not None:
            with contextlib.suppress(OSError):
                self.sock.sendto(data, self.remote)

    async def _recv(self) -> bytes:
        data = await self.queue.get()
        if data is None:
            raise ConnectionError("the fake ICE transport is closed")
        return data


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, ice: _IceTransport) -> None:
        self.ice = ice

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.ice.datagram(data, addr)


class _Endpoint(Endpoint):
    echoes = True
    certificate_evidence = "DER compared; aiortc validated our sha-256 fingerprint"

    def __init__(self, ctx: CellContext, certificate: Certificate | None) -> None:
        super().__init__(ctx, certificate)
        if certificate is None:  # pragma: no cover - always given
            raise CellFailure("the aiortc peer needs a certificate")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCALHOST, 0))
        self.sock.setblocking(False)
        self.remote: tuple[str, int] | None = None
        self.ice_role = "controlled"
        self.done = threading.Event()
        self.ended = threading.Event()
        self.failure: str | None = None
        self.info: Negotiated | None = None
        self.peer_der: bytes | None = None
        self.dtls: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="aiortc-peer")
        ctx.on_cleanup(self._shutdown)

    # ------------------------------------------------------------------ the cell's thread

    def start_server(self) -> tuple[str, int]:
        self.ice_role = "controlling"  # aiortc: controlling ICE agent -> DTLS server
        self._thread.start()
        host, port = self.sock.getsockname()
        return host, port

    def start_client(self, port: int) -> None:
        self.ice_role = "controlled"  # -> DTLS client
        self.remote = (LOCALHOST, port)
        self._thread.start()

    def failed(self) -> str | None:
        return self.failure

    def wait_established(self) -> None:
        while not self.done.wait(0.01):
            if self.failure is not None:
                raise CellFailure(f"aiortc peer failed: {self.failure}")
            self.ctx.deadline.check("aiortc's handshake")

    def negotiated(self) -> Negotiated:
        return self.info or Negotiated()

    def received_certificate(self) -> bytes | None:
        return self.peer_der

    def completed_anyway(self) -> bool | None:
        # aiortc's start() returns once its handshake ends either way: wait for that.
        end = time.monotonic() + min(1.0, self.ctx.deadline.remaining())
        while time.monotonic() < end and not self.ended.is_set():
            time.sleep(0.01)
        return self.done.is_set()

    def _shutdown(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            self._thread.join(2)
        self.sock.close()

    # ----------------------------------------------------------------- the peer's thread

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # reported to the cell through failure
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            self.ended.set()

    async def _main(self) -> None:
        from cryptography.hazmat.primitives import serialization

        aiortc = _aiortc()
        RTCCertificate = aiortc.RTCCertificate
        RTCDtlsFingerprint = aiortc.RTCDtlsFingerprint
        RTCDtlsParameters = aiortc.RTCDtlsParameters
        RTCDtlsTransport = aiortc.RTCDtlsTransport

        assert self.certificate is not None
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        ice = _IceTransport(self.ice_role, self.sock, self.remote)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(ice), sock=self.sock)
        _, key_pem = self.certificate.to_pem()
        key: Any = serialization.load_pem_private_key(key_pem, None)
        cert = RTCCertificate(key=key, cert=self.certificate.x509)
        ours = self.ctx.identities.pair(self.ctx.spec.key_type)[0]
        fingerprint = ours.fingerprint("sha-256")
        params = RTCDtlsParameters(
            fingerprints=[RTCDtlsFingerprint("sha-256", fingerprint.value.hex(":").upper())]
        )
        dtls = RTCDtlsTransport(ice, [cert])
        self.dtls = dtls

        class _Echo:
            async def _handle_data(self, data: bytes) -> None:
                await dtls._send_data(data)

        dtls._register_data_receiver(_Echo())
        try:
            await dtls.start(params)
            self.ended.set()
            if dtls.state != "connected":
                self.failure = f"aiortc's DTLS transport is {dtls.state} after start()"
            else:
                self._record(dtls)
            await self._stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(dtls.stop(), 0.5)
            ice.queue.put_nowait(None)
            transport.close()

    def _record(self, dtls: Any) -> None:
        from cryptography.hazmat.primitives import serialization

        ssl = dtls._ssl
        cert = ssl.get_peer_certificate(as_cryptography=True)
        self.peer_der = None if cert is None else cert.public_bytes(serialization.Encoding.DER)
        raw = ssl.get_selected_srtp_profile()
        name = raw.decode() if raw else None
        material = None
        if name:
            length = SrtpProfile.from_openssl_name(name).keying_material_length
            material = bytes(ssl.export_keying_material(SRTP_EXPORTER_LABEL.encode(), length)).hex()
        self.info = Negotiated(
            version=ssl.get_protocol_version_name(),
            cipher=ssl.get_cipher_name(),
            srtp_profile=name,
            keying_material=material,
            extra={"aiortc_dtls_role": dtls._role, "ice_role": self.ice_role},
        )
        self.done.set()


def _check_srtp(out: CellOutcome, ctx: CellContext, endpoint: _Endpoint) -> None:
    """Check aiortc's libsrtp sessions against keys split from our exported material."""
    import pylibsrtp

    dtls = endpoint.dtls
    spec = ctx.spec
    if out.ours.keying_material is None or spec.profile is None or dtls is None:
        out.add("srtp_both_ways", False, "no keying material or no aiortc transport")
        return
    if dtls._tx_srtp is None or dtls._rx_srtp is None:
        out.add("srtp_both_ways", False, "aiortc set up no SRTP sessions")
        return
    keys = SrtpKeys.from_keying_material(
        spec.profile, bytes.fromhex(out.ours.keying_material), spec.role
    )
    ours_in = pylibsrtp.Session(
        pylibsrtp.Policy(
            key=keys.remote_master_key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=spec.profile.iana_id,
        )
    )
    ours_out = pylibsrtp.Session(
        pylibsrtp.Policy(
            key=keys.local_master_key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=spec.profile.iana_id,
        )
    )
    try:
        got_in = ours_in.unprotect(dtls._tx_srtp.protect(_RTP))
    except pylibsrtp.Error as exc:
        got_in = f"error {exc}".encode()
    try:
        got_out = dtls._rx_srtp.unprotect(ours_out.protect(_RTP))
    except pylibsrtp.Error as exc:
        got_out = f"error {exc}".encode()
    ok_in, ok_out = got_in == _RTP, got_out == _RTP
    out.add(
        "srtp_both_ways",
        ok_in and ok_out,
        f"aiortc->us {'decrypted' if ok_in else got_in!r}, "
        f"us->aiortc {'decrypted' if ok_out else got_out!r} (libsrtp via pylibsrtp)",
    )


class AiortcPeer(Peer):
    """aiortc's RTCDtlsTransport (pyOpenSSL + libsrtp) over a fake ICE transport."""

    name = "aiortc"
    profiles = (
        SrtpProfile.AES128_CM_SHA1_80,
        SrtpProfile.AEAD_AES_128_GCM,
        SrtpProfile.AEAD_AES_256_GCM,
    )
    key_types = ("ecdsa-p256",)  # aiortc offers and accepts ECDHE-ECDSA suites only
    roles = (Role.CLIENT, Role.SERVER)
    install = install_command("aiortc")

    def availability(self) -> Availability:
        """Available when aiortc (and so pyOpenSSL and pylibsrtp) imports."""
        try:
            aiortc = _aiortc()
            import OpenSSL
            import pylibsrtp
            from OpenSSL import SSL
        except ImportError as exc:
            return Availability(
                False, reason=f"aiortc is not installed ({exc})", install=self.install
            )
        built = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
        return Availability(
            True,
            version=f"aiortc {aiortc.__version__} (pyOpenSSL {OpenSSL.__version__}, {built}; "
            f"pylibsrtp {pylibsrtp.__version__})",
        )

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run one cell against aiortc's transport, then check its SRTP sessions."""
        made: list[_Endpoint] = []

        def make(c: CellContext, cert: Certificate | None) -> Endpoint:
            made.append(_Endpoint(c, cert))
            return made[0]

        out = run_standard_cell(ctx, make)
        if ctx.spec.kind is CellKind.HANDSHAKE and made and made[0].done.is_set():
            _check_srtp(out, ctx, made[0])
        return out
