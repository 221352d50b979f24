"""One browser cell (Chromium or Firefox), run inside a private network namespace with only ``lo``.

``python -m dtls_ossl_conformance._browser_cell SPEC_JSON TIMEOUT`` (started by
:class:`~dtls_ossl_conformance.peer_chromium.ChromiumPeer` or
:class:`~dtls_ossl_conformance.peer_firefox.FirefoxPeer` under ``unshare -n``) brings ``lo``
up, serves a page on 127.0.0.1 that makes an ``RTCPeerConnection`` with a fake microphone,
takes its offer over HTTP, answers with ``a=ice-lite``, one host candidate on 127.0.0.1, our
fingerprint and ``a=setup:active`` (we are the DTLS client) or ``passive`` (server), answers
the browser's STUN checks, runs dtls_ossl on the same socket (RFC 7983 demultiplexing),
decrypts the browser's SRTP audio with pylibsrtp and our ``srtp_keys()``, sends SRTP back
(Opus silence under the payload type of the offer and the SSRC of our answer's ``a=ssrc``,
protected with our ``local_master_key``) that the page's ``getStats()`` must count as
``inbound-rtp`` packetsReceived, and prints one JSON line with the checks and what
``getStats()`` reported.

Firefox needs more than Chromium to stay on loopback: a fresh profile whose prefs allow
loopback ICE candidates and fake media and turn telemetry and updates off,
``MOZ_DISABLE_NONLOCAL_CONNECTIONS=1`` in its environment, and a default route over ``lo``
(without one it gathers no candidate). Its ``getStats()`` has no certificate stats; where a
browser reports no transport stats either, ``connectionState`` and the SRTP it sends (which
decrypts only under our keys and profile) stand in for them.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from dtls_ossl import events
from dtls_ossl._records import reassemble_client_hello_untrusted
from dtls_ossl._roles import Role
from dtls_ossl.connection import DtlsConnection
from dtls_ossl.exceptions import FingerprintMismatchError, InvalidStateError
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.sdp import Fingerprint
from dtls_ossl.webrtc.srtp import SRTP_EXPORTER_LABEL, SrtpProfile
from dtls_ossl_conformance._cell import CellOutcome, our_configuration
from dtls_ossl_conformance._io import LOCALHOST, PeerProcess
from dtls_ossl_conformance._model import CellKind, CellSpec, Deadline, Negotiated
from dtls_ossl_conformance._names import iana_to_openssl
from dtls_ossl_conformance._stun import binding_response_untrusted, is_stun

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]

PAGE = """<!doctype html><meta charset="utf-8"><title>dtls-ossl conformance</title><script>
const q = new URLSearchParams(location.search);
async function post(path, body) {
  const r = await fetch(path, {method: "POST", body: body});
  return r.text();
}
async function main() {
  const config = {iceServers: []};
  if (q.get("key") === "rsa-2048") {
    config.certificates = [await RTCPeerConnection.generateCertificate({
      name: "RSASSA-PKCS1-v1_5", modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256"})];
  }
  const pc = new RTCPeerConnection(config);
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  for (const t of stream.getTracks()) pc.addTrack(t, stream);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => {
    if (pc.iceGatheringState === "complete") return r();
    pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && r());
    setTimeout(r, 3000);
  });
  const answer = await post("/offer", pc.localDescription.sdp);
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  const until = Date.now() + Number(q.get("wait") || 10000);
  let out = {};
  while (Date.now() < until) {
    await new Promise(r => setTimeout(r, 200));
    const stats = await pc.getStats();
    out = {};
    stats.forEach(s => {
      if (s.type === "transport") out.transport = s;
      if (s.type === "certificate") (out.certificates = out.certificates || []).push(s);
      if (s.type === "outbound-rtp") out.outbound = s;
      if (s.type === "inbound-rtp" && String(s.ssrc) === q.get("ssrc")) out.inbound = s;
    });
    // Firefox has no transport stats: its connectionState says whether DTLS is up.
    const state = (out.transport || {}).dtlsState || pc.connectionState;
    if (state === "failed" || state === "closed") break;
    // With ssrc=..., also wait until our SRTP back has been counted.
    const back = !q.get("ssrc") || (out.inbound && out.inbound.packetsReceived > 5);
    if (state === "connected" && out.outbound && out.outbound.packetsSent > 5 && back) break;
  }
  out.connectionState = pc.connectionState;
  await post("/result", JSON.stringify(out));
  pc.close();
}
main().catch(e => post("/result", JSON.stringify({error: String(e)})));
</script>"""

_SRTP_NAMES = {
    # Chromium 156 reports RFC 5764's names; older versions used libsrtp's.
    "SRTP_AES128_CM_HMAC_SHA1_80": SrtpProfile.AES128_CM_SHA1_80,
    "SRTP_AES128_CM_HMAC_SHA1_32": SrtpProfile.AES128_CM_SHA1_32,
    "SRTP_AEAD_AES_128_GCM": SrtpProfile.AEAD_AES_128_GCM,
    "SRTP_AEAD_AES_256_GCM": SrtpProfile.AEAD_AES_256_GCM,
    "AES_CM_128_HMAC_SHA1_80": SrtpProfile.AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": SrtpProfile.AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": SrtpProfile.AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": SrtpProfile.AEAD_AES_256_GCM,
}


class _Exchange:
    """What the HTTP handler shares with the cell: the offer in, the answer and result out."""

    def __init__(self) -> None:
        self.offer: str | None = None
        self.answer: str | None = None
        self.answer_ready = threading.Event()
        self.offer_ready = threading.Event()
        self.result: dict[str, Any] | None = None
        self.result_ready = threading.Event()


def serve_page(
    page: str, on_post: Callable[[str, str], tuple[bytes, str]]
) -> http.server.ThreadingHTTPServer:
    """Serve ``page`` on GET, and answer each POST with ``on_post(path, body)`` -> (body, type)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._reply(page.encode(), "text/html")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            self._reply(*on_post(self.path, body))

    server = http.server.ThreadingHTTPServer((LOCALHOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _serve(exchange: _Exchange) -> http.server.ThreadingHTTPServer:
    def on_post(path: str, body: str) -> tuple[bytes, str]:
        if path == "/offer":
            exchange.offer = body
            exchange.offer_ready.set()
            exchange.answer_ready.wait(15)
            return (exchange.answer or "").encode(), "application/sdp"
        with contextlib.suppress(ValueError):
            exchange.result = json.loads(body)
        exchange.result_ready.set()
        return b"ok", "text/plain"

    return serve_page(PAGE, on_post)


def _opus_pt(offer: str) -> int:
    opus = re.search(r"^a=rtpmap:(\d+) opus/48000/2", offer, re.MULTILINE | re.IGNORECASE)
    return int(opus.group(1)) if opus else 111


def _answer(
    offer: str,
    port: int,
    ufrag: str,
    pwd: str,
    fp: Fingerprint,
    role: Role,
    ssrc: int | None = None,
) -> str:
    """Answer the offer; with ``ssrc`` the answer is sendrecv and announces our audio stream."""
    mid = re.search(r"^a=mid:(\S+)", offer, re.MULTILINE)
    pt = _opus_pt(offer)
    mid_value = mid.group(1) if mid else "0"
    setup = "active" if role is Role.CLIENT else "passive"
    lines = [
        "v=0",
        f"o=- {secrets.randbelow(1 << 31)} 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {mid_value}",
        "a=ice-lite",
        f"m=audio {port} UDP/TLS/RTP/SAVPF {pt}",
        "c=IN IP4 127.0.0.1",
        f"a=mid:{mid_value}",
        "a=recvonly" if ssrc is None else "a=sendrecv",
        "a=rtcp-mux",
        f"a=rtpmap:{pt} opus/48000/2",
        *(
            []
            if ssrc is None
            else [
                "a=msid:dtls-ossl audio0",
                f"a=ssrc:{ssrc} cname:dtls-ossl",
                f"a=ssrc:{ssrc} msid:dtls-ossl audio0",
            ]
        ),
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        fp.sdp_attribute(),
        f"a=setup:{setup}",
        f"a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host",
        "a=end-of-candidates",
    ]
    return "\r\n".join(lines) + "\r\n"


def _srtp_session(profile: SrtpProfile, key: bytes, outbound: bool = False) -> Any:
    try:
        import pylibsrtp
    except ImportError:
        return None
    ssrc_type = (
        pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
    )
    policy = pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile.iana_id)
    return pylibsrtp.Session(policy=policy)


OPUS_SILENCE = b"\xf8\xff\xfe"
"One 20 ms Opus frame of silence (TOC: CELT fullband 20 ms, mono)."
SRTP_BACK_INTERVAL = 0.02
"Seconds between the RTP packets we send back (one 20 ms Opus frame each)."
SRTP_BACK_MAX = 150
"At most this many packets are sent back (3 s of audio)."
SRTP_BACK_BROWSERS = ("chromium", "firefox")
"The browsers we send SRTP back to (and whose getStats() must count it)."


def _rtp_packet(pt: int, seq: int, timestamp: int, ssrc: int, payload: bytes) -> bytes:
    """Build an RTP packet (RFC 3550 §5.1): V=2, no padding/extension/CSRC, marker on the first."""
    marker = 0x80 if seq == 0 else 0
    return (
        bytes([0x80, marker | pt])
        + (seq & 0xFFFF).to_bytes(2, "big")
        + (timestamp & 0xFFFFFFFF).to_bytes(4, "big")
        + ssrc.to_bytes(4, "big")
        + payload
    )


FIREFOX_PREFS = {
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "extensions.update.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "media.gmp-manager.updateEnabled": False,
}
"The prefs of the fresh Firefox profile (user.js)."


def _launch(browser: str, profile_dir: str, url: str) -> PeerProcess:
    if browser == "chromium":
        return PeerProcess(
            ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", url], profile_dir
        )
    with open(os.path.join(profile_dir, "user.js"), "w", encoding="utf-8") as f:
        for name, value in FIREFOX_PREFS.items():
            f.write(f"user_pref({json.dumps(name)}, {json.dumps(value)});\n")
    env = dict(os.environ, MOZ_DISABLE_NONLOCAL_CONNECTIONS="1", MOZ_HEADLESS="1")
    return PeerProcess(
        ["firefox-esr", "--headless", "--no-remote", "--profile", profile_dir, url],
        profile_dir,
        env,
    )


def run_cell(spec: CellSpec, timeout: float) -> dict[str, Any]:
    """Run the cell and return its outcome as JSON-ready data."""
    deadline = Deadline(timeout)
    out = CellOutcome()
    ours = Certificate.generate(spec.key_type)
    exchange = _Exchange()
    server = _serve(exchange)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCALHOST, 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    ufrag, pwd = secrets.token_hex(4), secrets.token_hex(16)
    profile = spec.profile or SrtpProfile.AES128_CM_SHA1_80
    # We send SRTP back (and the page waits for it in getStats()) in Chromium's handshake cells.
    wrong = spec.kind is CellKind.WRONG_FINGERPRINT
    our_ssrc = (
        secrets.randbelow(0x7FFFFFFF) + 1 if spec.peer in SRTP_BACK_BROWSERS and not wrong else None
    )
    browser: PeerProcess | None = None
    profile_dir = tempfile.TemporaryDirectory(prefix=f"dtls-ossl-{spec.peer}-")
    try:
        url = (
            f"http://{LOCALHOST}:{server.server_address[1]}/?key={spec.key_type}"
            f"&wait={int(timeout * 1000 * 0.6)}"
            + (f"&ssrc={our_ssrc}" if our_ssrc is not None else "")
        )
        browser = _launch(spec.peer, profile_dir.name, url)
        while not exchange.offer_ready.wait(0.05):
            if browser.proc.poll() is not None:
                raise RuntimeError(f"{spec.peer} exited: {browser.text()[-500:]}")
            deadline.check("the browser's offer")
        offer = exchange.offer or ""
        m = re.search(r"^a=fingerprint:(\S+ \S+)", offer, re.MULTILINE)
        if m is None:
            raise RuntimeError("no a=fingerprint in the offer")
        real = Fingerprint.parse(m.group(1))
        expected = Certificate.generate().fingerprint() if wrong else real
        conn = DtlsConnection(
            our_configuration(spec, ours, deadline.remaining()),
            role=spec.role,
            remote_fingerprints=[expected],
        )
        exchange.answer = _answer(offer, port, ufrag, pwd, ours.fingerprint(), spec.role, our_ssrc)
        opus_pt = _opus_pt(offer)
        exchange.answer_ready.set()
        seen: list[events.DtlsEvent] = []
        peer: tuple[str, int] | None = None
        started: float | None = None
        completed: float | None = None
        rx: Any = None
        tx: Any = None
        srtp_ok = 0
        srtp_bad = 0
        sent_back = 0
        next_back = 0.0

        def flush() -> None:
            nonlocal completed, rx, tx
            for d in conn.datagrams_to_send(time.monotonic()):
                if peer is not None:
                    with contextlib.suppress(OSError):
                        sock.sendto(d, peer)
            while (e := conn.next_event()) is not None:
                seen.append(e)
                if isinstance(e, events.HandshakeCompleted):
                    completed = time.monotonic()
                    if e.srtp_keys is not None and e.srtp_profile is not None:
                        k = e.srtp_keys
                        rx = _srtp_session(e.srtp_profile, k.remote_master_key)
                        if our_ssrc is not None:
                            tx = _srtp_session(e.srtp_profile, k.local_master_key, outbound=True)

        dtls_in: list[bytes] = []  # the browser's first DTLS datagrams, as they arrived
        while not exchange.result_ready.is_set() and not deadline.expired():
            wait = 0.02
            timer = conn.get_timer()
            if timer is not None:
                wait = max(0.0, min(wait, timer - time.monotonic()))
            readable, _, _ = select.select([sock], [], [], wait)
            while readable:
                try:
                    data, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if is_stun(data):
                    reply = binding_response_untrusted(data, addr, ufrag, pwd)
                    if reply is None:
                        continue
                    sock.sendto(reply[0], addr)
                    if peer is None and reply[1]:
                        peer = addr
                        if spec.role is Role.CLIENT:
                            started = time.monotonic()
                            conn.connect(started)
                            flush()
                elif 20 <= data[0] <= 63:
                    if peer is None:
                        peer = addr
                    if len(dtls_in) < 16:
                        dtls_in.append(data)
                    if started is None:
                        started = time.monotonic()
                    conn.receive_datagram(data, time.monotonic())
                    flush()
                elif 128 <= data[0] <= 191 and rx is not None and 200 <= data[1] <= 206:
                    continue  # RTCP
                elif 128 <= data[0] <= 191 and rx is not None:
                    try:
                        rx.unprotect(data)
                        srtp_ok += 1
                    except Exception:
                        srtp_bad += 1
            timer = conn.get_timer()
            if timer is not None and time.monotonic() >= timer:
                conn.handle_timer(time.monotonic())
                flush()
            now = time.monotonic()
            if (
                tx is not None
                and peer is not None
                and our_ssrc is not None
                and sent_back < SRTP_BACK_MAX
                and now >= next_back
            ):
                rtp = _rtp_packet(opus_pt, sent_back, sent_back * 960, our_ssrc, OPUS_SILENCE)
                with contextlib.suppress(OSError):
                    sock.sendto(tx.protect(rtp), peer)
                sent_back += 1
                next_back = now + SRTP_BACK_INTERVAL
        result = exchange.result
        if result is None:
            raise RuntimeError(f"the page posted no result in time (dtls state {conn.state.value})")
        if "error" in result:
            raise RuntimeError(f"the page failed: {result['error']}")
        transport = result.get("transport") or {}
        theirs = Negotiated()
        version = str(transport.get("tlsVersion"))
        theirs.version = {"FEFD": "DTLSv1.2", "FEFC": "DTLSv1.3"}.get(version, version)
        cipher = transport.get("dtlsCipher")
        theirs.cipher = iana_to_openssl(cipher) if cipher else None
        srtp = transport.get("srtpCipher")
        theirs.srtp_profile = _SRTP_NAMES[srtp].openssl_name if srtp in _SRTP_NAMES else srtp
        theirs.extra = {
            k: str(transport.get(k))
            for k in ("dtlsState", "tlsVersion", "dtlsCipher", "srtpCipher", "dtlsRole")
        }
        theirs.extra["connectionState"] = str(result.get("connectionState"))
        theirs.extra["packetsSent"] = str((result.get("outbound") or {}).get("packetsSent"))
        out.theirs = theirs
        certs = {c.get("id"): c for c in result.get("certificates") or []}
        remote = certs.get(transport.get("remoteCertificateId"), {})
        if started is not None and completed is not None:
            out.handshake_time = completed - started
        hs = next((e for e in seen if isinstance(e, events.HandshakeCompleted)), None)
        if wrong:
            end = seen[-1] if seen else None
            ok = (
                hs is None
                and isinstance(end, events.ConnectionTerminated)
                and isinstance(end.error, FingerprintMismatchError)
            )
            out.add(
                "fail_closed",
                ok,
                repr(end.error) if isinstance(end, events.ConnectionTerminated) else "no end",
            )
            out.add(
                "bad_certificate_alert",
                events.AlertSent(2, 42) in seen,
                "fatal bad_certificate (42) sent",
            )
            try:
                conn.export_keying_material(SRTP_EXPORTER_LABEL, 60)
                no_keys = False
            except InvalidStateError:
                no_keys = True
            out.add("no_keys", no_keys, "export refused")
            state = transport.get("dtlsState")
            out.add(
                "peer_did_not_complete",
                (state or result.get("connectionState")) != "connected",
                f"getStats dtlsState {state}"
                if state
                else f"connectionState {result.get('connectionState')}",
            )
        elif hs is None:
            out.add("handshake", False, f"our state {conn.state.value}; events {seen!r}"[:400])
        else:
            out.ours = Negotiated(
                version=hs.protocol_version,
                cipher=hs.cipher,
                srtp_profile=hs.srtp_profile.openssl_name if hs.srtp_profile else None,
            )
            state = transport.get("dtlsState")
            out.add(
                "handshake",
                (state or result.get("connectionState")) == "connected",
                f"getStats dtlsState {state}"
                if state
                else f"connectionState {result.get('connectionState')} (no transport stats)",
            )
            out.compare("version", out.ours.version, theirs.version, "not in getStats")
            out.compare("cipher", out.ours.cipher, theirs.cipher, "not in getStats")
            want = profile.openssl_name
            if theirs.srtp_profile is None:  # Firefox: no srtpCipher in getStats()
                out.add(
                    "srtp_profile",
                    out.ours.srtp_profile == want and srtp_ok > 0 and srtp_bad == 0,
                    f"ours {out.ours.srtp_profile}, wanted {want}; the browser reports none, "
                    "its SRTP decrypts under ours",
                )
            else:
                out.add(
                    "srtp_profile",
                    out.ours.srtp_profile == want == theirs.srtp_profile,
                    f"ours {out.ours.srtp_profile}, browser {theirs.srtp_profile}, wanted {want}",
                )
            if hs.srtp_profile is None:
                out.add("keying_material", False, "no SRTP profile was negotiated")
            elif rx is None:
                out.add("keying_material", None, "pylibsrtp is not installed")
            else:
                out.add(
                    "keying_material",
                    srtp_ok > 0 and srtp_bad == 0,
                    f"browser SRTP decrypted with our srtp_keys(): {srtp_ok} ok, {srtp_bad} failed",
                )
            out.add(
                "fingerprint", hs.peer_fingerprint == real, "browser certificate matches its SDP"
            )
            fp = remote.get("fingerprint")
            out.add(
                "peer_saw_our_certificate",
                None if fp is None else Fingerprint.parse(f"sha-256 {fp}") == ours.fingerprint(),
                "getStats remote certificate fingerprint"
                if fp
                else "no certificate stats in getStats",
            )
            role = transport.get("dtlsRole")
            out.add(
                "dtls_role",
                None
                if role is None
                else role == ("server" if spec.role is Role.CLIENT else "client"),
                f"browser dtlsRole {role}" if role else "not in getStats",
            )
            if our_ssrc is not None:
                inbound = result.get("inbound") or {}
                received = inbound.get("packetsReceived")
                theirs.extra["inboundPacketsReceived"] = str(received)
                out.add(
                    "srtp_to_browser",
                    tx is not None and isinstance(received, int) and received > 0,
                    f"we protected {sent_back} RTP packets (SSRC {our_ssrc}, PT {opus_pt}) with "
                    f"our srtp_keys(); getStats inbound-rtp packetsReceived {received}",
                )
            out.add("app_data", None, "an audio m-line carries SRTP, no DTLS application data")
            if spec.kind is CellKind.DTLS13_HELLO:
                hello = reassemble_client_hello_untrusted(dtls_in)
                described = hello.describe() if hello is not None else "no ClientHello seen"
                out.add(
                    "client_hello_offers_1.3",
                    hello is not None and hello.complete and hello.offers_dtls13,
                    described,
                )
                out.add(
                    "client_hello_fragmented",
                    hello is not None and hello.complete and hello.fragments >= 2,
                    f"{hello.fragments if hello else 0} fragments of a "
                    f"{hello.length if hello else 0}-byte ClientHello reassembled by our server",
                )
                theirs.extra["client_hello"] = described
        out.log = browser.text()[-2000:]
    finally:
        if browser is not None:
            browser.stop()
        server.shutdown()
        sock.close()
        with contextlib.suppress(OSError):
            profile_dir.cleanup()
    return {
        "checks": [[c.name, c.status.value, c.detail] for c in out.checks],
        "ours": out.ours.to_json(),
        "theirs": out.theirs.to_json(),
        "handshake_time": out.handshake_time,
        "log": out.log,
    }


def main() -> int:
    """Entry point inside the namespace: ``SPEC_JSON TIMEOUT``; prints one JSON line."""
    # The harness stops this process with SIGTERM on a timeout: unwind so that the browser
    # (in its own process group) is stopped by run_cell's cleanup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    spec_doc = json.loads(sys.argv[1])
    timeout = float(sys.argv[2])
    if os.environ.get("DTLS_OSSL_NETNS") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
        if spec_doc.get("browser") == "firefox":
            # Without a default route Firefox gathers no candidate, even for loopback.
            subprocess.run(
                ["ip", "route", "add", "default", "dev", "lo", "src", LOCALHOST],
                check=True,
                timeout=10,
            )
    spec = CellSpec(
        peer=spec_doc.get("browser", "chromium"),
        role=Role(spec_doc["role"]),
        kind=CellKind(spec_doc["kind"]),
        profile=SrtpProfile(spec_doc["profile"]) if spec_doc["profile"] else None,
        key_type=spec_doc["key_type"],
    )
    try:
        doc = run_cell(spec, timeout)
    except Exception as exc:
        doc = {"error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps(doc), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
