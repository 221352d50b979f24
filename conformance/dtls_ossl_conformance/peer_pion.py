"""pion/dtls (Go, v2), through a small peer built offline from ``go/pion_peer.go``.

Debian's ``golang-go`` and ``golang-github-pion-dtls.v2-dev`` build it in GOPATH mode
(``GOPATH=/usr/share/gocode GO111MODULE=off go build``) into ``<peer cache>/pion/<hash>/`` (the
hash of the Go source, so an edited source is rebuilt). The peer offers one SRTP profile,
requires the extended master secret, asks for our certificate and prints its sha-256
fingerprint, then prints the cipher suite (IANA name), the negotiated profile (IANA id) and the
RFC 5764 keying material from ``State.ExportKeyingMaterial``, and echoes one datagram. pion v2
speaks only DTLS 1.2 and does not print a version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.srtp import SrtpProfile
from dtls_ossl_conformance._cell import CellContext, CellOutcome, Endpoint, run_standard_cell
from dtls_ossl_conformance._io import LOCALHOST, PeerProcess, free_udp_port, wait_udp_bound
from dtls_ossl_conformance._model import Availability, CellFailure, Negotiated
from dtls_ossl_conformance._names import iana_to_openssl, install_command, peers_dir
from dtls_ossl_conformance._peer import Peer

__all__ = ["PionPeer"]

INSTALL = install_command("pion")
GOPATH = "/usr/share/gocode"
PION_SOURCE_DIR = f"{GOPATH}/src/github.com/pion/dtls/v2"
SOURCE = Path(__file__).resolve().parent / "go" / "pion_peer.go"
BUILD_TIMEOUT = 300.0


def _binary() -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    return peers_dir() / "pion" / digest / "pion_peer"


def build() -> Path:
    """Build the Go peer unless the binary for this source exists; return its path."""
    binary = _binary()
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOPATH=GOPATH, GO111MODULE="off", GOFLAGS="")
    env.setdefault("GOCACHE", str(binary.parent.parent / "gocache"))
    tmp = binary.with_suffix(".tmp")
    subprocess.run(
        ["go", "build", "-o", str(tmp), str(SOURCE)],
        env=env,
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT,
    )
    tmp.replace(binary)
    return binary


class _Endpoint(Endpoint):
    echoes = True
    certificate_evidence = "sha-256 fingerprint it printed compared"

    def __init__(self, ctx: CellContext, certificate: Certificate | None) -> None:
        super().__init__(ctx, certificate)
        if certificate is None:  # pragma: no cover - always given
            raise CellFailure("the pion peer needs a certificate")
        self.cert_file, self.key_file = ctx.write_identity("peer", certificate)
        self.ours, _ = ctx.identities.pair(ctx.spec.key_type)
        self.profile = ctx.spec.profile or SrtpProfile.AES128_CM_SHA1_80
        self.proc: PeerProcess | None = None
        self.is_server = False

    def _start(self, role: str, port: int) -> PeerProcess:
        self.proc = self.ctx.spawn(
            [
                str(_binary()),
                role,
                str(port),
                self.cert_file,
                self.key_file,
                str(self.profile.iana_id),
                str(self.profile.keying_material_length),
            ]
        )
        return self.proc

    def _p(self) -> PeerProcess:
        if self.proc is None:  # pragma: no cover - started first
            raise CellFailure("the pion peer was not started")
        return self.proc

    def start_server(self) -> tuple[str, int]:
        self.is_server = True
        port = free_udp_port()
        proc = self._start("server", port)
        proc.wait_for(r"^LISTENING ", self.ctx.deadline, "the pion peer to listen")
        wait_udp_bound(port, proc, self.ctx.deadline, "the pion peer")
        return LOCALHOST, port

    def start_client(self, port: int) -> None:
        self._start("client", port)

    def failed(self) -> str | None:
        p = self._p()
        m = p.search(r"^ERROR: .*$")
        if m is not None:
            return f"pion: {m.group(0)}"
        if p.proc.poll() is not None and p.search(r"^HANDSHAKE OK$") is None:
            return f"pion: exited with status {p.proc.returncode}"
        return None

    def wait_established(self) -> None:
        self._p().wait_for(
            r"^KEYING_MATERIAL [0-9a-f]+$", self.ctx.deadline, "pion's keying material"
        )

    def negotiated(self) -> Negotiated:
        p = self._p()
        out = Negotiated()
        m = p.search(r"^CIPHER (\S+)$")
        out.cipher = iana_to_openssl(m.group(1)) if m else None
        m = p.search(r"^SRTP_PROFILE (\d+)$")
        out.srtp_profile = SrtpProfile.from_iana_id(int(m.group(1))).openssl_name if m else None
        m = p.search(r"^KEYING_MATERIAL ([0-9a-f]+)$")
        out.keying_material = m.group(1) if m else None
        return out

    def received_certificate(self) -> bytes | None:
        m = self._p().search(r"^PEER_FINGERPRINT sha-256 ([0-9A-F:]+)$")
        if m is None:
            return None
        want = self.ours.fingerprint("sha-256").value.hex(":").upper()
        return self.ours.der if m.group(1) == want else b""

    def finish(self) -> None:
        self._p().wait_exit(min(1.0, self.ctx.deadline.remaining()))

    def completed_anyway(self) -> bool | None:
        p = self._p()
        p.wait_exit(min(1.0, self.ctx.deadline.remaining()))
        return p.search(r"^HANDSHAKE OK$") is not None


class PionPeer(Peer):
    """pion/dtls v2 (Go), Debian's packaged source."""

    name = "pion"
    profiles = (
        SrtpProfile.AES128_CM_SHA1_80,
        SrtpProfile.AES128_CM_SHA1_32,
        SrtpProfile.AEAD_AES_128_GCM,
        SrtpProfile.AEAD_AES_256_GCM,
    )
    install = INSTALL

    def availability(self) -> Availability:
        """Available when Go and pion's source are installed; builds the peer (cached)."""
        if shutil.which("go") is None:
            return Availability(False, reason="go not found", install=INSTALL)
        if not os.path.isdir(PION_SOURCE_DIR):
            return Availability(False, reason=f"{PION_SOURCE_DIR} missing", install=INSTALL)
        try:
            build()
        except subprocess.CalledProcessError as exc:
            err = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            return Availability(
                False, reason=f"go build failed: {err[-1] if err else exc}", install=INSTALL
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return Availability(False, reason=f"go build: {exc}", install=INSTALL)
        version = "pion/dtls v2"
        try:
            out = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", "golang-github-pion-dtls.v2-dev"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            version = f"pion/dtls {out.split('-')[0]} (Debian {out}, GOPATH build)"
        return Availability(True, version=version)

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run one cell against the Go peer."""
        return run_standard_cell(ctx, _Endpoint)
