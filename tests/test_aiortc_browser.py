"""Chromium and Firefox against aiortc on dtls_ossl, in a lo-only network namespace.

Each cell runs tests/aiortc_browser_cell.py under ``unshare -n`` (root only), so the browser,
aiortc and everything between them share a namespace whose only interface is ``lo``: nothing
leaves the machine. aiortc answers the browser's offer (fake microphone and one data channel)
with ``dtls_ossl.aiortc.install()`` in force, in the DTLS role the test chooses; the cell checks
the data channel both ways, audio both ways, and that a wrong fingerprint fails closed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
CELL = HERE / "aiortc_browser_cell.py"
CELL_TIMEOUT = 25.0
"Seconds the cell gives the page (it posts its result sooner once everything has flowed)."

HARNESS_PACKAGES = ("dtls_ossl_conformance", "dtls_ossl.conformance")
"As in aiortc_browser_cell.py: the harness as its own distribution, or inside dtls_ossl."

BROWSERS = {"chromium": "chromium", "firefox": "firefox-esr"}
"Cell browser name to its executable (as the conformance harness launches them)."

pytestmark = [pytest.mark.browser, pytest.mark.timeout(CELL_TIMEOUT + 60)]


def _unavailable(browser: str) -> str | None:
    """Why the cell cannot run here, or None."""
    if shutil.which(BROWSERS[browser]) is None:
        return f"{BROWSERS[browser]} is not installed"
    missing = [p for p in ("unshare", "ip") if shutil.which(p) is None]
    if missing:
        return f"{', '.join(missing)} not found (needed for a lo-only namespace)"
    if os.geteuid() != 0:
        return "needs root for a private network namespace (unshare -n)"
    bundled = (HERE.parent / "conformance" / "dtls_ossl_conformance").is_dir()
    if not bundled and not any(importlib.util.find_spec(p) for p in HARNESS_PACKAGES):
        return "the conformance harness (it launches the browsers) is not installed"
    for module in ("aiortc", "av", "pylibsrtp"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


def _pythonpath() -> str:
    """The cell's import path: this tree, its tests, and the harness wherever it lives."""
    root = HERE.parent
    parts = [str(root), str(HERE), str(root / "conformance"), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def run_cell(browser: str, role: str, kind: str = "normal") -> dict[str, Any]:
    """Run one cell in its own network namespace and return its RESULT document."""
    reason = _unavailable(browser)
    if reason is not None:
        pytest.skip(reason)
    root = str(HERE.parent)
    env = dict(os.environ, PYTHONPATH=_pythonpath(), DTLS_OSSL_NETNS="1")
    args = ["unshare", "-n", "--", sys.executable, str(CELL), browser, role, kind]
    proc = subprocess.Popen(
        [*args, f"{CELL_TIMEOUT:g}"],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=CELL_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the cell stops its browser on SIGTERM
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(f"the cell did not finish in time: {out[-2000:]}")
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, f"no RESULT line: {out[-2000:]}"
    doc: dict[str, Any] = json.loads(line[len("RESULT ") :])
    assert "error" not in doc, doc["error"]
    return doc


def _summary(doc: dict[str, Any]) -> str:
    page = doc["page"]
    ours = doc["ours"]
    stats = {k: (page.get("transport") or {}).get(k) for k in ("dtlsRole", "srtpCipher")}
    return (
        f"page: {page.get('error')} {page.get('connectionState')} got={page.get('got')} "
        f"{stats} times={page.get('times')}; ours: {ours}; log: {doc['browser_log'][-600:]}"
    )


@pytest.mark.parametrize("role", ["client", "server"], ids=["aiortc_client", "aiortc_server"])
@pytest.mark.parametrize("browser", list(BROWSERS))
def test_browser_data_channel_and_audio_both_ways(browser: str, role: str) -> None:
    doc = run_cell(browser, role)
    page, ours = doc["page"], doc["ours"]
    why = _summary(doc)
    assert "error" not in page, why
    # The DTLS under the data channel and the audio was dtls_ossl's, in the chosen role.
    assert ours["transport_class"] == "DtlsOsslTransport", why
    assert ours["audio_transport_is_dtls"], why
    assert ours["dtls_role"] == role, why
    assert "connected" in ours["dtls_states"], why
    transport = page.get("transport") or {}
    assert transport.get("dtlsState") == "connected", why
    assert transport.get("dtlsRole") == ("server" if role == "client" else "client"), why
    # Data channel both ways: the page's message echoed by aiortc, aiortc's echoed by the page.
    assert "echo:browser:hello" in page["got"], why
    assert "echo:py:hello" in ours["messages"], why
    # Audio both ways: the browser counts aiortc's SRTP, aiortc decodes the browser's Opus.
    assert (page.get("inbound") or {}).get("packetsReceived", 0) >= 10, why
    assert ours["frames"] >= 10, why
    assert ours["sample_rate"] == 48000, why


@pytest.mark.parametrize("role", ["client", "server"], ids=["aiortc_client", "aiortc_server"])
@pytest.mark.parametrize("browser", list(BROWSERS))
def test_browser_wrong_fingerprint_fails_closed(browser: str, role: str) -> None:
    doc = run_cell(browser, role, "wrong_fingerprint")
    page, ours = doc["page"], doc["ours"]
    why = _summary(doc)
    assert ours["transport_class"] == "DtlsOsslTransport", why
    assert ours["termination"] == "FingerprintMismatchError", why
    assert ours["terminated_by_peer"] is False, why
    assert "connected" not in ours["dtls_states"], why
    assert ours["frames"] == 0 and not ours["messages"], why
    assert page.get("connectionState") != "connected", why
    assert page.get("channelState") != "open", why
