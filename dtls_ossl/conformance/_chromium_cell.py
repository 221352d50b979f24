"""One Chromium cell, run inside a private network namespace that has only ``lo``.

``python -m dtls_ossl.conformance._chromium_cell SPEC_JSON`` (started by
:class:`~dtls_ossl.conformance.peer_chromium.ChromiumPeer` under ``unshare -n``) brings ``lo``
up, serves a page on 127.0.0.1 that makes an ``RTCPeerConnection`` with a fake microphone,
takes its offer over HTTP, answers with ``a=ice-lite``, one host candidate on 127.0.0.1, our
fingerprint and ``a=setup:active`` (we are the DTLS client) or ``passive`` (server), answers
Chromium's STUN checks, runs dtls_ossl on the same socket (RFC 7983 demultiplexing), decrypts
the browser's SRTP audio with pylibsrtp and our ``srtp_keys()``, and prints one JSON line with
the checks and what the page's ``getStats()`` reported.
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
from typing import Any

from dtls_ossl import events
from dtls_ossl._roles import Role
from dtls_ossl.conformance._cell import CellOutcome, our_configuration
from dtls_ossl.conformance._io import LOCALHOST, PeerProcess
from dtls_ossl.conformance._model import CellKind, CellSpec, Deadline, Negotiated
from dtls_ossl.conformance._stun import binding_response_untrusted, is_stun
from dtls_ossl.connection import DtlsConnection
from dtls_ossl.exceptions import FingerprintMismatchError, InvalidStateError
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.sdp import Fingerprint
from dtls_ossl.webrtc.srtp import SRTP_EXPORTER_LABEL, SrtpProfile

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
    });
    const t = out.transport || {};
    if (t.dtlsState === "failed" || t.dtlsState === "closed") break;
    if (t.dtlsState === "connected" && out.outbound && out.outbound.packetsSent > 5) break;
  }
  out.connectionState = pc.connectionState;
  await post("/result", JSON.stringify(out));
  pc.close();
}
main().catch(e => post("/result", JSON.stringify({error: String(e)})));
</script>"""

# IANA cipher suite names (what getStats() reports) of our DEFAULT_CIPHERS.
_IANA_TO_OPENSSL = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
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


def _serve(exchange: _Exchange) -> http.server.ThreadingHTTPServer:
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
            self._reply(PAGE.encode(), "text/html")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            if self.path == "/offer":
                exchange.offer = body
                exchange.offer_ready.set()
                exchange.answer_ready.wait(15)
                self._reply((exchange.answer or "").encode(), "application/sdp")
            else:
                with contextlib.suppress(ValueError):
                    exchange.result = json.loads(body)
                exchange.result_ready.set()
                self._reply(b"ok", "text/plain")

    server = http.server.ThreadingHTTPServer((LOCALHOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _answer(offer: str, port: int, ufrag: str, pwd: str, fp: Fingerprint, role: Role) -> str:
    mid = re.search(r"^a=mid:(\S+)", offer, re.MULTILINE)
    opus = re.search(r"^a=rtpmap:(\d+) opus/48000/2", offer, re.MULTILINE | re.IGNORECASE)
    pt = opus.group(1) if opus else "111"
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
        "a=recvonly",
        "a=rtcp-mux",
        f"a=rtpmap:{pt} opus/48000/2",
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        fp.sdp_attribute(),
        f"a=setup:{setup}",
        f"a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host",
        "a=end-of-candidates",
    ]
    return "\r\n".join(lines) + "\r\n"


def _srtp_session(profile: SrtpProfile, key: bytes) -> Any:
    try:
        import pylibsrtp
    except ImportError:
        return None
    policy = pylibsrtp.Policy(
        key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile.iana_id
    )
    return pylibsrtp.Session(policy=policy)


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
    browser: PeerProcess | None = None
    profile_dir = tempfile.TemporaryDirectory(prefix="dtls-ossl-chromium-")
    try:
        url = (
            f"http://{LOCALHOST}:{server.server_address[1]}/?key={spec.key_type}"
            f"&wait={int(timeout * 1000 * 0.6)}"
        )
        browser = PeerProcess(
            ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir.name}", url],
            profile_dir.name,
        )
        while not exchange.offer_ready.wait(0.05):
            if browser.proc.poll() is not None:
                raise RuntimeError(f"chromium exited: {browser.text()[-500:]}")
            deadline.check("the browser's offer")
        offer = exchange.offer or ""
        m = re.search(r"^a=fingerprint:(\S+ \S+)", offer, re.MULTILINE)
        if m is None:
            raise RuntimeError("no a=fingerprint in the offer")
        real = Fingerprint.parse(m.group(1))
        wrong = spec.kind is CellKind.WRONG_FINGERPRINT
        expected = Certificate.generate().fingerprint() if wrong else real
        conn = DtlsConnection(
            our_configuration(spec, ours, deadline.remaining()),
            role=spec.role,
            remote_fingerprints=[expected],
        )
        exchange.answer = _answer(offer, port, ufrag, pwd, ours.fingerprint(), spec.role)
        exchange.answer_ready.set()
        seen: list[events.DtlsEvent] = []
        peer: tuple[str, int] | None = None
        started: float | None = None
        completed: float | None = None
        rx: Any = None
        srtp_ok = 0
        srtp_bad = 0

        def flush() -> None:
            nonlocal completed, rx
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
        theirs.cipher = _IANA_TO_OPENSSL.get(cipher, cipher) if cipher else None
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
            out.add(
                "peer_did_not_complete",
                transport.get("dtlsState") != "connected",
                f"getStats dtlsState {transport.get('dtlsState')}",
            )
        elif hs is None:
            out.add("handshake", False, f"our state {conn.state.value}; events {seen!r}"[:400])
        else:
            out.ours = Negotiated(
                version=hs.protocol_version,
                cipher=hs.cipher,
                srtp_profile=hs.srtp_profile.openssl_name if hs.srtp_profile else None,
            )
            out.add(
                "handshake",
                transport.get("dtlsState") == "connected",
                f"getStats dtlsState {transport.get('dtlsState')}",
            )
            out.compare("version", out.ours.version, theirs.version, "not in getStats")
            out.compare("cipher", out.ours.cipher, theirs.cipher, "not in getStats")
            want = profile.openssl_name
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
                "getStats remote certificate fingerprint",
            )
            role = transport.get("dtlsRole")
            out.add(
                "dtls_role",
                role == ("server" if spec.role is Role.CLIENT else "client"),
                f"browser dtlsRole {role}",
            )
            out.add("app_data", None, "an audio m-line carries SRTP, no DTLS application data")
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
    spec = CellSpec(
        peer="chromium",
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
