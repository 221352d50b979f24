"""Mbed TLS's ``ssl_server2`` / ``ssl_client2``, built from Debian's source by install-peers.

Mbed TLS 2.28 (Debian bookworm) with ``MBEDTLS_SSL_DTLS_SRTP`` switched on: ``dtls=1
use_srtp=1 srtp_force_profile=N`` offers one profile (1 = SRTP_AES128_CM_HMAC_SHA1_80, 2 =
..._32; it has no AEAD profiles). Both programs print the protocol, the cipher suite (IANA name
with dashes), the peer certificate (its serial number is compared with ours) and the RFC 5764
keying material they derive with ``mbedtls_ssl_tls_prf`` from the exported master secret and
randoms (a second implementation of the RFC 5705 exporter). Neither prints which profile was
negotiated. ssl_server2 always does the cookie exchange (HelloVerifyRequest); it answers any
request with a small HTTP page. ssl_client2 sends ``GET / HTTP/1.0`` and prints the reply;
its ``server_name`` is set to our certificate's CN, which it checks (``auth_mode=required``).
"""

from __future__ import annotations

import re
import subprocess

from dtls_ossl._roles import Role
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.srtp import SrtpProfile
from dtls_ossl_conformance._cell import (
    MTU,
    CellContext,
    CellOutcome,
    Endpoint,
    run_standard_cell,
)
from dtls_ossl_conformance._io import LOCALHOST, PeerProcess, free_udp_port
from dtls_ossl_conformance._model import Availability, CellFailure, Negotiated
from dtls_ossl_conformance._names import iana_to_openssl, install_command
from dtls_ossl_conformance._peer import Peer
from dtls_ossl_conformance._srcbuild import build_home, build_problem, recorded_version

__all__ = ["MbedTLSPeer"]

INSTALL = install_command("mbedtls")
_PROFILE_NUMBER = {SrtpProfile.AES128_CM_SHA1_80: 1, SrtpProfile.AES128_CM_SHA1_32: 2}
_REQUEST = b"GET / HTTP/1.0"
_REPLY = b"HTTP/1.0 200 OK"


def _home() -> str:
    return build_home("mbedtls")


def _serial(cert: Certificate) -> str:
    """Format the serial number as Mbed TLS prints it: ``41:2A:07:...``."""
    value = cert.x509.serial_number
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return ":".join(f"{b:02X}" for b in raw)


class _Endpoint(Endpoint):
    def __init__(self, ctx: CellContext, certificate: Certificate | None) -> None:
        super().__init__(ctx, certificate)
        if certificate is None:  # pragma: no cover - always given
            raise CellFailure("the Mbed TLS peer needs a certificate")
        self.cert_file, self.key_file = ctx.write_identity("peer", certificate)
        self.ours, _ = ctx.identities.pair(ctx.spec.key_type)
        self.ca_file, _ = ctx.write_identity("ours", self.ours)
        self.profile = ctx.spec.profile or SrtpProfile.AES128_CM_SHA1_80
        self.proc: PeerProcess | None = None
        self.is_server = False

    def _args(self, port: int) -> list[str]:
        return [
            "dtls=1",
            f"server_addr={LOCALHOST}",
            f"server_port={port}",
            f"crt_file={self.cert_file}",
            f"key_file={self.key_file}",
            f"ca_file={self.ca_file}",
            "auth_mode=required",
            "use_srtp=1",
            f"srtp_force_profile={_PROFILE_NUMBER[self.profile]}",
            f"mtu={MTU}",
        ]

    def _p(self) -> PeerProcess:
        if self.proc is None:  # pragma: no cover - started first
            raise CellFailure("the Mbed TLS peer was not started")
        return self.proc

    @property
    def own_line(self) -> bytes:  # type: ignore[override]
        return _REPLY if self.is_server else _REQUEST

    def start_server(self) -> tuple[str, int]:
        self.is_server = True
        port = free_udp_port()
        self.proc = self.ctx.spawn(
            ["stdbuf", "-oL", f"{_home()}/bin/ssl_server2", *self._args(port)]
        )
        self.proc.wait_for(
            rf"Bind on udp://{re.escape(LOCALHOST)}:{port}/ \.\.\. ok",
            self.ctx.deadline,
            "ssl_server2 to listen",
        )
        return LOCALHOST, port

    def start_client(self, port: int) -> None:
        self.proc = self.ctx.spawn(
            [
                "stdbuf",
                "-oL",
                f"{_home()}/bin/ssl_client2",
                *self._args(port),
                f"server_name={self.ours.common_name}",
            ]
        )

    def failed(self) -> str | None:
        p = self._p()
        m = p.search(r"^\s*! mbedtls_ssl_handshake returned .*$")
        if m is not None or p.proc.poll() is not None:
            who = "ssl_server2" if self.is_server else "ssl_client2"
            last = p.search(r"^Last error was: .*$")
            detail = m.group(0).strip() if m else f"exited with status {p.proc.returncode}"
            return f"{who}: {detail}" + (f" ({last.group(0)})" if last else "")
        return None

    def wait_established(self) -> None:
        self._p().wait_for(
            r"^\s+Keying material: [0-9A-F]+$", self.ctx.deadline, "Mbed TLS's keying material"
        )

    def negotiated(self) -> Negotiated:
        text = self._p().text()
        out = Negotiated()
        m = re.search(r"^\s+\[ Protocol is (\S+) \]$", text, re.MULTILINE)
        out.version = m.group(1) if m else None
        m = re.search(r"^\s+\[ Ciphersuite is (\S+) \]$", text, re.MULTILINE)
        out.cipher = iana_to_openssl(m.group(1)) if m else None
        m = re.search(r"^\s+Keying material: ([0-9A-F]+)$", text, re.MULTILINE)
        out.keying_material = m.group(1).lower() if m else None
        return out

    certificate_evidence = "serial number it printed compared"

    def received_certificate(self) -> bytes | None:
        m = self._p().search(r"^\s*serial number\s+: ([0-9A-F:]+)$")
        if m is None:
            return None
        return self.ours.der if m.group(1) == _serial(self.ours) else b""

    def expect_data(self, data: bytes) -> None:
        line = re.escape(data.decode().strip())
        self._p().wait_for(rf"^{line}$", self.ctx.deadline, "the Mbed TLS peer to print our data")

    def finish(self) -> None:
        if not self.is_server:
            self._p().wait_exit(min(1.0, self.ctx.deadline.remaining()))

    def completed_anyway(self) -> bool | None:
        p = self._p()
        if not self.is_server:
            p.wait_exit(min(1.0, self.ctx.deadline.remaining()))
        return p.search(r"^\s+\[ Protocol is ") is not None


class MbedTLSPeer(Peer):
    """Mbed TLS's test programs ssl_server2 and ssl_client2."""

    name = "mbedtls"
    profiles = tuple(_PROFILE_NUMBER)
    install = INSTALL
    lossy_roles = (Role.CLIENT, Role.SERVER)

    def availability(self) -> Availability:
        """Available when the source build left bin/ssl_server2 and bin/ssl_client2."""
        home = _home()
        problem = build_problem(home, ("bin/ssl_server2", "bin/ssl_client2"), INSTALL)
        if problem is not None:
            return problem
        version = recorded_version(home)
        if version is None:
            try:
                out = subprocess.run(
                    [f"{home}/bin/ssl_client2", "help"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                ).stdout
            except (OSError, subprocess.SubprocessError) as exc:
                return Availability(False, reason=f"ssl_client2: {exc}", install=INSTALL)
            m = re.search(r"build version: (.*?) \(build", out)
            version = m.group(1) if m else "Mbed TLS"
        return Availability(True, version=version)

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run one cell against ssl_server2 (we are the client) or ssl_client2."""
        return run_standard_cell(ctx, _Endpoint)
