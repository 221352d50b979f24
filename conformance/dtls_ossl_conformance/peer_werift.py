"""werift-dtls (TypeScript, npm) as a DTLS 1.2 client or server, driven by a small Node script.

``node/werift_peer.js`` runs werift-dtls's ``DtlsServer`` or ``DtlsClient`` on a UDP socket
on 127.0.0.1 with our peer certificate (ECDSA or RSA), one SRTP profile and a certificate
request, prints what it negotiated (cipher suite, curve, SRTP profile, the keying material it
exports with ``exportKeyingMaterial``, the certificate it received) as JSON, and echoes the
application data it receives. werift-dtls offers AES-128-GCM suites only (ECDHE-ECDSA and
ECDHE-RSA), x25519 and P-256, the SRTP profiles AES128_CM_SHA1_80 and AEAD_AES_128_GCM, and
sends no close_notify. ``dtls-ossl-conformance install-peers werift`` copies ``node/`` (shipped
with this package) into the peer cache and runs ``npm ci`` there (version pinned in
``package.json`` and ``package-lock.json``); the peer runs from the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import time

from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.srtp import SrtpProfile
from dtls_ossl_conformance._cell import CellContext, CellOutcome, Endpoint, run_standard_cell
from dtls_ossl_conformance._io import LOCALHOST, PeerProcess
from dtls_ossl_conformance._model import Availability, CellFailure, Negotiated
from dtls_ossl_conformance._names import install_command, peers_dir
from dtls_ossl_conformance._peer import Peer

__all__ = ["WeriftPeer"]

NODE_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
"The Node script and its pinned package files, as shipped (never written to)."
NODE_FILES = ("package.json", "package-lock.json", "werift_peer.js")


def node_dir() -> str:
    """Where install-peers puts the script and its node_modules (in the peer cache)."""
    return str(peers_dir() / "werift")


class _Endpoint(Endpoint):
    echoes = True

    def __init__(self, ctx: CellContext, certificate: Certificate | None) -> None:
        super().__init__(ctx, certificate)
        if certificate is None:  # pragma: no cover - always given
            raise CellFailure("the werift peer needs a certificate")
        self.cert_file, self.key_file = ctx.write_identity("peer", certificate)
        self.profile = ctx.spec.profile or SrtpProfile.AES128_CM_SHA1_80
        self.kind = "RSA" if ctx.spec.key_type.startswith("rsa") else "ECDSA"
        self.proc: PeerProcess | None = None

    def _p(self) -> PeerProcess:
        if self.proc is None:  # pragma: no cover - started first
            raise CellFailure("the werift peer was not started")
        return self.proc

    def _start(self, mode: str, port: int | None) -> PeerProcess:
        node = shutil.which("node") or "node"
        args = [
            node,
            os.path.join(node_dir(), "werift_peer.js"),
            mode,
            self.cert_file,
            self.key_file,
            self.kind,
        ]
        args.append(str(self.profile.iana_id))
        if port is not None:
            args.append(str(port))
        self.proc = self.ctx.spawn(args)
        return self.proc

    def start_server(self) -> tuple[str, int]:
        m = self._start("server", None).wait_for(
            r"^LISTENING (\d+)$", self.ctx.deadline, "the werift server to listen"
        )
        return LOCALHOST, int(m.group(1))

    def start_client(self, port: int) -> None:
        self._start("client", port)

    def failed(self) -> str | None:
        p = self._p()
        m = p.search(r"^ERROR .*$")
        if m:
            return f"werift: {m.group(0)}"
        if p.proc.poll() is not None:
            return f"node exited with status {p.proc.returncode}"
        return None

    def wait_established(self) -> None:
        self._p().wait_for(r"^CONNECTED ", self.ctx.deadline, "werift's onConnect")

    def _info(self) -> dict[str, str | None]:
        m = self._p().search(r"^CONNECTED (.*)$")
        return {} if m is None else dict(json.loads(m.group(1)))

    def negotiated(self) -> Negotiated:
        info = self._info()
        curve = info.get("curve")
        return Negotiated(
            cipher=info.get("cipher"),
            srtp_profile=info.get("srtp_profile"),
            keying_material=info.get("keying_material"),
            extra={} if curve is None else {"curve": curve},
        )

    def received_certificate(self) -> bytes | None:
        der = self._info().get("remote_certificate")
        return None if der is None else bytes.fromhex(der)

    def completed_anyway(self) -> bool | None:
        end = time.monotonic() + min(0.3, self.ctx.deadline.remaining())
        while time.monotonic() < end and self._p().search(r"^CONNECTED ") is None:
            time.sleep(0.01)
        return self._p().search(r"^CONNECTED ") is not None


class WeriftPeer(Peer):
    """werift-dtls from npm, in a Node process."""

    name = "werift"
    profiles = (SrtpProfile.AES128_CM_SHA1_80, SrtpProfile.AEAD_AES_128_GCM)
    install = install_command("werift")

    def availability(self) -> Availability:
        """Available when node runs and werift-dtls is installed next to the script."""
        if shutil.which("node") is None:
            return Availability(False, reason="node is not installed", install=self.install)
        try:
            package = os.path.join(node_dir(), "node_modules", "werift-dtls", "package.json")
            with open(package, encoding="utf-8") as f:
                version = json.load(f)["version"]
        except (OSError, ValueError, KeyError) as exc:
            return Availability(
                False, reason=f"werift-dtls is not installed ({exc})", install=self.install
            )
        return Availability(True, version=f"werift-dtls {version} (Node.js)")

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run one cell against the werift Node script."""
        return run_standard_cell(ctx, _Endpoint)
