"""Browsers against aiortc on dtls_ossl: the WebRTC stack a Python SFU or bot really runs.

The browser peers (:mod:`.peer_chromium`) face our bare :class:`~dtls_ossl.DtlsConnection`
behind an ICE-lite answer; these cells put the whole of aiortc in between, made with
``dtls_ossl.aiortc.install()``: full ICE, SCTP data channels and SRTP audio, all over dtls_ossl.
Each cell runs ``python -m dtls_ossl_conformance._aiortc_browser_cell`` under ``unshare -n``
(root only), so the browser and aiortc share a namespace whose only interface is ``lo``.

Cells, per browser and aiortc DTLS role: ``data+audio`` (a data channel echoed both ways, the
browser's Opus decoded by aiortc, aiortc's audio counted by the browser's ``getStats()``, and
the DTLS under all of it dtls_ossl's, in the asked role) and ``wrong-fingerprint`` (the offer's
fingerprint corrupted before aiortc reads it: dtls_ossl must end the handshake itself, and
nothing may flow; RFC 5763 §5, RFC 8827 §6.5).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import dtls_ossl
from dtls_ossl._roles import Role
from dtls_ossl_conformance._cell import CellContext, CellOutcome
from dtls_ossl_conformance._model import (
    Availability,
    CellFailure,
    CellKind,
    CellSpec,
    Negotiated,
)
from dtls_ossl_conformance._names import PROG, iana_to_openssl
from dtls_ossl_conformance._peer import KEY_TYPES, Peer

__all__ = ["AiortcBrowserPeer", "evaluate", "spawn_args"]

FRAMES_WANTED = 10
"Decoded audio frames aiortc must see from the browser, and RTP packets the browser from aiortc."
_PROGRAMS = {"chromium": "chromium", "firefox": "firefox-esr"}
_FINGERPRINT_RFC = "RFC 5763 §5, RFC 8827 §6.5"


def spawn_args(browser: str, role: Role, kind: CellKind, timeout: float) -> list[str]:
    """Return the command line of one cell (run it under ``unshare -n``, as root)."""
    return [
        "unshare",
        "-n",
        "--",
        sys.executable,
        "-m",
        "dtls_ossl_conformance._aiortc_browser_cell",
        browser,
        role.value,
        kind.value,
        f"{timeout:.1f}",
    ]


def child_env() -> dict[str, str]:
    """Return the cell's environment: it imports the same harness and library as this process."""
    roots = [str(Path(__file__).resolve().parents[1]), str(Path(dtls_ossl.__file__).parents[1])]
    if os.environ.get("PYTHONPATH"):
        roots.append(os.environ["PYTHONPATH"])
    return dict(os.environ, DTLS_OSSL_NETNS="1", PYTHONPATH=os.pathsep.join(roots))


def _browser_negotiated(page: dict[str, Any]) -> Negotiated:
    from dtls_ossl_conformance._browser_cell import _SRTP_NAMES

    transport = page.get("transport") or {}
    out = Negotiated()
    version = str(transport.get("tlsVersion"))
    out.version = {"FEFD": "DTLSv1.2", "FEFC": "DTLSv1.3"}.get(version, version)
    cipher = transport.get("dtlsCipher")
    out.cipher = iana_to_openssl(cipher) if cipher else None
    srtp = transport.get("srtpCipher")
    out.srtp_profile = _SRTP_NAMES[srtp].openssl_name if srtp in _SRTP_NAMES else srtp
    out.extra = {k: str(transport.get(k)) for k in ("dtlsState", "dtlsRole")}
    out.extra["connectionState"] = str(page.get("connectionState"))
    out.extra["channelState"] = str(page.get("channelState"))
    out.extra["packetsReceived"] = str((page.get("inbound") or {}).get("packetsReceived"))
    return out


def evaluate(doc: dict[str, Any], role: Role, kind: CellKind) -> CellOutcome:
    """Turn a cell's RESULT document into checks (the pytest tests assert these too)."""
    page, ours = doc["page"], doc["ours"]
    out = CellOutcome(
        ours=Negotiated(
            version=ours.get("version"),
            cipher=ours.get("cipher"),
            srtp_profile=ours.get("srtp_profile"),
            extra={"role": str(ours.get("dtls_role")), "frames": str(ours.get("frames"))},
        ),
        theirs=_browser_negotiated(page),
        log=str(doc.get("browser_log", "")),
    )
    times = ours.get("times") or {}
    if "dtls_connected" in times and "offer" in times:
        out.handshake_time = times["dtls_connected"] - times["offer"]
    out.add(
        "dtls_ossl",
        ours.get("transport_class") == "DtlsOsslTransport" and ours.get("audio_transport_is_dtls"),
        f"aiortc's DTLS transport is {ours.get('transport_class')} "
        f"(audio on it: {ours.get('audio_transport_is_dtls')})",
    )
    states = ours.get("dtls_states") or []
    transport = page.get("transport") or {}
    if kind is CellKind.WRONG_FINGERPRINT:
        out.add(
            "fail_closed",
            ours.get("termination") == "FingerprintMismatchError"
            and ours.get("terminated_by_peer") is False
            and "connected" not in states,
            f"ours ended with {ours.get('termination')} (by peer: "
            f"{ours.get('terminated_by_peer')}), states {states}; expected our own "
            f"FingerprintMismatchError before 'connected' ({_FINGERPRINT_RFC})",
        )
        out.add(
            "no_data",
            ours.get("frames") == 0 and not ours.get("messages"),
            f"{ours.get('frames')} audio frames, messages {ours.get('messages')} "
            f"({_FINGERPRINT_RFC}: no media before the fingerprint matched)",
        )
        out.add(
            "browser_not_connected",
            page.get("connectionState") != "connected" and page.get("channelState") != "open",
            f"browser connection {page.get('connectionState')}, channel {page.get('channelState')}",
        )
        return out
    out.add("page", "error" not in page, str(page.get("error", "the page ran to its end")))
    out.add(
        "role",
        ours.get("dtls_role") == role.value and "connected" in states,
        f"aiortc's dtls_ossl role {ours.get('dtls_role')}, states {states}",
    )
    browser_role = "server" if role is Role.CLIENT else "client"
    out.add(
        "browser_dtls",
        transport.get("dtlsState") == "connected" and transport.get("dtlsRole") == browser_role,
        f"browser dtlsState {transport.get('dtlsState')}, dtlsRole {transport.get('dtlsRole')} "
        f"(expected connected, {browser_role})",
    )
    got = page.get("got") or []
    messages = ours.get("messages") or []
    out.add(
        "data_channel",
        "echo:browser:hello" in got and "echo:py:hello" in messages,
        f"the page got {got}, aiortc got {messages}",
    )
    received = (page.get("inbound") or {}).get("packetsReceived", 0) or 0
    frames = ours.get("frames", 0) or 0
    out.add(
        "audio",
        received >= FRAMES_WANTED and frames >= FRAMES_WANTED and ours.get("sample_rate") == 48000,
        f"the browser received {received} RTP packets, aiortc decoded {frames} frames at "
        f"{ours.get('sample_rate')} Hz (wanted {FRAMES_WANTED} each way, 48 kHz Opus)",
    )
    return out


class AiortcBrowserPeer(Peer):
    """A browser facing aiortc on dtls_ossl (data channel and audio), in a lo-only namespace."""

    cell_timeout_factor = 3.0

    def __init__(self, browser: str) -> None:
        """Describe the cells against ``browser`` (``chromium`` or ``firefox``)."""
        self.browser = browser
        self.program = _PROGRAMS[browser]
        self.name = f"aiortc-{browser}"
        self.install = f"{PROG} install-peers {browser} aiortc"

    def availability(self) -> Availability:
        """Available with the browser (as its own peer needs it), aiortc and PyAV."""
        import importlib.util

        from dtls_ossl_conformance.peer_chromium import ChromiumPeer
        from dtls_ossl_conformance.peer_firefox import FirefoxPeer

        browser = ChromiumPeer() if self.browser == "chromium" else FirefoxPeer()
        avail = browser.availability()
        if not avail.available:
            return Availability(False, reason=avail.reason, install=self.install)
        for module in ("aiortc", "av"):
            if importlib.util.find_spec(module) is None:
                return Availability(
                    False, reason=f"{module} is not installed", install=self.install
                )
        from importlib.metadata import version

        return Availability(True, version=f"{avail.version}; aiortc {version('aiortc')}")

    def cells(self) -> list[CellSpec]:
        """Per aiortc role: data channel and audio, then a wrong fingerprint."""
        return [
            CellSpec(self.name, role, kind, None, KEY_TYPES[0])
            for kind in (CellKind.DATA_AND_AUDIO, CellKind.WRONG_FINGERPRINT)
            for role in self.roles
        ]

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run the cell in a child process inside ``unshare -n``; check its RESULT."""
        if shutil.which("unshare") is None:  # pragma: no cover - availability said so
            raise CellFailure("unshare not found")
        inner = max(1.0, ctx.deadline.remaining() - 3.0)
        args = spawn_args(self.browser, ctx.spec.role, ctx.spec.kind, inner)
        proc = ctx.spawn(args, env=child_env())
        m = proc.wait_for(r"^RESULT (.*)$", ctx.deadline, "the aiortc browser cell's result")
        doc = json.loads(m.group(1))
        if "error" in doc:
            raise CellFailure(f"{self.name} cell: {doc['error']}")
        return evaluate(doc, ctx.spec.role, ctx.spec.kind)
