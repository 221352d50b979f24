"""Headless Chromium (BoringSSL) as a WebRTC peer, in a private network namespace.

Each cell runs ``python -m dtls_ossl_conformance._browser_cell`` under ``unshare -n`` (root
only), so the browser and our side share a namespace whose only interface is ``lo`` and nothing
leaves loopback. :class:`BrowserPeer` is shared with Firefox (:mod:`.peer_firefox`).
The browser offers an audio m-line from a fake microphone; we answer as an
ICE-lite endpoint with one host candidate on 127.0.0.1 and ``a=setup:active`` or ``passive``.
The checks compare what the page's ``getStats()`` reports (dtlsState, tlsVersion, dtlsCipher,
srtpCipher, dtlsRole, the remote certificate's fingerprint) with our side, and prove the
keys by decrypting the browser's SRTP with pylibsrtp and our ``srtp_keys()``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dtls_ossl
from dtls_ossl.webrtc.srtp import SrtpProfile
from dtls_ossl_conformance._cell import CellContext, CellOutcome
from dtls_ossl_conformance._model import (
    Availability,
    CellFailure,
    Check,
    CheckStatus,
    Negotiated,
)
from dtls_ossl_conformance._names import install_command
from dtls_ossl_conformance._peer import Peer

__all__ = ["BrowserPeer", "ChromiumPeer"]


def _negotiated(doc: dict[str, object]) -> Negotiated:
    base = {k: doc.get(k) for k in ("version", "cipher", "srtp_profile", "keying_material")}
    extra = {k: str(v) for k, v in doc.items() if k not in base}
    return Negotiated(
        version=_str(base["version"]),
        cipher=_str(base["cipher"]),
        srtp_profile=_str(base["srtp_profile"]),
        keying_material=_str(base["keying_material"]),
        extra=extra,
    )


def _str(value: object) -> str | None:
    return None if value is None else str(value)


class BrowserPeer(Peer):
    """A browser driven through an RTCPeerConnection page, in a lo-only network namespace."""

    cell_timeout_factor = 3.0
    offers_dtls13 = True
    program = ""
    "The browser's executable."

    def availability(self) -> Availability:
        """Available with the browser, unshare, ip, pylibsrtp, and root."""
        exe = shutil.which(self.program)
        if exe is None:
            return Availability(
                False, reason=f"{self.program} is not installed", install=self.install
            )
        missing = [p for p in ("unshare", "ip") if shutil.which(p) is None]
        if missing:
            return Availability(
                False,
                reason=f"{', '.join(missing)} not found (needed for a lo-only namespace)",
                install=self.install,
            )
        if os.geteuid() != 0:
            return Availability(
                False,
                reason="needs root for a private network namespace (unshare -n)",
                install=self.install,
            )
        try:
            import pylibsrtp  # noqa: F401
        except ImportError:
            return Availability(
                False,
                reason="pylibsrtp is not installed (it proves the SRTP keys)",
                install=self.install,
            )
        try:
            version = subprocess.run(
                [exe, "--version"], capture_output=True, text=True, timeout=30, check=False
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            return Availability(
                False, reason=f"{self.program} --version: {exc}", install=self.install
            )
        return Availability(True, version=version.split(" built on")[0])

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run the cell in a child process inside ``unshare -n``; parse its JSON result."""
        spec = ctx.spec
        doc = json.dumps(
            {
                "browser": self.name,
                "role": spec.role.value,
                "kind": spec.kind.value,
                "profile": spec.profile.openssl_name if spec.profile else None,
                "key_type": spec.key_type,
            }
        )
        inner = max(1.0, ctx.deadline.remaining() - 3.0)
        # The child imports the same harness and library as this process, installed or not.
        roots = [str(Path(__file__).resolve().parents[1]), str(Path(dtls_ossl.__file__).parents[1])]
        if os.environ.get("PYTHONPATH"):
            roots.append(os.environ["PYTHONPATH"])
        env = dict(os.environ, DTLS_OSSL_NETNS="1", PYTHONPATH=os.pathsep.join(roots))
        proc = ctx.spawn(
            [
                "unshare",
                "-n",
                "--",
                sys.executable,
                "-m",
                "dtls_ossl_conformance._browser_cell",
                doc,
                f"{inner:.1f}",
            ],
            env=env,
        )
        m = proc.wait_for(r"^RESULT (.*)$", ctx.deadline, "the browser cell's result")
        result = json.loads(m.group(1))
        if "error" in result:
            raise CellFailure(f"{self.name} cell: {result['error']}")
        return CellOutcome(
            checks=[Check(n, CheckStatus(s), d) for n, s, d in result["checks"]],
            ours=_negotiated(result["ours"]),
            theirs=_negotiated(result["theirs"]),
            handshake_time=result["handshake_time"],
            log=str(result.get("log", "")),
        )


class ChromiumPeer(BrowserPeer):
    """Chromium through an RTCPeerConnection page, in a lo-only network namespace."""

    name = "chromium"
    program = "chromium"
    profiles: tuple[SrtpProfile, ...] = (
        SrtpProfile.AES128_CM_SHA1_80,
        SrtpProfile.AEAD_AES_128_GCM,
        SrtpProfile.AEAD_AES_256_GCM,
    )
    install = install_command("chromium")
