"""One browser x aiortc cell: aiortc on dtls_ossl against a browser, in a lo-only namespace.

``python -m dtls_ossl_conformance._aiortc_browser_cell BROWSER ROLE KIND TIMEOUT`` (started by
:mod:`.peer_aiortc_browser` under ``unshare -n``) brings ``lo`` up, serves a page on 127.0.0.1
whose ``RTCPeerConnection`` (fake microphone, one data channel) posts its offer over HTTP,
answers it with an aiortc ``RTCPeerConnection`` made after ``dtls_ossl.aiortc.install()``, and
prints one line ``RESULT {json}`` with what both sides saw (the peer module turns it into checks).

ROLE is aiortc's DTLS role. The browser offers ``a=setup:actpass``, which aiortc answers as
the DTLS client; for ``server`` the offer aiortc reads says ``a=setup:active`` (the browser's
own description is unchanged), so aiortc answers ``passive`` and the browser becomes the client.
KIND ``wrong-fingerprint`` changes one digit of the offer's fingerprint before aiortc reads it:
dtls_ossl must then end the handshake with a ``bad_certificate`` alert, and the browser fail.

aioice skips loopback addresses when it gathers, and the namespace has nothing else, so the cell
makes it gather 127.0.0.1 only. Both sides run full ICE. The browser is launched with the same
flags, profile and environment as the browser peers (:func:`._browser_cell._launch`).

What is recorded: the data channel both ways (the page sends, aiortc echoes; aiortc sends, the
page echoes), audio both ways (aiortc decodes the browser's Opus frames; the page's
``getStats()`` counts aiortc's packets as ``inbound-rtp`` packetsReceived), and that the DTLS
under it all was dtls_ossl's, in the asked role.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack

import dtls_ossl.aiortc
from dtls_ossl_conformance._browser_cell import _launch, serve_page
from dtls_ossl_conformance._io import LOCALHOST, PeerProcess

WRONG_FINGERPRINT = "wrong-fingerprint"
"The KIND whose offer carries a corrupted fingerprint."


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Make aioice gather 127.0.0.1 only (it skips loopback by default)."""
    original = aioice.ice.get_host_addresses

    def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [LOCALHOST]

    aioice.ice.get_host_addresses = loopback
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def corrupt_fingerprint(sdp: str) -> str:
    """Change one hex digit of every ``a=fingerprint`` (a man-in-the-middle's certificate)."""

    def flip(m: re.Match[str]) -> str:
        value = m.group(2)
        first = "0" if value[0] != "0" else "1"
        return f"{m.group(1)}{first}{value[1:]}"

    return re.sub(r"(a=fingerprint:\S+ )(\S+)", flip, sdp)


PAGE = """<!doctype html><meta charset="utf-8"><title>dtls-ossl aiortc</title><script>
const q = new URLSearchParams(location.search);
async function post(path, body) {
  const r = await fetch(path, {method: "POST", body: body});
  return r.text();
}
async function main() {
  const t0 = performance.now();
  const times = {};
  const pc = new RTCPeerConnection({iceServers: []});
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  for (const t of stream.getTracks()) pc.addTrack(t, stream);
  const dc = pc.createDataChannel("echo");
  const got = [];
  dc.onopen = () => { times.open = performance.now() - t0; dc.send("browser:hello"); };
  dc.onmessage = e => {
    got.push(String(e.data));
    if (String(e.data).startsWith("py:")) dc.send("echo:" + e.data);
  };
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") times.connected = performance.now() - t0;
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => {
    if (pc.iceGatheringState === "complete") return r();
    pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && r());
    setTimeout(r, 3000);
  });
  times.offer = performance.now() - t0;
  const answer = await post("/offer", pc.localDescription.sdp);
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  const until = Date.now() + Number(q.get("wait") || 10000);
  let out = {};
  while (Date.now() < until) {
    await new Promise(r => setTimeout(r, 100));
    const stats = await pc.getStats();
    out = {};
    stats.forEach(s => {
      if (s.type === "transport") out.transport = s;
      if (s.type === "outbound-rtp" && s.kind === "audio") out.outbound = s;
      if (s.type === "inbound-rtp" && s.kind === "audio") out.inbound = s;
    });
    if (pc.connectionState === "failed" || pc.connectionState === "closed") break;
    // aiortc says "py:frames:N" once it has decoded enough of our audio.
    const echoed = got.includes("echo:browser:hello") && got.includes("py:hello") &&
      got.some(m => m.startsWith("py:frames:"));
    const audio = out.inbound && out.inbound.packetsReceived >= 10 &&
      out.outbound && out.outbound.packetsSent >= 10;
    if (echoed && audio) break;
  }
  times.done = performance.now() - t0;
  out.got = got;
  out.times = times;
  out.connectionState = pc.connectionState;
  out.channelState = dc.readyState;
  await post("/result", JSON.stringify(out));
  pc.close();
}
main().catch(e => post("/result", JSON.stringify({error: String(e)})));
</script>"""

FRAMES_WANTED = 10
"Decoded audio frames aiortc must see from the browser."


class _Exchange:
    """What the HTTP thread shares with the asyncio side: offer in, answer and result out."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.answerer: Any = None  # set to a coroutine function str -> str
        self.result: asyncio.Future[dict[str, Any]] = loop.create_future()


def _serve(exchange: _Exchange) -> http.server.ThreadingHTTPServer:
    def on_post(path: str, body: str) -> tuple[bytes, str]:
        if path == "/offer":
            future = asyncio.run_coroutine_threadsafe(exchange.answerer(body), exchange.loop)
            try:
                answer = future.result(15)
            except Exception as exc:
                answer = ""
                exchange.loop.call_soon_threadsafe(_set, exchange.result, {"error": repr(exc)})
            return answer.encode(), "application/sdp"
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {"error": f"unparsable result {body[:200]!r}"}
        exchange.loop.call_soon_threadsafe(_set, exchange.result, doc)
        return b"ok", "text/plain"

    return serve_page(PAGE, on_post)


def _set(future: asyncio.Future[dict[str, Any]], doc: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(doc)


async def run_cell(browser_name: str, role: str, kind: str, timeout: float) -> dict[str, Any]:
    """Run the cell; return what both sides saw as JSON-ready data."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    exchange = _Exchange(loop)
    server = _serve(exchange)
    dtls_ossl.aiortc.install()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    ours: dict[str, Any] = {"messages": [], "frames": 0, "times": {}, "dtls_states": []}
    times: dict[str, float] = ours["times"]
    frames_done: asyncio.Future[None] = loop.create_future()
    tasks: list[asyncio.Task[None]] = []
    channels: list[RTCDataChannel] = []

    def mark(name: str) -> None:
        times.setdefault(name, round(loop.time() - start, 3))

    # Handlers are registered by call, not decorator: a decorator from aiortc is untyped to type
    # checkers that run where the optional extra is not installed.
    def on_ice() -> None:
        if pc.iceConnectionState == "completed":
            mark("ice_completed")

    pc.on("iceconnectionstatechange", on_ice)

    def on_channel(channel: RTCDataChannel) -> None:
        mark("channel")
        channels.append(channel)

        def on_message(message: object) -> None:
            text = str(message)
            ours["messages"].append(text)
            if text.startswith("browser:"):
                channel.send("echo:" + text)
            if text.startswith("echo:py:"):
                mark("echo_back")

        channel.on("message", on_message)
        channel.send("py:hello")
        if frames_done.done():
            channel.send(f"py:frames:{ours['frames']}")

    pc.on("datachannel", on_channel)

    async def consume(track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            ours["frames"] += 1
            ours["sample_rate"] = getattr(frame, "sample_rate", None)
            if ours["frames"] == 1:
                mark("first_frame")
            if ours["frames"] >= FRAMES_WANTED and not frames_done.done():
                frames_done.set_result(None)
                # The page keeps its side (and its microphone) up until it hears this.
                if channels:
                    channels[0].send(f"py:frames:{ours['frames']}")

    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            tasks.append(asyncio.ensure_future(consume(track)))

    pc.on("track", on_track)

    async def answer(offer: str) -> str:
        mark("offer")
        if role == "server":
            offer = re.sub(r"a=setup:\w+", "a=setup:active", offer)
        if kind == WRONG_FINGERPRINT:
            offer = corrupt_fingerprint(offer)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        transport = pc.sctp.transport if pc.sctp is not None else None

        if transport is not None:

            def on_state() -> None:
                ours["dtls_states"].append(transport.state)
                if transport.state == "connected":
                    mark("dtls_connected")

            transport.on("statechange", on_state)

        return str(pc.localDescription.sdp)

    exchange.answerer = answer
    profile_dir = tempfile.TemporaryDirectory(prefix=f"dtls-ossl-aiortc-{browser_name}-")
    browser: PeerProcess | None = None
    try:
        url = f"http://{LOCALHOST}:{server.server_address[1]}/?wait={int(timeout * 1000 * 0.6)}"
        browser = _launch(browser_name, profile_dir.name, url)
        remaining = timeout - (loop.time() - start)
        try:
            page = await asyncio.wait_for(asyncio.shield(exchange.result), remaining)
        except asyncio.TimeoutError:
            page = {"error": f"the page posted no result in {timeout:g} s"}
        if kind != WRONG_FINGERPRINT:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(frames_done), 1.0)
        mark("result")
        dtls = pc.sctp.transport if pc.sctp is not None else None
        ours["transport_class"] = type(dtls).__name__ if dtls is not None else None
        conn = getattr(dtls, "dtls_connection", None)
        ours["dtls_role"] = conn.role.value if conn is not None else None
        ours["dtls_ossl_state"] = conn.state.value if conn is not None else None
        info = conn.handshake_info if conn is not None else None
        if info is not None:
            ours["version"] = info.protocol_version
            ours["cipher"] = info.cipher
            ours["srtp_profile"] = info.srtp_profile.openssl_name if info.srtp_profile else None
        end = getattr(dtls, "termination", None)
        ours["termination"] = None if end is None or end.error is None else type(end.error).__name__
        ours["terminated_by_peer"] = None if end is None else end.by_peer
        senders = [t.sender for t in pc.getTransceivers() if t.kind == "audio"]
        ours["audio_transport_is_dtls"] = bool(senders) and senders[0].transport is dtls
        ours["connection_state"] = pc.connectionState
        return {"page": page, "ours": ours, "browser_log": browser.text()[-1500:]}
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pc.close(), 5)
        if browser is not None:
            browser.stop()
        server.shutdown()
        dtls_ossl.aiortc.uninstall()
        with contextlib.suppress(OSError):
            profile_dir.cleanup()


def main() -> int:
    """Entry point inside the namespace: ``BROWSER ROLE KIND TIMEOUT``; prints one RESULT line."""
    # The harness stops this process with SIGTERM on its timeout: unwind so that run_cell's
    # cleanup stops the browser (in its own process group).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    browser_name, role, kind, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    if os.environ.get("DTLS_OSSL_NETNS") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
        if browser_name == "firefox":
            # As for the browser peers: without a default route Firefox gathers no candidate.
            subprocess.run(
                ["ip", "route", "add", "default", "dev", "lo", "src", LOCALHOST],
                check=True,
                timeout=10,
            )
    began = time.monotonic()
    try:
        with loopback_only():
            doc = asyncio.run(
                asyncio.wait_for(run_cell(browser_name, role, kind, timeout), timeout + 10)
            )
    except Exception as exc:
        doc = {"error": f"{type(exc).__name__}: {exc}"}
    doc["wall"] = round(time.monotonic() - began, 3)
    print("RESULT " + json.dumps(doc, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
