"""wolfSSL's example ``server`` and ``client``, built from Debian's source by install-peers.

Built with ``--enable-dtls --enable-dtls13 --enable-srtp`` and run as ``-u -v d``: the DTLS
"downgrade" methods (``wolfDTLS_client_method``/``..._server_method``), which offer or accept
DTLS 1.3 and fall back to 1.2. Our side speaks DTLS 1.2 only, so the client's ClientHello lists
0xfefc in supported_versions and must settle on 1.2 (our server does not set the RFC 8446
§4.1.3 downgrade sentinel: OpenSSL 3.0 has no DTLS 1.3, and the sentinel is only for servers
that support 1.3).

Both programs print the version, the cipher suite (IANA name) and the exported DTLS-SRTP
keying material (``wolfSSL_export_dtls_srtp_keying_material``); neither prints the SRTP profile
it negotiated. They verify our self-signed certificate against itself as the only trust anchor
(``-A``), so a completed handshake proves they received our certificate. The client sends
``hello wolfssl!`` and prints the reply; the server prints ``Client message: ...`` and replies
``I hear you fa shizzle!``. The examples look for ``certs/dh2048.pem`` under their working
directory, so each cell's scratch directory gets a copy.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.srtp import SrtpProfile
from dtls_ossl_conformance._cell import CellContext, CellOutcome, Endpoint, run_standard_cell
from dtls_ossl_conformance._io import LOCALHOST, PeerProcess, free_udp_port, wait_udp_bound
from dtls_ossl_conformance._model import Availability, CellFailure, Negotiated
from dtls_ossl_conformance._names import iana_to_openssl, install_command
from dtls_ossl_conformance._peer import Peer
from dtls_ossl_conformance._srcbuild import build_home, build_problem, recorded_version

__all__ = ["WolfSSLPeer"]

INSTALL = install_command("wolfssl")
_HELLO = b"hello wolfssl!"
_REPLY = b"I hear you fa shizzle!"


def _home() -> str:
    return build_home("wolfssl")


class _Endpoint(Endpoint):
    def __init__(self, ctx: CellContext, certificate: Certificate | None) -> None:
        super().__init__(ctx, certificate)
        if certificate is None:  # pragma: no cover - always given
            raise CellFailure("the wolfSSL peer needs a certificate")
        self.cert_file, self.key_file = ctx.write_identity("peer", certificate)
        ours, _ = ctx.identities.pair(ctx.spec.key_type)
        self.ca_file, _ = ctx.write_identity("ours", ours)
        os.makedirs(f"{ctx.dir}/certs", exist_ok=True)
        shutil.copy(f"{_home()}/certs/dh2048.pem", f"{ctx.dir}/certs/dh2048.pem")
        self.profile = ctx.spec.profile or SrtpProfile.AES128_CM_SHA1_80
        self.proc: PeerProcess | None = None
        self.is_server = False

    def _args(self) -> list[str]:
        return [
            "-u",
            "-v",
            "d",
            "-c",
            self.cert_file,
            "-k",
            self.key_file,
            "-A",
            self.ca_file,
            "--srtp",
            self.profile.openssl_name,
        ]

    def _p(self) -> PeerProcess:
        if self.proc is None:  # pragma: no cover - started first
            raise CellFailure("the wolfSSL peer was not started")
        return self.proc

    @property
    def own_line(self) -> bytes:  # type: ignore[override]
        return _REPLY if self.is_server else _HELLO

    def start_server(self) -> tuple[str, int]:
        self.is_server = True
        port = free_udp_port()
        self.proc = self.ctx.spawn(
            ["stdbuf", "-oL", f"{_home()}/bin/server", "-p", str(port), *self._args()]
        )
        wait_udp_bound(port, self.proc, self.ctx.deadline, "the wolfSSL server to listen")
        return LOCALHOST, port

    def start_client(self, port: int) -> None:
        self.proc = self.ctx.spawn(
            [
                "stdbuf",
                "-oL",
                f"{_home()}/bin/client",
                "-h",
                LOCALHOST,
                "-p",
                str(port),
                *self._args(),
            ]
        )

    def failed(self) -> str | None:
        p = self._p()
        if p.proc.poll() is not None:
            m = p.search(r"^.*(?:error|failed).*$")
            who = "server" if self.is_server else "client"
            return f"wolfSSL {who} exited with status {p.proc.returncode}" + (
                f": {m.group(0).strip()}" if m else ""
            )
        return None

    def wait_established(self) -> None:
        self._p().wait_for(
            r"^DTLS SRTP: Exported key material: [0-9A-F]+$",
            self.ctx.deadline,
            "wolfSSL's exported keying material",
        )

    def negotiated(self) -> Negotiated:
        text = self._p().text()
        out = Negotiated()
        m = re.search(r"^SSL version is (\S+)$", text, re.MULTILINE)
        out.version = m.group(1) if m else None
        m = re.search(r"^SSL cipher suite is (\S+)$", text, re.MULTILINE)
        out.cipher = iana_to_openssl(m.group(1)) if m else None
        m = re.search(r"^DTLS SRTP: Exported key material: ([0-9A-F]+)$", text, re.MULTILINE)
        out.keying_material = m.group(1).lower() if m else None
        m = re.search(r"^SSL curve name is (\S+)$", text, re.MULTILINE)
        if m:
            out.extra["curve"] = m.group(1)
        return out

    certificate_evidence = "it verified us with our certificate as its only trust anchor"

    def received_certificate(self) -> bytes | None:
        # It verified our certificate with that same certificate as its only trust anchor: it
        # completed, so the certificate it received is ours (signed by our key, same name).
        ours, _ = self.ctx.identities.pair(self.ctx.spec.key_type)
        return ours.der if self._p().search(r"^SSL version is ") else None

    def expect_data(self, data: bytes) -> None:
        line = re.escape(data.decode().strip())
        prefix = "Client message: " if self.is_server else ""
        self._p().wait_for(
            rf"^{prefix}{line}$", self.ctx.deadline, "the wolfSSL peer to print our data"
        )

    def finish(self) -> None:
        self._p().wait_exit(min(1.0, self.ctx.deadline.remaining()))

    def completed_anyway(self) -> bool | None:
        p = self._p()
        p.wait_exit(min(1.0, self.ctx.deadline.remaining()))
        return p.search(r"^SSL version is ") is not None


class WolfSSLPeer(Peer):
    """wolfSSL's example programs (client offers DTLS 1.3 and falls back to 1.2)."""

    name = "wolfssl"
    profiles = tuple(SrtpProfile)
    install = INSTALL
    # No lossy cells: wolfSSL 5.5.4 fails them for its own reasons (see the README): as a server
    # it does not answer a retransmitted final client flight with its last flight (RFC 6347
    # §4.2.4 MUST), and its version-negotiating client (-v d) aborts with BAD_STATE_E (-192)
    # when the server's flight arrives out of order.
    offers_dtls13 = True

    def availability(self) -> Availability:
        """Available when the source build left bin/server and bin/client in the peer cache."""
        home = _home()
        problem = build_problem(home, ("bin/server", "bin/client", "certs/dh2048.pem"), INSTALL)
        if problem is not None:
            return problem
        version = recorded_version(home)
        if version is None:
            try:
                first = subprocess.run(
                    [f"{home}/bin/client", "-?"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                ).stdout.splitlines()[0]
            except (OSError, subprocess.SubprocessError, IndexError) as exc:
                return Availability(False, reason=f"client -?: {exc}", install=INSTALL)
            version = first.split(" NOTE")[0]
        return Availability(True, version=version)

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run one cell against the wolfSSL server (we are the client) or client."""
        return run_standard_cell(ctx, _Endpoint)
