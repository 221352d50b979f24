"""GnuTLS's ``gnutls-serv`` / ``gnutls-cli`` programs as a peer (Debian ``gnutls-bin``).

GnuTLS 3.7 has no AEAD SRTP profiles and names the others ``SRTP_AES128_CM_HMAC_SHA1_80`` and
``..._32``. gnutls-cli prints the negotiated version and cipher (its own notation, mapped to
OpenSSL's names here), the SRTP profile, the exported keying material (``--keymatexport``) and,
with ``--print-cert``, the certificate we sent; it relays stdin/stdout as application data.
gnutls-serv prints no export and no version: with ``-d 2`` its log names the cipher suite it
selected (IANA number), and ``--echo`` sends our data back. gnutls-serv listens on every
address of the port (IPv4 and IPv6); our client only talks to 127.0.0.1.
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

__all__ = ["GnuTLSPeer", "gnutls_cipher_to_openssl"]

_NAMES = {
    SrtpProfile.AES128_CM_SHA1_80: "SRTP_AES128_CM_HMAC_SHA1_80",
    SrtpProfile.AES128_CM_SHA1_32: "SRTP_AES128_CM_HMAC_SHA1_32",
}

# IANA TLS cipher suite numbers of our DEFAULT_CIPHERS, and OpenSSL's names for them.
_IANA = {
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
    0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
    0xC009: "ECDHE-ECDSA-AES128-SHA",
    0xC013: "ECDHE-RSA-AES128-SHA",
    0xC00A: "ECDHE-ECDSA-AES256-SHA",
    0xC014: "ECDHE-RSA-AES256-SHA",
}
_BULK = {
    "AES-128-GCM": "AES128-GCM-SHA256",
    "AES-256-GCM": "AES256-GCM-SHA384",
    "CHACHA20-POLY1305": "CHACHA20-POLY1305",
    "AES-128-CBC": "AES128-SHA",
    "AES-256-CBC": "AES256-SHA",
}


def gnutls_cipher_to_openssl(description: str) -> str | None:
    """Map gnutls-cli's ``- Description:`` line to OpenSSL's suite name, if it is one of ours.

    ``(DTLS1.2-X.509)-(ECDHE-SECP256R1)-(ECDSA-SHA256)-(AES-256-GCM)`` becomes
    ``ECDHE-ECDSA-AES256-GCM-SHA384``.
    """
    parts = re.findall(r"\(([^)]*)\)", description)
    if len(parts) < 4 or not parts[1].startswith("ECDHE"):
        return None
    auth = "ECDSA" if parts[2].startswith("ECDSA") else "RSA"
    bulk = _BULK.get(parts[3])
    return None if bulk is None else f"ECDHE-{auth}-{bulk}"


class _Endpoint(Endpoint):
    def __init__(self, ctx: CellContext, certificate: Certificate | None) -> None:
        super().__init__(ctx, certificate)
        if certificate is None:  # pragma: no cover - always given
            raise CellFailure("the GnuTLS peer needs a certificate")
        self.cert_file, self.key_file = ctx.write_identity("peer", certificate)
        self.profile = ctx.spec.profile or SrtpProfile.AES128_CM_SHA1_80
        self.proc: PeerProcess | None = None
        self.is_server = False

    def _p(self) -> PeerProcess:
        if self.proc is None:  # pragma: no cover - started first
            raise CellFailure("the GnuTLS peer was not started")
        return self.proc

    @property
    def echoes(self) -> bool:  # type: ignore[override]
        return self.is_server

    def start_server(self) -> tuple[str, int]:
        self.is_server = True
        port = free_udp_port()
        self.proc = self.ctx.spawn(
            [
                "gnutls-serv",
                "--udp",
                "--port",
                str(port),
                "--echo",
                "--mtu",
                str(MTU),
                "--x509certfile",
                self.cert_file,
                "--x509keyfile",
                self.key_file,
                "--srtp-profiles",
                _NAMES[self.profile],
                "--require-client-cert",
                "--debug",
                "2",
            ]
        )
        self.proc.wait_for(
            r"^UDP Echo Server listening on IPv4", self.ctx.deadline, "gnutls-serv to listen"
        )
        return LOCALHOST, port

    def start_client(self, port: int) -> None:
        self.proc = self.ctx.spawn(
            [
                "gnutls-cli",
                "--udp",
                "--port",
                str(port),
                "--mtu",
                str(MTU),
                "--insecure",
                "--print-cert",
                "--x509certfile",
                self.cert_file,
                "--x509keyfile",
                self.key_file,
                "--srtp-profiles",
                _NAMES[self.profile],
                "--keymatexport",
                SRTP_EXPORTER_LABEL,
                "--keymatexportsize",
                str(self.profile.keying_material_length),
                LOCALHOST,
            ]
        )

    def failed(self) -> str | None:
        p = self._p()
        if p.proc.poll() is not None:
            m = p.search(r"^\*\*\* .*$")
            return f"{p.name} exited with status {p.proc.returncode}" + (
                f": {m.group(0)}" if m else ""
            )
        return None

    def wait_established(self) -> None:
        if self.is_server:
            self._p().wait_for(r"ciphersuite ", self.ctx.deadline, "gnutls-serv's cipher suite")
        else:
            self._p().wait_for(
                r"^- Handshake was completed", self.ctx.deadline, "gnutls-cli's handshake"
            )

    def negotiated(self) -> Negotiated:
        text = self._p().text()
        out = Negotiated()
        if self.is_server:
            m = re.search(r"ciphersuite ([0-9a-f]{2})\.([0-9a-f]{2}): (\S+)", text)
            if m:
                out.cipher = _IANA.get(int(m.group(1) + m.group(2), 16), m.group(3))
            return out
        m = re.search(r"^- Description: (.*)$", text, re.MULTILINE)
        if m:
            version = re.match(r"\(DTLS(\d\.\d)", m.group(1))
            out.version = f"DTLSv{version.group(1)}" if version else m.group(1)
            out.cipher = gnutls_cipher_to_openssl(m.group(1)) or m.group(1)
        m = re.search(r"^- SRTP profile: (\S+)$", text, re.MULTILINE)
        if m:
            out.srtp_profile = next(
                (p.openssl_name for p, n in _NAMES.items() if n == m.group(1)), m.group(1)
            )
        m = re.search(r"^- Key material: ([0-9a-fA-F]+)$", text, re.MULTILINE)
        out.keying_material = m.group(1).lower() if m else None
        return out

    def received_certificate(self) -> bytes | None:
        if self.is_server:
            return None
        # --print-cert shows the certificate *we* sent (the server's) in PEM.
        m = self._p().search(r"(-----BEGIN CERTIFICATE-----\n[^-]+-----END CERTIFICATE-----\n)")
        return Certificate.from_pem(m.group(1)).der if m else None

    def expect_data(self, data: bytes) -> None:
        line = re.escape(data.decode().strip())
        self._p().wait_for(rf"^{line}$", self.ctx.deadline, "gnutls-cli to print our data")

    def send_data(self, data: bytes) -> None:
        self._p().write(data)

    def finish(self) -> None:
        if not self.is_server:
            self._p().close_stdin()
            self._p().wait_exit(min(1.0, self.ctx.deadline.remaining()))

    def completed_anyway(self) -> bool | None:
        if self.is_server:
            return None
        p = self._p()
        p.wait_exit(min(1.0, self.ctx.deadline.remaining()))
        return p.search(r"^- Handshake was completed") is not None


class GnuTLSPeer(Peer):
    """GnuTLS's command-line programs."""

    name = "gnutls"
    profiles = tuple(_NAMES)
    install = install_command("gnutls")
    lossy_roles = (Role.CLIENT, Role.SERVER)

    def availability(self) -> Availability:
        """Available when gnutls-cli and gnutls-serv are on PATH."""
        cli, serv = shutil.which("gnutls-cli"), shutil.which("gnutls-serv")
        if cli is None or serv is None:
            return Availability(
                False, reason="gnutls-cli/gnutls-serv are not installed", install=self.install
            )
        try:
            out = subprocess.run(
                [cli, "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            return Availability(False, reason=f"gnutls-cli --version: {exc}", install=self.install)
        first = out.strip().splitlines()[0] if out.strip() else "gnutls-cli"
        return Availability(True, version=first)

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run one cell against gnutls-serv (we are the client) or gnutls-cli."""
        return run_standard_cell(ctx, _Endpoint)
