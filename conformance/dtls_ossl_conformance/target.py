"""``dtls-ossl-conformance target``: test your own DTLS endpoint, dtls_ossl playing the other side.

The target is a server at a fixed address (``--server HOST:PORT``), or a command the harness
starts once per scenario (``--server-cmd`` / ``--client-cmd``) with these placeholders filled in:

==================== ==========================================================================
``{host}``           127.0.0.1 (a client target connects there)
``{port}``           the UDP port: the one a server target must bind, or our server's
``{cert}``/``{key}`` PEM certificate and key the target must present (made per scenario)
``{fingerprint}``    ``sha-256 AB:...``: the certificate the target must expect from us (RFC 8122)
``{profiles}``       the SRTP profile(s) to offer, OpenSSL names joined by ``:``
``{keymatlen}``      bytes of DTLS-SRTP keying material of that profile (RFC 5764 §4.2)
==================== ==========================================================================

A target that prints ``Keying material: <hex>`` (OpenSSL's ``-keymatexport EXTRACTOR-dtls_srtp``
form) on stdout or stderr gets its exported keying material compared with ours.

Scenarios (each a JUnit test case; ``--scenarios`` picks by any part of the id or kind):

- ``handshake``: one per SRTP profile and certificate type (ECDSA P-256, RSA-2048); version,
  cipher, profile and keying material are reported; a profile the target answers with an
  alert is reported as refused (n/a), not failed; at least one must complete.
- ``lossy``: the handshake over a seeded path losing 20% and reordering (RFC 6347 §4.2.4).
- ``wrong-certificate`` (only when a command uses ``{fingerprint}``): the target is told another
  certificate's fingerprint than ours; it must refuse ours with a fatal alert and carry no data
  (RFC 5763 §5, RFC 8122 §5).

- ``drop-each``: each datagram the target sends during the handshake (the first four and the
  last two) dropped in turn; the handshake must still complete; the resend delay is reported,
  and whether a server target sent a HelloVerifyRequest (RFC 6347 §4.2.4, §4.2.1).
- ``retransmit-schedule``: we go silent after the target's first flight and time its resends
  for 7.5 s: first timeout, backoff (RFC 6347 §4.2.4.1), give-up if it came.
- ``hostile-records``: garbage and forged (epoch-1, bad length) records before each of our
  flights; the target must discard them and complete (RFC 6347 §4.1.2.7).
- ``small-mtu``: our flights in datagrams of at most 300 bytes, handshake messages fragmented;
  the target must reassemble them (RFC 6347 §4.2.3).
- ``duplicated-reordered``: each of our flights sent in reverse order, every datagram twice; the
  target must buffer, discard the duplicates and complete (RFC 6347 §4.2.2).
- ``close-notify``: after the handshake (and the echo), a target that ends by itself must send
  close_notify; else we send ours: its answer (an alert record) is reported, application data
  after it fails (RFC 5246 §7.2.1).
- ``browser-hello`` (server targets): Chromium's and Firefox's 1.4 KB DTLS 1.3-capable
  ClientHellos (X25519MLKEM768 key share) in two fragments must get a DTLS 1.2 ServerHello.
- ``dtls10-refused`` (server targets): a DTLS 1.0-only ClientHello must not get a DTLS 1.0
  ServerHello (RFC 8996 §3).

With ``--echo`` the target must echo application data back (checked both ways).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import select
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from dtls_ossl import events
from dtls_ossl._records import (
    ALERT,
    APPLICATION_DATA,
    HANDSHAKE,
    HELLO_VERIFY_REQUEST,
    parse_handshake_fragment_untrusted,
    split_records_untrusted,
)
from dtls_ossl._roles import Role
from dtls_ossl.connection import DtlsConnection
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.sdp import Fingerprint
from dtls_ossl.webrtc.srtp import SrtpProfile
from dtls_ossl_conformance._cell import (
    CellContext,
    CellOutcome,
    Endpoint,
    our_configuration,
    run_standard_cell,
)
from dtls_ossl_conformance._hellos import (
    BROWSERS,
    browser_hello,
    dtls10_hello,
    hello_body,
    hello_record,
    with_cookie,
)
from dtls_ossl_conformance._io import (
    LOCALHOST,
    Condition,
    PeerProcess,
    UdpDriver,
    data_count,
    ended,
    free_udp_port,
    settled,
)
from dtls_ossl_conformance._model import (
    Availability,
    CellFailure,
    CellKind,
    CellSpec,
    Deadline,
    Negotiated,
    Status,
)
from dtls_ossl_conformance._names import PROG
from dtls_ossl_conformance._peer import Peer
from dtls_ossl_conformance._target_paths import ScriptedPath, describe

__all__ = ["DESCRIPTION", "EndpointFactory", "TargetPeer", "TargetSettings", "add_arguments", "run"]

EndpointFactory = Callable[[CellContext, Certificate | None], Endpoint]
"Starts a matrix peer as the target: its own ``_Endpoint`` class (``targets-matrix``)."

DESCRIPTION = __doc__.split("\n\n", 1)[1] + (
    "\nExit status: 0 when every scenario passed, 1 when one failed (or none completed a\n"
    "handshake), 2 for bad arguments."
)

_KEYMAT = r"(?i)keying material:\s*([0-9a-f]+)\s*$"


@dataclass(frozen=True)
class TargetSettings:
    """What ``target`` was told about the endpoint under test."""

    address: tuple[str, int] | None = None
    "A running server's address (``--server``)."
    server_cmd: str | None = None
    client_cmd: str | None = None
    fingerprint: Fingerprint | None = None
    "The fixed server's certificate fingerprint (``--fingerprint``); unchecked when None."
    echo: bool = False
    "The target echoes application data."

    @property
    def role(self) -> Role:
        """Our role: client of a server target, server of a client target."""
        return Role.SERVER if self.client_cmd is not None else Role.CLIENT

    @property
    def command(self) -> str | None:
        """The command template, if the harness starts the target."""
        return self.server_cmd if self.server_cmd is not None else self.client_cmd


class _TargetEndpoint(Endpoint):
    """The target's side of one scenario: a fixed address, or a command started for it."""

    def __init__(
        self,
        ctx: CellContext,
        certificate: Certificate | None,
        settings: TargetSettings,
        told: Fingerprint,
    ) -> None:
        super().__init__(ctx, certificate)
        self.settings = settings
        self.told = told
        self.proc: PeerProcess | None = None
        self.echoes = settings.echo
        self.carries_data = settings.echo

    def _spawn(self, port: int) -> None:
        template = self.settings.command
        if template is None or self.certificate is None:  # pragma: no cover - fixed server
            raise CellFailure("no target command")
        cert, key = self.ctx.write_identity("target", self.certificate)
        profile = self.ctx.spec.profile or SrtpProfile.AES128_CM_SHA1_80
        values = {
            "host": LOCALHOST,
            "port": str(port),
            "cert": shlex.quote(cert),
            "key": shlex.quote(key),
            "fingerprint": shlex.quote(str(self.told)),
            "profiles": profile.openssl_name,
            "keymatlen": str(profile.keying_material_length),
        }
        self.proc = self.ctx.spawn(["/bin/sh", "-c", template.format(**values)])

    def start_server(self) -> tuple[str, int]:
        if self.settings.address is not None:
            return self.settings.address
        from dtls_ossl_conformance._io import wait_udp_bound

        port = free_udp_port()
        self._spawn(port)
        if self.proc is None:  # pragma: no cover - _spawn sets it
            raise CellFailure("the target did not start")
        wait_udp_bound(port, self.proc, self.ctx.deadline, "the target to bind its UDP port")
        return LOCALHOST, port

    def start_client(self, port: int) -> None:
        self._spawn(port)

    def failed(self) -> str | None:
        if self.proc is None:
            return None
        code = self.proc.proc.poll()
        if code is None or code == 0:
            return None
        tail = self.proc.text().strip().splitlines()[-1:] or [""]
        return f"the target exited with status {code}: {tail[0]}"

    def wait_established(self) -> None:
        """Nothing to wait for: the target reports nothing we rely on."""

    def negotiated(self) -> Negotiated:
        out = Negotiated()
        if self.proc is None:
            return out
        try:
            m = self.proc.wait_for(_KEYMAT, Deadline(min(0.5, self.ctx.deadline.remaining())), "")
        except CellFailure:
            return out
        out.keying_material = m.group(1).lower()
        return out


class TargetPeer(Peer):
    """The endpoint under test, as one more peer of the matrix (its cells are the scenarios)."""

    name = "target"
    profiles = tuple(SrtpProfile)

    def __init__(
        self,
        settings: TargetSettings,
        scenarios: tuple[str, ...] = (),
        *,
        peer: Peer | None = None,
        role: Role | None = None,
        endpoint: EndpointFactory | None = None,
    ) -> None:
        """Describe the target; ``scenarios`` filters the cells (empty: all).

        ``peer``, ``role`` and ``endpoint`` make one of the matrix's peers the target (see
        ``targets-matrix``): cells are named after it, use its profiles and key types, and
        ``endpoint`` starts it with its own launch code instead of a command.
        """
        self.settings = settings
        self.scenarios = scenarios
        self.role = settings.role if role is None else role
        self.roles = (self.role,)
        self.install = "(the endpoint under test)"
        self.peer = peer
        self.endpoint = endpoint
        if peer is not None:
            self.name = peer.name
            self.profiles = peer.profiles
            self.key_types = peer.key_types
            self.install = peer.install

    def _make(self, ctx: CellContext, certificate: Certificate, told: Fingerprint) -> Endpoint:
        if self.endpoint is not None:
            return self.endpoint(ctx, certificate)
        return _TargetEndpoint(ctx, certificate, self.settings, told)

    def availability(self) -> Availability:
        """Report the target as available: the user says it is there."""
        if self.peer is not None:
            return self.peer.availability()
        what = self.settings.command or "{}:{}".format(*(self.settings.address or ("?", 0)))
        return Availability(True, version=what)

    def cells(self) -> list[CellSpec]:
        """Handshakes per profile x key type, a lossy one, and the wrong certificate."""
        role = self.role
        out = [
            CellSpec(self.name, role, CellKind.HANDSHAKE, profile, key_type)
            for profile in self.profiles
            for key_type in self.key_types
        ]
        # RSA-2048 certificates make the target's flights span datagrams: more to drop.
        big = "rsa-2048" if "rsa-2048" in self.key_types else self.key_types[0]
        out.append(CellSpec(self.name, role, CellKind.LOSSY, self.profiles[0], big))
        out += [
            CellSpec(self.name, role, kind, self.profiles[0], big)
            for kind in (CellKind.DROP_EACH, CellKind.SMALL_MTU, CellKind.DUPLICATED_REORDERED)
        ]
        out += [
            CellSpec(self.name, role, kind, self.profiles[0], self.key_types[0])
            for kind in (CellKind.RETRANSMIT_SCHEDULE, CellKind.HOSTILE_RECORDS)
        ]
        out.append(
            CellSpec(self.name, role, CellKind.CLOSE_NOTIFY, self.profiles[0], self.key_types[0])
        )
        if role is Role.CLIENT:
            out += [
                CellSpec(self.name, role, kind, self.profiles[0], self.key_types[0])
                for kind in (CellKind.BROWSER_HELLO, CellKind.DTLS10_REFUSED)
            ]
        if "{fingerprint}" in (self.settings.command or ""):
            out.append(
                CellSpec(
                    self.name, role, CellKind.WRONG_CERTIFICATE, self.profiles[0], "ecdsa-p256"
                )
            )
        if self.scenarios:
            out = [c for c in out if self._selected(c)]
        return out

    def _selected(self, spec: CellSpec) -> bool:
        parts = {*spec.id.split("/"), spec.kind.value, spec.id}
        return any(s in parts for s in self.scenarios)

    def run(self, ctx: CellContext) -> CellOutcome:
        """Run one scenario against the target."""
        ours, theirs = ctx.identities.pair(ctx.spec.key_type)
        if ctx.spec.kind is CellKind.WRONG_CERTIFICATE:
            return self._wrong_certificate(ctx, ours, theirs)
        if ctx.spec.kind is CellKind.DROP_EACH:
            return self._drop_each(ctx)
        if ctx.spec.kind is CellKind.RETRANSMIT_SCHEDULE:
            return self._schedule(ctx)
        if ctx.spec.kind is CellKind.CLOSE_NOTIFY:
            return self._close_notify(ctx)
        if ctx.spec.kind in (CellKind.BROWSER_HELLO, CellKind.DTLS10_REFUSED):
            return self._replayed_hellos(ctx)

        def make(c: CellContext, cert: Certificate | None) -> Endpoint:
            return self._make(c, cert or theirs, ours.fingerprint("sha-256"))

        fixed = self.settings.address is not None
        kind = ctx.spec.kind
        path = None
        if kind in (CellKind.HOSTILE_RECORDS, CellKind.SMALL_MTU, CellKind.DUPLICATED_REORDERED):
            path = ScriptedPath(
                hostile=kind is CellKind.HOSTILE_RECORDS,
                duplicate_reverse=kind is CellKind.DUPLICATED_REORDERED,
            )
        out = run_standard_cell(
            ctx,
            make,
            peer_fingerprint=self.settings.fingerprint if fixed else None,
            check_fingerprint=not fixed or self.settings.fingerprint is not None,
            impairment=path,
        )
        if ctx.spec.kind is CellKind.HANDSHAKE:
            _refused_is_not_failed(out)
        elif path is not None:
            _scripted_result(out, path, kind)
        else:
            _impairment_is_informative(out)
        return out

    def _connect(
        self, ctx: CellContext, path: ScriptedPath | None, deadline: Deadline
    ) -> tuple[Endpoint, UdpDriver]:
        """Start the target and our side of a handshake with it over ``path``."""
        spec = ctx.spec
        ours, theirs = ctx.identities.pair(spec.key_type)
        endpoint = self._make(ctx, theirs, ours.fingerprint("sha-256"))
        fixed = self.settings.address is not None
        expected = self.settings.fingerprint if fixed else theirs.fingerprint("sha-256")
        conn = DtlsConnection(
            our_configuration(spec, ours, deadline.remaining()),
            role=spec.role,
            remote_fingerprints=[expected] if expected is not None else None,
            insecure_skip_fingerprint_check=expected is None,
        )
        if spec.role is Role.CLIENT:
            driver = UdpDriver(conn, endpoint.start_server(), path)
            ctx.on_cleanup(driver.close)
            driver.connect()
        else:
            driver = UdpDriver(conn, None, path)
            ctx.on_cleanup(driver.close)
            endpoint.start_client(driver.port)
        return endpoint, driver

    def _attempt(
        self, ctx: CellContext, path: ScriptedPath, deadline: Deadline, until: Condition = settled
    ) -> tuple[UdpDriver, str]:
        """One handshake with the target over ``path``; return the driver and what went wrong."""
        endpoint, driver = self._connect(ctx, path, deadline)
        problem = ""
        try:
            driver.run_until(
                until, deadline, "the handshake", also=lambda: endpoint.failed() is not None
            )
        except CellFailure as exc:
            problem = str(exc)
        problem = problem or endpoint.failed() or ""
        proc = getattr(endpoint, "proc", None)
        if isinstance(proc, PeerProcess):
            proc.stop()
        return driver, problem

    def _close_notify(self, ctx: CellContext) -> CellOutcome:
        """close_notify both ways after the handshake (RFC 5246 §7.2.1, RFC 6347 §4.1)."""
        out = CellOutcome()
        path = ScriptedPath()
        endpoint, driver = self._connect(ctx, path, ctx.deadline)
        try:
            driver.run_until(
                settled, ctx.deadline, "the handshake", also=lambda: endpoint.failed() is not None
            )
        except CellFailure as exc:
            raise CellFailure(f"no handshake to close: {exc}") from None
        if driver.completed is None:
            raise CellFailure(f"no handshake to close: {endpoint.failed() or _terminated(driver)}")
        if endpoint.echoes:
            driver.send(b"close-notify probe")
            try:
                driver.run_until(data_count(1), _within(ctx, ECHO_WAIT), "the echo")
                out.add("echo", True, "echoed back before the close")
            except CellFailure as exc:
                out.add("echo", False, f"no echo before the close: {exc}")
        # A target that ends by itself (a client after its echo) must say so (RFC 5246 §7.2.1).
        with contextlib.suppress(CellFailure):
            driver.run_until(ended, _within(ctx, CLOSE_WAIT), "the target's own close")
        end = next((e for e in driver.events if isinstance(e, events.ConnectionTerminated)), None)
        if end is not None:
            if end.error is None and end.by_peer:
                out.add("target_close_notify", True, "the target ended with close_notify")
            else:
                out.add(
                    "target_close_notify",
                    False,
                    f"the target ended without close_notify ({_terminated(driver)}); "
                    "RFC 5246 §7.2.1: a party ending the connection sends close_notify",
                )
            out.add("our_close_notify", None, "not sent: the target closed first")
            out.log = ctx.log()
            return out
        out.add(
            "target_close_notify",
            None,
            f"the target did not close by itself within {CLOSE_WAIT:g} s",
        )
        before = len(path.arrivals)
        closed_at = time.monotonic()
        driver.shutdown()
        with contextlib.suppress(CellFailure):
            driver.run_until(
                lambda seen: False,
                _within(ctx, CLOSE_WAIT),
                "an answer to our close_notify",
                also=lambda: endpoint.failed() is not None,
            )
        after = path.arrivals[before:]
        alerts = [t for t, d in after if _has_record(d, ALERT)]
        late_data = [
            t for t, d in after if _has_record(d, APPLICATION_DATA) and t > closed_at + 0.2
        ]
        exited = endpoint.failed()
        if alerts:
            out.add(
                "answered",
                True,
                f"an alert record (encrypted: its close_notify) "
                f"{(alerts[0] - closed_at) * 1000:.0f} ms after ours (RFC 5246 §7.2.1)",
            )
        else:
            out.add(
                "answered",
                None,
                "no alert back within "
                f"{CLOSE_WAIT:g} s{f' ({exited})' if exited else ''}: RFC 5246 §7.2.1 asks for a "
                "close_notify in answer, RFC 8446 §6.1 (and most stacks) not",
            )
        out.add(
            "no_data_after",
            not late_data,
            "nothing sent after our close_notify"
            if not late_data
            else f"{len(late_data)} application data records after our close_notify "
            "(RFC 5246 §7.2.1: the connection is closed)",
        )
        out.log = ctx.log()
        proc = getattr(endpoint, "proc", None)
        if isinstance(proc, PeerProcess):
            proc.stop()
        return out

    def _replayed_hellos(self, ctx: CellContext) -> CellOutcome:
        """Replay browsers' DTLS 1.3-capable ClientHellos, or a DTLS 1.0-only one, to the server."""
        ours, theirs = ctx.identities.pair(ctx.spec.key_type)
        endpoints: list[Endpoint] = []

        def start() -> tuple[str, int]:
            # A fresh target per hello: many serve one client, and a hello leaves it waiting.
            endpoints.append(self._make(ctx, theirs, ours.fingerprint("sha-256")))
            return endpoints[-1].start_server()

        conn = DtlsConnection(our_configuration(ctx.spec, ours, 5.0), role=Role.CLIENT)
        now = time.monotonic()
        conn.connect(now)
        base = hello_body(conn.datagrams_to_send(now)[0])
        out = CellOutcome()
        if ctx.spec.kind is CellKind.BROWSER_HELLO:
            for browser in BROWSERS:
                body = browser_hello(base, browser)
                got = _exchange(ctx, start(), body, parts=2, version=0xFEFD)
                good = got.startswith("ServerHello DTLS 1.2")
                out.add(
                    browser,
                    good,
                    f"{len(body)}-byte ClientHello in 2 fragments: {got}"
                    + (
                        ""
                        if good
                        else "; expected a DTLS 1.2 ServerHello (RFC 6347 §4.2.1, RFC 5246 "
                        "§7.4.1.4: unknown extensions ignored, RFC 8446 §4.2.1: a 1.2 server "
                        "ignores supported_versions)"
                    ),
                )
        else:
            body = dtls10_hello(base)
            got = _exchange(ctx, start(), body, parts=1, version=0xFEFF)
            accepted = got.startswith("ServerHello DTLS 1.0")
            out.add(
                "refused",
                not accepted,
                f"DTLS 1.0-only ClientHello: {got}"
                + (
                    "; expected a refusal (RFC 8996 §3: DTLS 1.0 MUST NOT be negotiated)"
                    if accepted
                    else ""
                ),
            )
        for endpoint in endpoints:
            proc = getattr(endpoint, "proc", None)
            if isinstance(proc, PeerProcess):
                proc.stop()
        out.log = ctx.log()
        return out

    def _drop_each(self, ctx: CellContext) -> CellOutcome:
        """Drop each of the target's handshake datagrams in turn; it must recover each time."""
        out = CellOutcome()
        base = ScriptedPath()
        driver, problem = self._attempt(ctx, base, Deadline(min(8.0, ctx.deadline.remaining())))
        if driver.completed is None:
            raise CellFailure(f"no handshake to start from: {problem or _terminated(driver)}")
        done = driver.completed
        sent = [d for t, d in base.arrivals if t <= done]
        # The first datagrams (the first flights) and the last two (the last flight, which
        # only comes again when our previous flight does: wolfSSL's defect lives there).
        picked = list(range(1, len(sent) + 1))
        if len(picked) > MAX_DROPS:
            picked = picked[: MAX_DROPS - 2] + picked[-2:]
        hvr = any("HelloVerifyRequest" in describe(d) for d in sent)
        if ctx.spec.role is Role.CLIENT:
            out.add(
                "hello_verify_request",
                None,
                ("offered" if hvr else "not offered") + " (RFC 6347 §4.2.1: a server SHOULD)",
            )
        for k in picked:
            datagram = sent[k - 1]
            path = ScriptedPath(drop=k)
            what = f"drop #{k} ({describe(datagram)})"
            if ctx.deadline.remaining() < 1.5:
                out.add(what, None, "not run: the scenario's time (--timeout x3) ran out")
                continue
            budget = Deadline(min(DROP_BUDGET, max(0.5, ctx.deadline.remaining() - 0.5)))
            try:
                driver, problem = self._attempt(ctx, path, budget)
            except CellFailure as exc:  # the target did not even start: time ran out
                out.add(what, None, f"not run: {exc}")
                continue
            if path.dropped is None:
                out.add(what, None, "the target sent fewer datagrams this time")
                continue
            resent = path.retransmissions(path.dropped)
            after = f"resent after {(resent[0] - path.dropped[0]) * 1000:.0f} ms" if resent else ""
            if driver.completed is not None:
                took = (driver.completed - path.dropped[0]) * 1000
                out.add(what, True, f"{after or 'recovered'}; handshake done {took:.0f} ms later")
            elif not resent:
                out.add(
                    what,
                    False,
                    f"the target never retransmitted it within {budget.seconds:g} s "
                    f"({problem or _terminated(driver)}); RFC 6347 §4.2.4: a flight is "
                    "retransmitted until answered, the last one when the peer's previous flight "
                    "comes again",
                )
            else:
                out.add(
                    what,
                    False,
                    f"{after}, but no handshake: {problem or _terminated(driver)} "
                    "(RFC 6347 §4.2.4)",
                )
        out.log = ctx.log()
        return out

    def _schedule(self, ctx: CellContext) -> CellOutcome:
        """Go silent once the target's first flight of interest came; time its retransmissions."""
        out = CellOutcome()
        # A server target's timer runs on its ServerHello flight; a client target's on its
        # ClientHello.
        first = 2 if ctx.spec.role is Role.CLIENT else 1
        path = ScriptedPath(silent_after=first)
        window = min(SCHEDULE_WINDOW, max(1.0, ctx.deadline.remaining() - 1.0))
        _, problem = self._attempt(ctx, path, Deadline(window), until=lambda seen: False)
        trigger = next(
            ((t, d) for t, d in path.arrivals if f"{_HELLO[first]}" in describe(d)), None
        )
        if trigger is None:
            raise CellFailure(f"the target sent no {_HELLO[first]} ({problem})")
        resent = path.retransmissions(trigger)
        times = [trigger[0], *resent]
        gaps = [round((b - a) * 1000) for a, b in itertools.pairwise(times)]
        gave_up = "exited" in problem
        tail = (
            f"; it gave up: {problem}"
            if gave_up
            else f"; still going after {window:g} s (give-up not reached)"
        )
        flight = describe(trigger[1])
        out.add(
            "retransmits",
            bool(resent),
            f"{flight} resent after {', '.join(f'{g} ms' for g in gaps)}{tail}"
            if resent
            else f"{flight} never resent within {window:g} s of silence (RFC 6347 §4.2.4)",
        )
        if len(gaps) < 2:
            out.add("backoff", None, "fewer than two retransmissions to compare")
        else:
            grows = all(b >= 0.9 * a for a, b in itertools.pairwise(gaps))
            out.add(
                "backoff",
                grows,
                f"intervals {gaps} ms (RFC 6347 §4.2.4.1: the timer doubles, 1 s initial "
                "recommended)",
            )
        out.log = ctx.log()
        return out

    def _wrong_certificate(
        self, ctx: CellContext, ours: Certificate, theirs: Certificate
    ) -> CellOutcome:
        spec = ctx.spec
        endpoint = _TargetEndpoint(ctx, theirs, self.settings, ctx.identities.wrong_fingerprint())
        conn = DtlsConnection(
            our_configuration(spec, ours, ctx.deadline.remaining()),
            role=spec.role,
            remote_fingerprints=[theirs.fingerprint("sha-256")],
        )
        if spec.role is Role.CLIENT:
            driver = UdpDriver(conn, endpoint.start_server(), None)
            ctx.on_cleanup(driver.close)
            driver.connect()
        else:
            driver = UdpDriver(conn, None, None)
            ctx.on_cleanup(driver.close)
            endpoint.start_client(driver.port)
        out = CellOutcome()
        try:
            seen = driver.run_until(settled, ctx.deadline, "the target's answer")
        except CellFailure:
            seen = driver.events
        completed = any(isinstance(e, events.HandshakeCompleted) for e in seen)
        alerts = [e for e in seen if isinstance(e, events.AlertReceived) and e.level == 2]
        out.add(
            "refused",
            not completed,
            "the target completed the handshake with a certificate it was not told"
            if completed
            else "no handshake",
        )
        out.add(
            "fatal_alert",
            bool(alerts),
            f"{alerts[0].name} ({alerts[0].description})"
            if alerts
            else "no fatal alert received (RFC 5246 §7.2: a failed handshake sends one)",
        )
        out.add(
            "no_app_data",
            not any(isinstance(e, events.DataReceived) for e in seen),
            "RFC 5763 §5",
        )
        out.log = ctx.log()
        return out


MAX_DROPS = 6
"At most this many of the target's datagrams are dropped in turn (the first ones and the last two)."
DROP_BUDGET = 6.0
"Seconds one drop-each handshake may take (OpenSSL's timers start at 1 s, then double)."
CLOSE_WAIT = 1.5
"Seconds close-notify waits for the target to close by itself, then for its answer to ours."
ECHO_WAIT = 3.0
"Seconds close-notify waits for the echo before closing."
HELLO_WAIT = 3.0
"Seconds browser-hello and dtls10-refused wait for the server's answer (a resend included)."
HELLO_RESEND = 1.0
"Seconds before browser-hello and dtls10-refused resend an unanswered ClientHello."
SCHEDULE_WINDOW = 7.5
"Seconds of silence in retransmit-schedule: a 1 s timer doubling resends at 1, 3 and 7 s."
_HELLO = {1: "ClientHello", 2: "ServerHello"}


def _within(ctx: CellContext, seconds: float) -> Deadline:
    return Deadline(max(0.1, min(seconds, ctx.deadline.remaining() - 0.2)))


def _has_record(datagram: bytes, content_type: int) -> bool:
    return any(r.content_type == content_type for r in split_records_untrusted(datagram)[0])


def _answer(datagram: bytes) -> str | None:
    """Name a server's answer to a ClientHello: ``ServerHello DTLS 1.2``, an alert, a HVR."""
    for r in split_records_untrusted(datagram)[0]:
        if r.content_type == ALERT and len(r.fragment) >= 2 and r.epoch == 0:
            level = "fatal" if r.fragment[0] == 2 else "warning"
            return f"{level} alert {r.fragment[1]}"
        hs = parse_handshake_fragment_untrusted(r.fragment)
        if r.content_type != HANDSHAKE or r.epoch != 0 or hs is None:
            continue
        if hs.msg_type == HELLO_VERIFY_REQUEST:
            return "HelloVerifyRequest"
        if hs.msg_type == 2 and len(hs.body) >= 2:
            version = int.from_bytes(hs.body[:2], "big")
            name = {0xFEFD: "1.2", 0xFEFF: "1.0", 0xFEFC: "1.3"}.get(version, f"{version:#06x}")
            return f"ServerHello DTLS {name}"
    return None


def _exchange(
    ctx: CellContext, address: tuple[str, int], body: bytes, *, parts: int, version: int
) -> str:
    """Send ClientHello ``body`` in ``parts`` datagrams; answer a HelloVerifyRequest once.

    Returns what the server answered: ``ServerHello DTLS 1.2 (after a HelloVerifyRequest)``,
    ``fatal alert 70``, or ``no answer within 3 s``.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctx.on_cleanup(sock.close)
    sock.connect(address)
    hvr = False
    seq = 0

    def send(message_seq: int) -> float:
        # A real client resends its hello on a timer; a target still binding its port gets
        # the next copy (an ICMP error of the last one surfaces on any later call).
        nonlocal seq
        for d in hello_record(
            body,
            message_seq=message_seq,
            record_seqs=tuple(range(seq, seq + parts)),
            version=version,
        ):
            with contextlib.suppress(ConnectionRefusedError):
                sock.send(d)
        seq += parts
        return time.monotonic() + HELLO_RESEND

    for message_seq in (0, 1):
        resend = send(message_seq)
        deadline = _within(ctx, HELLO_WAIT)
        answer = None
        while answer is None and not deadline.expired():
            if time.monotonic() >= resend:
                resend = send(message_seq)
            wait = max(0.0, min(0.2, deadline.remaining(), resend - time.monotonic()))
            if not select.select([sock], [], [], wait)[0]:
                continue
            try:
                datagram = sock.recv(65535)
            except ConnectionRefusedError:
                continue
            answer = _answer(datagram)
            if answer == "HelloVerifyRequest" and message_seq == 0:
                cookie = _cookie(datagram)
                if cookie is not None:
                    body = with_cookie(body, cookie)
                    hvr = True
                    break
        else:
            if answer is None:
                return f"no answer within {HELLO_WAIT:g} s" + (
                    " to the ClientHello with the cookie" if hvr else ""
                )
            return answer + (" (after a HelloVerifyRequest)" if hvr else "")
    return "HelloVerifyRequest again for the ClientHello with its cookie"


def _cookie(datagram: bytes) -> bytes | None:
    """Return a HelloVerifyRequest's cookie: server_version(2) cookie<0..255> (RFC 6347 §4.2.1)."""
    for r in split_records_untrusted(datagram)[0]:
        hs = parse_handshake_fragment_untrusted(r.fragment)
        if hs is not None and hs.msg_type == HELLO_VERIFY_REQUEST and len(hs.body) >= 3:
            return bytes(hs.body[3 : 3 + hs.body[2]])
    return None


def _terminated(driver: UdpDriver) -> str:
    for e in driver.events:
        if isinstance(e, events.ConnectionTerminated):
            return f"ended: {type(e.error).__name__}: {e.error}" if e.error else "closed"
    return f"our state {driver.conn.state.value}"


_SCRIPTED = {
    CellKind.HOSTILE_RECORDS: (
        "hostile_records",
        "discarded, the handshake completed (RFC 6347 §4.1.2.7)",
        "after garbage and forged records, which RFC 6347 §4.1.2.7 says to discard silently",
    ),
    CellKind.SMALL_MTU: (
        "small_mtu",
        "reassembled, the handshake completed (RFC 6347 §4.2.3)",
        "with our handshake messages fragmented to fit 300-byte datagrams, which RFC 6347 "
        "§4.2.3 says a receiver reassembles",
    ),
    CellKind.DUPLICATED_REORDERED: (
        "duplicated_reordered",
        "the handshake completed (RFC 6347 §4.2.2: reordered messages are buffered, "
        "duplicates discarded; §4.1.2.6 replay detection)",
        "with our flights reversed and every datagram sent twice, which RFC 6347 §4.2.2 says "
        "a receiver buffers and discards",
    ),
}


def _scripted_result(out: CellOutcome, path: ScriptedPath, kind: CellKind) -> None:
    """Replace the lossy cell's impairment check by what the scripted path proved."""
    from dtls_ossl_conformance._model import Check, CheckStatus

    name, passed, failed = _SCRIPTED[kind]
    summary = path.summary()
    if kind is CellKind.SMALL_MTU and path.sent:
        summary = f"our {len(path.sent)} datagrams of at most {max(path.sent)} bytes"
    for i, check in enumerate(out.checks):
        if check.name == "impairment":
            out.checks[i] = Check(name, CheckStatus.PASS, f"{summary}: {passed}")
        elif check.status is CheckStatus.FAIL:
            out.checks[i] = Check(check.name, check.status, f"{check.detail} ({failed})")


def _refused_is_not_failed(out: CellOutcome) -> None:
    """Report a handshake the target ended with an alert as a refusal, not a failure."""
    from dtls_ossl_conformance._model import Check, CheckStatus

    for i, check in enumerate(out.checks):
        if (
            check.name == "handshake"
            and check.status is CheckStatus.FAIL
            and ("alert" in check.detail.lower())
        ):
            out.checks[i] = Check(
                "handshake", CheckStatus.NOT_APPLICABLE, f"refused: {check.detail}"
            )


def _impairment_is_informative(out: CellOutcome) -> None:
    """Report a path that happened not to both drop and reorder as n/a: it says nothing bad.

    A target whose flights fit in one datagram (an ECDSA certificate) leaves nothing to reorder
    inside a flight; the cell still proves recovery from the losses it had.
    """
    from dtls_ossl_conformance._model import Check, CheckStatus

    for i, check in enumerate(out.checks):
        if check.name == "impairment" and check.status is CheckStatus.FAIL:
            out.checks[i] = Check("impairment", CheckStatus.NOT_APPLICABLE, check.detail)


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _fingerprint(text: str) -> Fingerprint:
    try:
        return Fingerprint.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the target's options (one of --server, --server-cmd, --client-cmd is required)."""
    from dtls_ossl_conformance.command import _seconds
    from dtls_ossl_conformance.runner import DEFAULT_TIMEOUT

    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--server", type=_address, metavar="HOST:PORT", help="a running server")
    which.add_argument(
        "--server-cmd", metavar="CMD", help="start a server per scenario (placeholders above)"
    )
    which.add_argument(
        "--client-cmd", metavar="CMD", help="start a client per scenario (placeholders above)"
    )
    p.add_argument(
        "--fingerprint",
        type=_fingerprint,
        metavar="'sha-256 AB:..'",
        help="with --server: its certificate's fingerprint (default: not checked)",
    )
    p.add_argument("--report", metavar="DIR", help="write report.json and junit.xml into DIR")
    p.add_argument(
        "--scenarios",
        metavar="A,B",
        help="run only these: a scenario (handshake, close-notify...), a profile or a key type",
    )
    p.add_argument("--echo", action="store_true", help="the target echoes application data")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds one scenario may take (default: {DEFAULT_TIMEOUT:g}; lossy: 3x)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the scenarios; 1 if one failed or none completed a handshake."""
    from dtls_ossl_conformance.runner import run_matrix

    if args.fingerprint is not None and args.server is None:
        print(f"{PROG}: error: --fingerprint goes with --server", file=sys.stderr)
        return 2
    settings = TargetSettings(
        address=args.server,
        server_cmd=args.server_cmd,
        client_cmd=args.client_cmd,
        fingerprint=args.fingerprint,
        echo=args.echo,
    )
    scenarios = tuple(s.strip() for s in (args.scenarios or "").split(",") if s.strip())
    peer = TargetPeer(settings, scenarios)
    if not peer.cells():
        print(f"{PROG}: error: --scenarios matches no scenario", file=sys.stderr)
        return 2
    report = run_matrix([peer], timeout=args.timeout, out=sys.stdout, report_dir=args.report)
    handshakes = [
        r
        for r in report.results
        if r.spec.kind in (CellKind.HANDSHAKE, CellKind.LOSSY)
        and any(c.name == "handshake" and c.status.value == "pass" for c in r.checks)
    ]
    wanted = [r for r in report.results if r.spec.kind in (CellKind.HANDSHAKE, CellKind.LOSSY)]
    if wanted and not handshakes:
        print("target: no handshake completed", file=sys.stdout)
        return 1
    return 1 if any(r.status is Status.FAILED for r in report.results) else report.exit_status
