"""One cell: our connection against a peer endpoint, and the checks every cell makes.

:class:`Endpoint` is the peer's side of one cell (a subprocess, a thread, a browser page).
:func:`run_standard_cell` drives our :class:`~dtls_ossl.DtlsConnection` against it and makes
the checks of the issue: handshake, version, cipher, SRTP profile, exported keying material,
application data both ways, both fingerprint checks; or, for a wrong-fingerprint cell, that we
fail closed (FingerprintMismatchError, a fatal bad_certificate alert, no keys, no data).
"""

from __future__ import annotations

import abc
import contextlib
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from dtls_ossl import events
from dtls_ossl._impair import LossyPath
from dtls_ossl._records import reassemble_client_hello_untrusted
from dtls_ossl._roles import Role
from dtls_ossl.configuration import DEFAULT_SRTP_PROFILES, DtlsConfiguration
from dtls_ossl.connection import DtlsConnection
from dtls_ossl.exceptions import FingerprintMismatchError, InvalidStateError
from dtls_ossl.webrtc.certificate import Certificate
from dtls_ossl.webrtc.sdp import Fingerprint
from dtls_ossl.webrtc.srtp import SRTP_EXPORTER_LABEL, SrtpKeys
from dtls_ossl_conformance._io import PeerProcess, UdpDriver, ended, settled
from dtls_ossl_conformance._model import (
    CellFailure,
    CellKind,
    CellSpec,
    Check,
    CheckStatus,
    Deadline,
    Negotiated,
)

__all__ = ["CellContext", "CellOutcome", "Endpoint", "Identities", "run_standard_cell"]

MTU = 1200
OUR_LINE = b"0123 dtls_ossl to peer\n"
PEER_LINE = b"4567 peer to dtls_ossl\n"
_BAD_CERTIFICATE = 42


class Identities:
    """Certificates made once per run: RSA key generation is slow."""

    def __init__(self) -> None:
        """Start empty; certificates are generated on first use."""
        self._made: dict[str, tuple[Certificate, Certificate]] = {}
        self._stranger: Certificate | None = None

    def pair(self, key_type: str) -> tuple[Certificate, Certificate]:
        """Ours and the peer's certificate of ``key_type``."""
        if key_type not in self._made:
            self._made[key_type] = (Certificate.generate(key_type), Certificate.generate(key_type))
        return self._made[key_type]

    def wrong_fingerprint(self) -> Fingerprint:
        """Return the fingerprint of a certificate that nobody in the run presents."""
        if self._stranger is None:
            self._stranger = Certificate.generate()
        return self._stranger.fingerprint("sha-256")


@dataclass
class CellOutcome:
    """What a cell produced; the runner turns it into a CellResult."""

    checks: list[Check] = field(default_factory=list)
    ours: Negotiated = field(default_factory=Negotiated)
    theirs: Negotiated = field(default_factory=Negotiated)
    handshake_time: float | None = None
    log: str = ""

    def add(self, name: str, ok: bool | None, detail: str = "") -> None:
        """Record a check: True passes, False fails, None is not applicable."""
        status = (
            CheckStatus.NOT_APPLICABLE
            if ok is None
            else (CheckStatus.PASS if ok else CheckStatus.FAIL)
        )
        self.checks.append(Check(name, status, detail))

    def compare(self, name: str, ours: str | None, theirs: str | None, why_na: str) -> None:
        """Check that both sides report the same value (n/a when the peer cannot tell)."""
        if theirs is None:
            self.add(name, None, why_na)
        else:
            self.add(name, ours == theirs, f"ours {ours}, peer {theirs}")


class CellContext:
    """What one cell may use: its deadline, a scratch directory, and cleanup of what it starts."""

    def __init__(self, spec: CellSpec, deadline: Deadline, identities: Identities) -> None:
        """Make the scratch directory; call :meth:`cleanup` when done."""
        self.spec = spec
        self.deadline = deadline
        self.identities = identities
        self._tmp = tempfile.TemporaryDirectory(prefix="dtls-ossl-conformance-")
        self.dir = self._tmp.name
        self._cleanups: list[Callable[[], None]] = []
        self.processes: list[PeerProcess] = []

    def spawn(self, args: list[str], env: dict[str, str] | None = None) -> PeerProcess:
        """Start a program in the scratch directory; it is stopped by :meth:`cleanup`."""
        proc = PeerProcess(args, self.dir, env)
        self.processes.append(proc)
        self.on_cleanup(proc.stop)
        return proc

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at cleanup (last registered, first run)."""
        self._cleanups.append(fn)

    def write_identity(self, name: str, cert: Certificate) -> tuple[str, str]:
        """Write ``cert`` and its key as PEM files; return their paths."""
        cert_pem, key_pem = cert.to_pem()
        cert_path = f"{self.dir}/{name}.crt"
        key_path = f"{self.dir}/{name}.key"
        with open(cert_path, "wb") as f:
            f.write(cert_pem)
        with open(key_path, "wb") as f:
            f.write(key_pem)
        return cert_path, key_path

    def log(self) -> str:
        """Return the output of every program started, the last 4000 characters of each."""
        parts = []
        for p in self.processes:
            text = p.text()
            if len(text) > 4000:
                text = "...\n" + text[-4000:]
            parts.append(f"$ {' '.join(p.args)}\n{text}")
        return "\n".join(parts)

    def cleanup(self) -> None:
        """Stop everything started (every step runs even if one fails), remove the directory."""
        while self._cleanups:
            fn = self._cleanups.pop()
            with contextlib.suppress(Exception):
                fn()
        with contextlib.suppress(OSError):
            self._tmp.cleanup()


class Endpoint(abc.ABC):
    """The peer's side of one cell.

    The default methods say "the peer cannot show this"; override what the peer can do.
    """

    def __init__(self, ctx: CellContext, certificate: Certificate | None) -> None:
        """Remember the context and the peer's own certificate (None if it makes its own)."""
        self.ctx = ctx
        self.certificate = certificate

    @abc.abstractmethod
    def start_server(self) -> tuple[str, int]:
        """Start the peer as the DTLS server; return its UDP address."""

    @abc.abstractmethod
    def start_client(self, port: int) -> None:
        """Start the peer as the DTLS client of our server on 127.0.0.1:``port``."""

    def failed(self) -> str | None:
        """Why the peer has already failed or exited, if it has (for early exit)."""
        return None

    @abc.abstractmethod
    def wait_established(self) -> None:
        """Wait until the peer reports its handshake complete. Raise CellFailure otherwise."""

    @abc.abstractmethod
    def negotiated(self) -> Negotiated:
        """Return what the peer reports (after :meth:`wait_established`)."""

    def received_certificate(self) -> bytes | None:
        """DER of the certificate the peer received from us, if it can show it."""
        return None

    certificate_evidence = "DER compared"
    "How :meth:`received_certificate` knows (the detail of that check)."

    echoes = False
    "The peer echoes our data back instead of sending its own line."
    own_line: bytes | None = None
    "A fixed message the peer sends by itself (a canned reply or greeting) instead of ours."
    carries_data = True
    "The peer carries application data at all."

    def expect_data(self, data: bytes) -> None:  # noqa: B027 - optional hook
        """Wait until the peer shows it received ``data`` (unused when it echoes)."""

    def send_data(self, data: bytes) -> None:  # noqa: B027 - optional hook
        """Make the peer send ``data`` to us (unused when it echoes)."""

    def finish(self) -> None:  # noqa: B027 - optional hook
        """After our close_notify: let the peer end cleanly (best effort)."""

    def completed_anyway(self) -> bool | None:
        """For a wrong-fingerprint cell: did the peer complete (None: it cannot tell)."""
        return None


SMALL_MTU = 300
"Our MTU in a small-mtu cell: handshake messages fragmented (RFC 6347 §4.2.3)."
LOSSY_LOSS = 0.2
"Loss rate of each direction in a lossy cell (after the first datagram each way, always lost)."
LOSSY_INITIAL_RETRANSMIT = 0.1
"Our first retransmission timeout in a lossy cell (seconds)."
LOSSY_MAX_RETRANSMIT = 2.0
"""Our backoff cap in a lossy cell. OpenSSL gives up after 12 expiries without progress while
the peers back off from 1 s (1, 2, 4, 8 s): a 1 s cap would give up after ~10 s."""


def our_configuration(
    spec: CellSpec, certificate: Certificate, timeout: float
) -> DtlsConfiguration:
    """Our configuration for a cell: only the cell's profile, WebRTC-like timers.

    A lossy cell starts retransmitting after 100 ms, as a WebRTC stack that knows the RTT
    would, and backs off to 2 s.
    """
    lossy = spec.kind is CellKind.LOSSY
    return DtlsConfiguration(
        certificate=certificate,
        srtp_profiles=(spec.profile,) if spec.profile is not None else DEFAULT_SRTP_PROFILES,
        mtu=SMALL_MTU if spec.kind is CellKind.SMALL_MTU else MTU,
        initial_retransmit_timeout=LOSSY_INITIAL_RETRANSMIT if lossy else 0.2,
        max_retransmit_timeout=LOSSY_MAX_RETRANSMIT if lossy else 1.0,
        handshake_timeout=timeout,
    )


def impairment_for(spec: CellSpec) -> LossyPath | None:
    """Return the seeded impairment of a lossy cell (seed: the CRC-32 of the cell id)."""
    if spec.kind is not CellKind.LOSSY:
        return None
    return LossyPath(zlib.crc32(spec.id.encode()), loss=LOSSY_LOSS)


def run_standard_cell(
    ctx: CellContext,
    make_endpoint: Callable[[CellContext, Certificate | None], Endpoint],
    *,
    peer_uses_our_certificates: bool = True,
    peer_fingerprint: Fingerprint | None = None,
    check_fingerprint: bool = True,
    impairment: LossyPath | None = None,
) -> CellOutcome:
    """Run ``ctx.spec`` against the endpoint that ``make_endpoint`` creates.

    :param peer_fingerprint: the fingerprint the peer's certificate has, when it brings its
        own (default: that of the peer certificate of the cell's identities).
    :param check_fingerprint: False accepts any peer certificate (a target whose fingerprint
        was not given); the fingerprint check is then reported as not applicable.
    :param impairment: the path between our connection and the socket (default: the lossy
        cell's seeded one, or none).
    """
    spec = ctx.spec
    ours, theirs = ctx.identities.pair(spec.key_type)
    peer_cert = theirs if peer_uses_our_certificates else None
    endpoint = make_endpoint(ctx, peer_cert)
    expected: Fingerprint | None
    if spec.kind is CellKind.WRONG_FINGERPRINT:
        expected = ctx.identities.wrong_fingerprint()
    elif not check_fingerprint:
        expected = None
    else:
        expected = peer_fingerprint or theirs.fingerprint("sha-256")
    conn = DtlsConnection(
        our_configuration(spec, ours, ctx.deadline.remaining()),
        role=spec.role,
        remote_fingerprints=[expected] if expected is not None else None,
        insecure_skip_fingerprint_check=expected is None,
    )
    out = CellOutcome()
    if impairment is None:
        impairment = impairment_for(spec)
    try:
        if spec.role is Role.CLIENT:
            address = endpoint.start_server()
            driver = UdpDriver(conn, address, impairment)
            ctx.on_cleanup(driver.close)
            driver.connect()
        else:
            driver = UdpDriver(conn, None, impairment)
            ctx.on_cleanup(driver.close)
            endpoint.start_client(driver.port)
        try:
            seen = driver.run_until(
                settled, ctx.deadline, "the handshake", also=lambda: endpoint.failed() is not None
            )
        except CellFailure as exc:
            if impairment is None:
                raise
            raise CellFailure(f"{exc}; impairment {impairment.summary()}") from None
        out.handshake_time = driver.handshake_time
        if spec.kind is CellKind.WRONG_FINGERPRINT:
            _check_fail_closed(out, conn, driver, seen, endpoint)
        else:
            _check_handshake(out, ctx, conn, driver, seen, endpoint, ours, expected)
    finally:
        out.log = ctx.log()
    return out


def _terminated_error(seen: list[events.DtlsEvent]) -> str:
    for e in seen:
        if isinstance(e, events.ConnectionTerminated):
            return f"{type(e.error).__name__}: {e.error}" if e.error else "closed"
    return "no end event"


def _check_handshake(
    out: CellOutcome,
    ctx: CellContext,
    conn: DtlsConnection,
    driver: UdpDriver,
    seen: list[events.DtlsEvent],
    endpoint: Endpoint,
    ours: Certificate,
    expected: Fingerprint | None,
) -> None:
    spec = ctx.spec
    hs = next((e for e in seen if isinstance(e, events.HandshakeCompleted)), None)
    if hs is None:
        why = endpoint.failed() or _terminated_error(seen)
        if driver.impairment is not None:
            why += f"; impairment {driver.impairment.summary()}"
        out.add("handshake", False, why)
        return
    out.ours = Negotiated(
        version=hs.protocol_version,
        cipher=hs.cipher,
        srtp_profile=hs.srtp_profile.openssl_name if hs.srtp_profile else None,
    )
    material = b""
    if hs.srtp_profile is not None:
        material = conn.export_keying_material(
            SRTP_EXPORTER_LABEL, hs.srtp_profile.keying_material_length
        )
        out.ours.keying_material = material.hex()
    if driver.impairment is not None:
        # Over the lossy path the peer may still need our retransmissions to complete.
        with driver.pumping():
            endpoint.wait_established()
    else:
        endpoint.wait_established()
    out.add("handshake", True, f"{(driver.handshake_time or 0) * 1000:.0f} ms")
    if driver.impairment is not None:
        imp = driver.impairment
        summary = imp.summary()
        driver.stop_impairment()  # the data checks below run over a clean path
        out.add(
            "impairment",
            imp.out.dropped > 0
            and imp.inn.dropped > 0
            and imp.out.reordered + imp.inn.reordered > 0,
            f"{summary}; we retransmitted {conn.stats.retransmissions} times, first after "
            f"{LOSSY_INITIAL_RETRANSMIT * 1000:.0f} ms",
        )
    theirs = endpoint.negotiated()
    out.theirs = theirs
    if spec.kind is CellKind.DTLS13_HELLO:
        hello = reassemble_client_hello_untrusted(driver.inbound)
        described = hello.describe() if hello is not None else "no ClientHello seen"
        out.add(
            "client_hello_offers_1.3",
            hello is not None and hello.complete and hello.offers_dtls13,
            described,
        )
        theirs.extra["client_hello"] = described
    out.compare("version", out.ours.version, theirs.version, "the peer does not report it")
    out.compare("cipher", out.ours.cipher, theirs.cipher, "the peer does not report it")
    want = spec.profile.openssl_name if spec.profile else None
    if out.ours.srtp_profile != want:
        out.add("srtp_profile", False, f"ours {out.ours.srtp_profile}, wanted {want}")
    else:
        out.compare(
            "srtp_profile",
            out.ours.srtp_profile,
            theirs.srtp_profile,
            "the peer does not report it",
        )
    if hs.srtp_profile is not None:
        split_ok = hs.srtp_keys == SrtpKeys.from_keying_material(
            hs.srtp_profile, material, spec.role
        )
        if theirs.keying_material is None:
            out.add("keying_material", None, "the peer cannot show its exported material")
        else:
            same = theirs.keying_material.lower() == material.hex()
            out.add(
                "keying_material",
                same and split_ok,
                f"{len(material)} bytes {'equal' if same else 'DIFFER'}"
                + ("" if split_ok else "; srtp_keys() does not split it per RFC 5764 §4.2"),
            )
    if expected is None:
        out.add("fingerprint", None, "no fingerprint given: any certificate was accepted")
    else:
        fp_ok = hs.peer_fingerprint == expected and expected.matches(hs.peer_certificate.der)
        out.add("fingerprint", fp_ok, f"peer certificate matches {expected.algorithm}")
    got = endpoint.received_certificate()
    if got is None:
        out.add("peer_saw_our_certificate", None, "the peer does not show what it received")
    else:
        out.add("peer_saw_our_certificate", got == ours.der, endpoint.certificate_evidence)
    _check_data(out, ctx, driver, endpoint)
    driver.shutdown()
    endpoint.finish()


def _check_data(out: CellOutcome, ctx: CellContext, driver: UdpDriver, endpoint: Endpoint) -> None:
    if not endpoint.carries_data:
        out.add("app_data", None, "the peer carries no application data")
        return
    driver.send(OUR_LINE)
    if endpoint.echoes:
        want = OUR_LINE
        detail = "echoed back"
    elif endpoint.own_line is not None:
        endpoint.expect_data(OUR_LINE)
        want = endpoint.own_line
        detail = f"both ways (the peer's own {want!r})"
    else:
        endpoint.expect_data(OUR_LINE)
        endpoint.send_data(PEER_LINE)
        want = PEER_LINE
        detail = "both ways"

    def received(seen: list[events.DtlsEvent]) -> bytes:
        return b"".join(e.data for e in seen if isinstance(e, events.DataReceived))

    seen = driver.run_until(
        lambda seen: ended(seen) or want in received(seen), ctx.deadline, "application data"
    )
    got = received(seen)
    ok = want in got
    out.add("app_data", ok, detail if ok else f"received {got!r}")


def _check_fail_closed(
    out: CellOutcome,
    conn: DtlsConnection,
    driver: UdpDriver,
    seen: list[events.DtlsEvent],
    endpoint: Endpoint,
) -> None:
    hs = [e for e in seen if isinstance(e, events.HandshakeCompleted)]
    data = [e for e in seen if isinstance(e, events.DataReceived)]
    if not ended(seen):
        out.add("fail_closed", False, "handshake completed despite a wrong fingerprint")
        return
    end = seen[-1]
    if not isinstance(end, events.ConnectionTerminated):  # pragma: no cover - ended() said so
        raise CellFailure("the connection ended without ConnectionTerminated")
    out.add(
        "fail_closed",
        not hs and not data and isinstance(end.error, FingerprintMismatchError),
        _terminated_error(seen),
    )
    out.add(
        "bad_certificate_alert",
        events.AlertSent(2, _BAD_CERTIFICATE) in seen,
        "fatal bad_certificate (42) sent",
    )
    try:
        conn.export_keying_material(SRTP_EXPORTER_LABEL, 60)
    except InvalidStateError:
        no_keys = True
    else:
        no_keys = False
    out.add("no_keys", no_keys and conn.handshake_info is None, "export refused")
    completed = endpoint.completed_anyway()
    if completed is None:
        out.add("peer_did_not_complete", None, "the peer cannot tell")
    else:
        out.add("peer_did_not_complete", not completed, "")
