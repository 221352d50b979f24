"""The demo's verdict, its printed results and keys, and its JSON summary."""

from __future__ import annotations

from typing import Any, TextIO

from dtls_ossl import events, openssl_version
from dtls_ossl._demo_model import (
    MESSAGE,
    DemoOptions,
    _error_name,
    _first_line,
    _hostport,
    _Peer,
    _short,
)
from dtls_ossl.exceptions import FingerprintMismatchError, InvalidStateError
from dtls_ossl.webrtc.srtp import SrtpKeys


class _Report:
    """The checks and the report of one run, over the state the run loop (``_Demo``) keeps."""

    o: DemoOptions
    seed: int
    arrow: str
    client: _Peer
    server: _Peer
    offer: dict[str, str]
    answer: dict[str, str]
    roles: dict[str, str]
    counts: dict[str, int]
    trace: list[dict[str, Any]]
    echo_sent: int
    echoed: bool
    close_notify_seen: bool

    out: TextIO

    def say(self, line: str = "") -> None:
        """Print one line of the human timeline (nothing in JSON mode)."""
        if not self.o.json:
            print(line.rstrip(), file=self.out, flush=True)

    # ---------------------------------------------------------------------------- checks

    def verdict(self) -> tuple[bool, str]:
        if self.o.wrong_fingerprint:
            return self.verdict_fail_closed()
        c, s = self.client, self.server
        for p in (c, s):
            if p.completed is None:
                why = _error_name(p.terminated.error) if p.terminated else "no answer in time"
                return False, f"the {p.name} handshake did not complete ({why})"
        cc, sc = c.completed, s.completed
        assert cc is not None and sc is not None
        for what, a, b in (
            ("version", cc.protocol_version, sc.protocol_version),
            ("cipher", cc.cipher, sc.cipher),
            ("SRTP profile", cc.srtp_profile, sc.srtp_profile),
        ):
            if a != b:
                return False, f"the sides disagree on the {what}: client {a}, server {b}"
        for p, info in ((c, cc), (s, sc)):
            if not self.fingerprint_verified(p, info):
                return False, f"the {p.name} did not verify the peer's fingerprint"
        ck, sk = cc.srtp_keys, sc.srtp_keys
        if ck is None or sk is None:
            return False, "no SRTP profile was negotiated, so there are no SRTP keys"
        if not ck.mirrors(sk):
            return False, "the SRTP keys do not mirror (client.local != server.remote)"
        if not self.echoed:
            return False, (
                f"the echo of {MESSAGE.decode()!r} did not come back "
                f"after {self.echo_sent} attempt(s)"
            )
        profile = cc.srtp_profile.openssl_name if cc.srtp_profile else "no SRTP"
        return True, (
            f"{cc.protocol_version} + {profile} agreed, fingerprints verified, "
            "SRTP keys mirror, echo returned"
        )

    def verdict_fail_closed(self) -> tuple[bool, str]:
        c, s = self.client, self.server
        if c.completed is not None or s.completed is not None:
            return False, "a handshake completed despite the wrong fingerprint (NOT fail-closed)"
        if c.terminated is None:
            return False, "the client neither completed nor failed: no verdict in time"
        error = c.terminated.error
        if not isinstance(error, FingerprintMismatchError):
            return False, (
                f"the client failed with {_error_name(error)}, expected FingerprintMismatchError"
            )
        try:
            c.conn.srtp_keys()
        except InvalidStateError:
            pass
        else:  # pragma: no cover - srtp_keys() needs a completed handshake
            return False, "the client has SRTP keys after a failed handshake"
        if c.received or s.received:
            return False, "application data flowed after a failed handshake"
        return True, "failed closed as expected: FingerprintMismatchError, no SRTP keys, no data"

    @staticmethod
    def fingerprint_verified(p: _Peer, info: events.HandshakeCompleted) -> bool:
        return (
            info.peer_fingerprint is not None
            and info.peer_fingerprint == p.expected
            and p.expected.matches(info.peer_certificate.der)
            and info.peer_certificate == p.peer.certificate
        )

    # ---------------------------------------------------------------------------- report

    def print_results(self) -> None:
        c, s = self.client, self.server
        self.say()
        if c.completed is not None and s.completed is not None:
            self.print_parameters(c.completed, s.completed)
            return
        for p in (c, s):
            t = p.terminated
            if p.completed is not None:
                self.say(f"{p.name}: handshake completed")
                continue
            if t is None or t.error is None:
                why = "still handshaking" if t is None else f"closed after the {p.peer.name} ended"
                self.say(f"{p.name}: handshake did not complete: {why}")
            else:
                name = _error_name(t.error)
                message = _first_line(str(t.error), 200)
                if isinstance(t.error, FingerprintMismatchError):
                    self.say(f"{p.name}: handshake failed: {name}")
                    for e in t.error.expected:
                        self.say(f"  expected {_short(e)} (from the SDP)")
                    for a in t.error.actual:
                        self.say(f"  got      {_short(a)} (the {p.peer.name}'s certificate)")
                elif len(name) + len(message) < 70:
                    self.say(f"{p.name}: handshake failed: {name}: {message}")
                else:
                    self.say(f"{p.name}: handshake failed: {name}")
                    self.say(f"  {_first_line(message, 96)}")
            try:
                p.conn.srtp_keys()
            except InvalidStateError as exc:
                self.say(f"  srtp_keys() raises InvalidStateError: {_first_line(str(exc), 50)}")

    def print_parameters(
        self, cc: events.HandshakeCompleted, sc: events.HandshakeCompleted
    ) -> None:
        def row(label: str, a: str, b: str) -> None:
            mark = "same" if a == b else "DIFFERENT"
            self.say(f"  {label:<17} {a:<31} {b:<31} {mark}")

        def profile(info: events.HandshakeCompleted) -> str:
            return info.srtp_profile.openssl_name if info.srtp_profile else "(none)"

        def verified(p: _Peer, info: events.HandshakeCompleted) -> str:
            ok = self.fingerprint_verified(p, info)
            return "fingerprint verified" if ok else "fingerprint NOT VERIFIED"

        self.say(f"{'negotiated':<19} {'client':<31} {'server':<31}")
        row("version", cc.protocol_version, sc.protocol_version)
        row("cipher", cc.cipher, sc.cipher)
        row("SRTP profile", profile(cc), profile(sc))
        fc, fs = verified(self.client, cc), verified(self.server, sc)
        self.say(f"  {'peer certificate':<17} {fc:<31} {fs:<31}")

    def print_keys(self) -> None:
        c, s = self.client, self.server
        if c.completed is None or s.completed is None:
            return
        ck, sk = c.completed.srtp_keys, s.completed.srtp_keys
        if ck is None or sk is None:
            self.say("SRTP keys: none (no SRTP profile was negotiated)")
            return
        self.say()
        self.say(f"SRTP master keys, {ck.profile.openssl_name} (RFC 5764 §4.2; throwaway, hex):")
        self.say(f"{'':<15}{'client':<40}{'server':<40}")
        a = self.arrow
        rows = [
            (f"c{a}s key", "local ", ck.local_key, "remote", sk.remote_key),
            (f"c{a}s salt", "local ", ck.local_salt, "remote", sk.remote_salt),
            (f"s{a}c key", "remote", ck.remote_key, "local ", sk.local_key),
            (f"s{a}c salt", "remote", ck.remote_salt, "local ", sk.local_salt),
        ]
        for label, ca, cv, sa, sv in rows:
            ch, sh = cv.hex(), sv.hex()
            mark = "==" if cv == sv else "!="
            chunks = max(1, (len(ch) + 31) // 32)
            for i in range(chunks):
                lab = label if i == 0 else ""
                la, lb = (ca, sa) if i == 0 else ("", "")
                m = mark if i == chunks - 1 else ""
                self.say(
                    f"  {lab:<12} {la:<6} {ch[32 * i : 32 * i + 32]:<32}  "
                    f"{lb:<6} {sh[32 * i : 32 * i + 32]:<32}  {m}".rstrip()
                )
        verdict = "mirror" if ck.mirrors(sk) else "DO NOT mirror"
        self.say(f"  client.local == server.remote and server.local == client.remote: {verdict}")

    def summary(self, ok: bool, reason: str, elapsed: float) -> dict[str, Any]:
        def side(p: _Peer) -> dict[str, Any]:
            info = p.completed
            t = p.terminated
            keys: SrtpKeys | None = info.srtp_keys if info else None
            return {
                "address": _hostport(p.addr),
                "handshake_completed": info is not None,
                "protocol_version": info.protocol_version if info else None,
                "cipher": info.cipher if info else None,
                "srtp_profile": (
                    info.srtp_profile.openssl_name if info and info.srtp_profile else None
                ),
                "expected_fingerprint": str(p.expected),
                "fingerprint_verified": bool(info and self.fingerprint_verified(p, info)),
                "srtp_keys": keys.to_dict() if keys else None,
                "retransmissions": p.retransmissions,
                "alerts_sent": p.alerts_sent,
                "alerts_received": p.alerts_received,
                "received": [d.decode("utf-8", "replace") for d in p.received],
                "error": (
                    None
                    if t is None or t.error is None
                    else {"type": type(t.error).__name__, "message": str(t.error)}
                ),
                "terminated": t is not None,
                "terminated_by_peer": bool(t and t.by_peer),
                "stats": {
                    "datagrams_sent": p.conn.stats.datagrams_sent,
                    "datagrams_received": p.conn.stats.datagrams_received,
                    "datagrams_dropped": p.conn.stats.datagrams_dropped,
                },
            }

        o = self.o
        ck = self.client.completed.srtp_keys if self.client.completed else None
        sk = self.server.completed.srtp_keys if self.server.completed else None
        return {
            "ok": ok,
            "result": "OK" if ok else "FAILED",
            "reason": reason,
            "expected_outcome": "fail-closed" if o.wrong_fingerprint else "success",
            "openssl": openssl_version(),
            "elapsed": round(elapsed, 4),
            "options": {
                "loss": o.loss,
                "reorder": o.reorder,
                "duplicate": o.duplicate,
                "seed": self.seed,
                "mtu": o.mtu,
                "profiles": [p.openssl_name for p in o.profiles],
                "key_type": o.key_type,
                "initial_timeout": o.initial_timeout,
                "timeout": o.timeout,
                "wrong_fingerprint": o.wrong_fingerprint,
            },
            "sdp": {"offer": self.offer, "answer": self.answer, "roles": self.roles},
            "datagrams": dict(self.counts),
            "client": side(self.client),
            "server": side(self.server),
            "keys_mirror": bool(ck and sk and ck.mirrors(sk)),
            "echo_returned": self.echoed,
            "echo_attempts": self.echo_sent,
            "close_notify_received": self.close_notify_seen,
            "timeline": self.trace,
        }
