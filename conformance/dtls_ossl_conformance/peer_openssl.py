"""The ``openssl s_server`` / ``s_client`` programs as a peer.

s_server always uses the cookie exchange (HelloVerifyRequest) for DTLS; both programs print
the cipher, the SRTP profile, the RFC 5705 keying material (``-keymatexport``), the certificate
they received, and relay stdin/stdout as application data. Lines written to their stdin start
with a digit because some leading letters (``q``, ``Q``, ``R``, ``k``...) are commands.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from dtls_ossl._roles import Role
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.srtp import SRTP_EXPORTER_LABEL, SrtpProfile
from dtls_ossl_conformance._cell import (
    MTU,
    CellContext,
    CellOutcome,
    Endpoint,
    run_standard_cell,
)
from dtls_ossl_conformance._io import LOCALHOST, PeerProcess, free_udp_port
from dtls_ossl_conformance._model import Availability, CellFailure, Negotiated
from dtls_ossl_conformance._names import install_command
from dtls_ossl_conformance._peer import Peer

__all__ = ["OpenSSLPeer"]

_CERT_RE = r"^{heading}\n(-----BEGIN CERTIFICATE-----\n[^-]+-----END CERTIFICATE-----\n)"


class _Endpoint(Endpoint):
    def __init__(self, ctx: CellContext, certificate: Certificate | None) -> None:
        super().__init__(ctx, certificate)
        if certificate is None:  # pragma: no cover - the CLI always gets our certificates
            raise CellFailure("the openssl peer needs a certificate")
        self.cert_file, self.key_file = ctx.write_identity("peer", certificate)
        self.proc: PeerProcess | None = None
        self.is_server = False

    def _srtp_args(self) -> list[str]:
        profile = self.ctx.spec.profile or SrtpProfile.AES128_CM_SHA1_80
        return [
            "-use_srtp",
            profile.openssl_name,
            "-keymatexport",
            SRTP_EXPORTER_LABEL,
            "-keymatexportlen",
            str(profile.keying_material_length),
        ]

    def start_server(self) -> tuple[str, int]:
        port = free_udp_port()
        self.is_server = True
        self.proc = self.ctx.spawn(
            [
                "openssl",
                "s_server",
                "-dtls1_2",
                "-accept",
                f"{LOCALHOST}:{port}",
                "-naccept",
                "1",
                "-cert",
                self.cert_file,
                "-key",
                self.key_file,
                "-mtu",
                str(MTU),
                "-verify",
                "1",
                *self._srtp_args(),
            ]
        )
        self.proc.wait_for(r"^ACCEPT$", self.ctx.deadline, "s_server to listen")
        return LOCALHOST, port

    def start_client(self, port: int) -> None:
        self.proc = self.ctx.spawn(
            [
                "openssl",
                "s_client",
                "-dtls1_2",
                "-connect",
                f"{LOCALHOST}:{port}",
                "-mtu",
                str(MTU),
                "-cert",
                self.cert_file,
                "-key",
                self.key_file,
                *self._srtp_args(),
            ]
        )

    def _p(self) -> PeerProcess:
        if self.proc is None:  # pragma: no cover - started first
            raise CellFailure("the openssl peer was not started")
        return self.proc

    def failed(self) -> str | None:
        p = self._p()
        if p.proc.poll() is not None:
            m = p.search(r"^.*(?:alert|error:[0-9A-F]{8}).*$")
            return f"openssl exited with status {p.proc.returncode}" + (
                f": {m.group(0).strip()}" if m else ""
            )
        return None

    def wait_established(self) -> None:
        self._p().wait_for(r"Keying material: [0-9A-F]+$", self.ctx.deadline, "keying material")

    def negotiated(self) -> Negotiated:
        p = self._p()
        text = p.text()
        out = Negotiated()
        if self.is_server:
            out.version = self._session_protocol(text)
            m = re.search(r"^CIPHER is (\S+)$", text, re.MULTILINE)
        else:
            m = re.search(r"^\s+Protocol\s+: (\S+)$", text, re.MULTILINE)
            out.version = m.group(1) if m else None
            m = re.search(r"^\s+Cipher\s+: (\S+)$", text, re.MULTILINE)
        out.cipher = m.group(1) if m else None
        m = re.search(r"^SRTP Extension negotiated, profile=(\S+)$", text, re.MULTILINE)
        out.srtp_profile = m.group(1) if m else None
        m = re.search(r"Keying material: ([0-9A-F]+)$", text, re.MULTILINE)
        out.keying_material = m.group(1).lower() if m else None
        return out

    def _session_protocol(self, text: str) -> str | None:
        """s_server prints no version line: decode the session it prints with sess_id."""
        m = re.search(
            r"-----BEGIN SSL SESSION PARAMETERS-----\n[^-]+-----END SSL SESSION PARAMETERS-----\n",
            text,
        )
        if m is None:
            return None
        try:
            decoded = subprocess.run(
                ["openssl", "sess_id", "-noout", "-text"],
                input=m.group(0),
                capture_output=True,
                text=True,
                timeout=max(0.1, self.ctx.deadline.remaining()),
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        v = re.search(r"^\s+Protocol\s+: (\S+)$", decoded, re.MULTILINE)
        return v.group(1) if v else None

    def received_certificate(self) -> bytes | None:
        heading = "Client certificate" if self.is_server else "Server certificate"
        m = self._p().search(_CERT_RE.format(heading=heading))
        return Certificate.from_pem(m.group(1)).der if m else None

    def expect_data(self, data: bytes) -> None:
        line = re.escape(data.decode().strip())
        self._p().wait_for(rf"^{line}$", self.ctx.deadline, "the peer to print our data")

    def send_data(self, data: bytes) -> None:
        self._p().write(data)

    def finish(self) -> None:
        p = self._p()
        if self.is_server:
            # Our close_notify ends s_server's session; -naccept 1 then makes it exit.
            p.wait_exit(min(1.0, self.ctx.deadline.remaining()))
        else:
            p.close_stdin()
            p.wait_exit(min(1.0, self.ctx.deadline.remaining()))

    def completed_anyway(self) -> bool | None:
        p = self._p()
        rc = p.wait_exit(min(1.0, self.ctx.deadline.remaining()))
        if not self.is_server and rc is not None:
            # s_client prints its session summary (with keying material) even after a failed
            # handshake: only its exit status tells.
            return rc == 0
        return p.search(r"Keying material: [0-9A-F]+$") is not None


class OpenSSLPeer(Peer):
    """OpenSSL's own programs, on the system OpenSSL (the same library we bind)."""

    name = "openssl"
    profiles = tuple(SrtpProfile)
    install = install_command("openssl")
    lossy_roles: tuple[Role, ...] = (Role.CLIENT, Role.SERVER)

    def availability(self) -> Availability:
        """Available when the ``openssl`` program is on PATH."""
        exe = shutil.which("openssl")
        if exe is None:
            return Availability(False, reason="openssl is not installed", install=self.install)
        try:
            version = subprocess.run(
                [exe, "version"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            version = version.split(" (Library")[0]
        except (OSError, subprocess.SubprocessError) as exc:
            return Availability(
                False, reason=f"openssl version failed: {exc}", install=self.install
            )
        return Availability(True, version=version)

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run one cell against s_server (we are the client) or s_client."""
        return run_standard_cell(ctx, _Endpoint)
