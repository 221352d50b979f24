"""The ``server`` and ``client`` subcommands of ``dtls-ossl``: DTLS over real UDP.

``server`` is an echo server on :func:`dtls_ossl.aio.serve`: it prints its own
``a=fingerprint`` line and address, then one line per peer as its handshake completes or
fails (a rejected certificate: its fingerprint and the alert sent) and one as it leaves,
until SIGINT or SIGTERM closes it cleanly (close_notify to every peer, exit 0). The echo is
byte-exact: records are bytes, never decoded.

``client`` connects with :func:`dtls_ossl.aio.connect`, verifies the server's certificate
against ``--fingerprint``, reports the negotiated parameters on stderr, then sends every stdin
line as one DTLS record and prints every record received on stdout. With ``--export-srtp`` it
prints the SRTP keys as JSON instead and exits right after the handshake, without reading
stdin.

Errors a user can cause become :class:`NetError`, whose message the CLI prints as one line
(``dtls-ossl: error: ...``, exit status 1). Heavy modules (asyncio, the aio layer) are imported
only when a subcommand runs, so ``dtls-ossl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from typing import TYPE_CHECKING

from dtls_ossl._cliargs import (
    PROG,
    CliError,
    UsageError,
    mtu,
    positive_float,
    positive_int,
    srtp_profile,
)
from dtls_ossl._limits import DEFAULT_HANDSHAKE_TIMEOUT
from dtls_ossl.exceptions import DtlsError

if TYPE_CHECKING:
    from dtls_ossl.aio import DtlsStream
    from dtls_ossl.configuration import DtlsConfiguration
    from dtls_ossl.events import HandshakeCompleted
    from dtls_ossl.webrtc.certificate import Certificate
    from dtls_ossl.webrtc.sdp import Fingerprint
    from dtls_ossl.webrtc.srtp import SrtpProfile

__all__ = [
    "CLIENT_DESCRIPTION",
    "COOKIE_SECRET_ENV",
    "SERVER_DESCRIPTION",
    "NetError",
    "client_arguments",
    "run_client",
    "run_server",
    "server_arguments",
]

DEFAULT_PORT = 4444
COOKIE_SECRET_ENV = "DTLS_OSSL_COOKIE_SECRET"
"The environment variable ``server`` reads a shared cookie secret from (hex)."
DEFAULT_CLIENT_TIMEOUT = 5.0


class NetError(CliError):
    """A failure of ``server`` or ``client`` already worded as the one-line error to print.

    The CLI's network or usage failure, not a library error: not a :class:`~dtls_ossl.DtlsError`.
    """


SERVER_DESCRIPTION = """\
Run a DTLS 1.2 echo server on UDP (dtls_ossl.aio.serve): every record a peer sends comes back.

At start it prints its certificate's a=fingerprint line and its address on stdout; then one
line per peer when its handshake completes (address, version, cipher, SRTP profile, the
peer's certificate fingerprint), one per rejected peer ("rejected: fingerprint mismatch",
the peer certificate's fingerprint, the alert sent) or failed handshake, and one when the
peer leaves. Records are echoed byte for byte. DTLS-SRTP peers authenticate
each other: give the clients' fingerprints with --fingerprint (repeatable; each client prints
its own on stderr, or see 'dtls-ossl fingerprint'), or accept any client certificate with
--insecure-no-fingerprint-check. Without --cert/--key a fresh ECDSA P-256 certificate is
generated. Stateless cookies (HelloVerifyRequest) are on unless --no-cookies.

Servers that share one address (several hosts behind a UDP load balancer) must share the
cookie secret, so that a cookie minted by one is accepted by all: give it as hex (at least 32
hex digits, e.g. 'openssl rand -hex 32') in a file with --cookie-secret-file, or in the
environment variable DTLS_OSSL_COOKIE_SECRET; never on the command line, where ps shows it.
Without either, each server makes its own random secret.

--export-srtp also prints, per peer after its handshake, one JSON object on stdout: peer
(address), role ("server"), profile, and local/remote master key and salt in hex (RFC 5764
section 4.2; secret: for testing and debugging).

Ctrl-C (SIGINT) or SIGTERM sends close_notify to every peer and exits with status 0.

Example:
  dtls-ossl cert --out-cert server.pem --out-key server.key
  dtls-ossl server --cert server.pem --key server.key --insecure-no-fingerprint-check"""

CLIENT_DESCRIPTION = """\
Connect to a DTLS server over UDP (dtls_ossl.aio.connect) and check its certificate against
--fingerprint. The negotiated parameters and this client's own certificate fingerprint go
to stderr (an error is one line there). Then every line read from stdin is sent as one DTLS
record (without its newline; empty lines are skipped) and every record received is written
to stdout followed by a newline, byte for byte (no text decoding). If the server's port is
closed, the ICMP "port unreachable" ends the attempt at once. At the end of stdin the client
waits up to --timeout seconds for the remaining replies, sends close_notify and exits: 0 if
every line got a reply, 1 otherwise.

--export-srtp prints the DTLS-SRTP keys (RFC 5764 section 4.2) as one JSON object on stdout
right after the handshake and exits without reading stdin: role, profile, and local/remote
master key and salt in hex. The keys are secret; this is for testing and debugging.
--profile chooses the SRTP profiles to offer, --mtu the largest datagram.

Example:
  echo hello | dtls-ossl client 127.0.0.1 4444 --fingerprint 'sha-256 AB:CD:...'"""


# ------------------------------------------------------------------------------ arguments


def _port(text: str, *, allow_zero: bool) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is outside {low}..65535")
    return value


def server_port(text: str) -> int:
    """Parse a UDP port to listen on, 0..65535 (0: any free port)."""
    return _port(text, allow_zero=True)


def client_port(text: str) -> int:
    """Parse a UDP port to connect to, 1..65535."""
    return _port(text, allow_zero=False)


def fingerprint(text: str) -> Fingerprint:
    """Parse ``sha-256 AB:CD:...`` (an ``a=fingerprint:`` prefix is accepted too)."""
    from dtls_ossl.webrtc.sdp import Fingerprint

    try:
        return Fingerprint.parse(text)
    except DtlsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def srtp_profiles(text: str) -> list[SrtpProfile]:
    """Parse a comma-separated list of SRTP profile names (OpenSSL or enum names)."""
    names = [n for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no SRTP profile")
    return [srtp_profile(n) for n in names]


def _dtls_arguments(p: argparse.ArgumentParser, *, export_help: str) -> None:
    from dtls_ossl.configuration import DEFAULT_SRTP_PROFILES

    p.add_argument(
        "--mtu", type=mtu, default=1200, help="largest datagram in bytes (default: 1200)"
    )
    p.add_argument(
        "--profile",
        dest="profiles",
        type=srtp_profiles,
        action="extend",
        metavar="NAMES",
        help="SRTP profiles to offer, in order of preference: repeatable or a comma list, "
        "e.g. SRTP_AEAD_AES_128_GCM,SRTP_AES128_CM_SHA1_80 (default: "
        f"{','.join(p.openssl_name for p in DEFAULT_SRTP_PROFILES)})",
    )
    p.add_argument("--export-srtp", action="store_true", help=export_help)


def _certificate_arguments(p: argparse.ArgumentParser, whose: str) -> None:
    p.add_argument("--cert", metavar="PEM", help=f"{whose} certificate (default: generate one)")
    p.add_argument("--key", metavar="PEM", help="its private key (with --cert)")


def _keylog_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keylog",
        metavar="FILE",
        help="append NSS key log lines to FILE (for Wireshark); default: $SSLKEYLOGFILE",
    )


def server_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``dtls-ossl server``."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument(
        "--port",
        type=server_port,
        default=DEFAULT_PORT,
        help=f"UDP port ({DEFAULT_PORT}; 0 picks a free one, printed at start)",
    )
    _certificate_arguments(p, "server")
    peers = p.add_mutually_exclusive_group(required=True)
    peers.add_argument(
        "--fingerprint",
        dest="fingerprints",
        type=fingerprint,
        action="append",
        metavar="FP",
        help="accept clients whose certificate has this fingerprint, e.g. 'sha-256 AB:...' "
        "(repeatable)",
    )
    peers.add_argument(
        "--insecure-no-fingerprint-check",
        action="store_true",
        help="accept any client certificate (testing only)",
    )
    p.add_argument(
        "--no-cookies",
        action="store_true",
        help="skip the stateless cookie exchange (HelloVerifyRequest)",
    )
    p.add_argument(
        "--cookie-secret-file",
        metavar="PATH",
        help="read the cookie secret (hex, >= 32 digits) from PATH, to share it with the other "
        f"servers behind one address (default: ${COOKIE_SECRET_ENV}, else a random one)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="N processes sharing the port with SO_REUSEPORT (default: 1)",
    )
    _dtls_arguments(p, export_help="print each peer's SRTP keys as a JSON line after its handshake")
    _keylog_argument(p)


def client_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of ``dtls-ossl client``."""
    p.add_argument("host", metavar="HOST", help="server address or name")
    p.add_argument("port", metavar="PORT", type=client_port, help="server UDP port")
    p.add_argument(
        "--fingerprint",
        dest="fingerprints",
        type=fingerprint,
        action="append",
        required=True,
        metavar="FP",
        help="the server certificate's fingerprint, e.g. 'sha-256 AB:...' (repeatable: any "
        "of them)",
    )
    _certificate_arguments(p, "client")
    _dtls_arguments(
        p,
        export_help="print the SRTP keys as JSON after the handshake and exit (stdin is not read)",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_CLIENT_TIMEOUT,
        metavar="S",
        help=f"seconds for the handshake, and for the last replies after stdin ends "
        f"(default: {DEFAULT_CLIENT_TIMEOUT:g})",
    )
    _keylog_argument(p)


# ------------------------------------------------------------------------------ helpers


def _certificate(args: argparse.Namespace) -> Certificate | None:
    """Load ``--cert``/``--key``, or return None (the configuration generates one)."""
    from dtls_ossl.webrtc.certificate import Certificate

    cert_path: str | None = args.cert
    key_path: str | None = args.key
    if cert_path is None and key_path is None:
        return None
    if cert_path is None or key_path is None:
        raise UsageError("--cert and --key go together")
    return Certificate.load(cert_path, key_path)


def _configuration(
    args: argparse.Namespace, *, handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT
) -> DtlsConfiguration:
    from dtls_ossl.configuration import DEFAULT_SRTP_PROFILES, DtlsConfiguration

    keylog: str | None = args.keylog
    profiles: list[SrtpProfile] | None = args.profiles
    return DtlsConfiguration(
        certificate=_certificate(args),
        key_log=keylog,
        handshake_timeout=handshake_timeout,
        mtu=args.mtu,
        # Duplicates ("--profile A --profile A") are dropped, the first position kept.
        srtp_profiles=tuple(dict.fromkeys(profiles)) if profiles else DEFAULT_SRTP_PROFILES,
    )


def format_address(addr: tuple[object, ...]) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    host, port = str(addr[0]), addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe_handshake(info: HandshakeCompleted) -> str:
    """``DTLSv1.2, <cipher>, SRTP <profile>``: what was negotiated, in one phrase."""
    srtp = info.srtp_profile.openssl_name if info.srtp_profile is not None else "none"
    return f"{info.protocol_version}, {info.cipher}, SRTP {srtp}"


def _peer_fingerprint(info: HandshakeCompleted) -> str:
    """Return the fingerprint the peer matched, or its SHA-256 one if none was checked."""
    if info.peer_fingerprint is not None:
        return str(info.peer_fingerprint)
    return f"{info.peer_certificate.fingerprint('sha-256')} (not checked)"


def _err(message: str) -> None:

    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------- server


def cookie_secret(args: argparse.Namespace) -> bytes | None:
    """Read the shared cookie secret: ``--cookie-secret-file``, else the environment.

    Hex text (whitespace ignored), at least 16 bytes once decoded. None: no secret was given
    (the server makes a random one), or cookies are off and only the environment has one.
    """
    import os
    from pathlib import Path

    path: str | None = args.cookie_secret_file
    if path is not None:
        if args.no_cookies:
            raise UsageError("--cookie-secret-file and --no-cookies exclude each other")
        try:
            text = Path(path).read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise NetError(f"cannot read the cookie secret {path}: {exc.strerror or exc}") from exc
        source = path
    else:
        env = os.environ.get(COOKIE_SECRET_ENV)
        if env is None or args.no_cookies:
            return None
        text, source = env, f"${COOKIE_SECRET_ENV}"
    try:
        secret = bytes.fromhex("".join(text.split()))
    except ValueError:
        raise NetError(f"the cookie secret in {source} is not hex") from None
    if len(secret) < 16:
        raise NetError(
            f"the cookie secret in {source} has {len(secret)} bytes; at least 16 are needed"
        )
    return secret


def srtp_json(role: str, keys_dict: dict[str, str], peer: str | None = None) -> str:
    """Format the ``--export-srtp`` line: one JSON object (peer, role, profile, keys, salts)."""
    import json

    head: dict[str, str] = {} if peer is None else {"peer": peer}
    return json.dumps({**head, "role": role, **keys_dict})


async def echo_handler(stream: DtlsStream, *, tag: str = "", export_srtp: bool = False) -> None:
    """Echo every record back, byte for byte; print the peer's handshake and departure.

    Module level, so that ``workers > 1`` ('spawn') can pass it by reference.
    """
    from dtls_ossl.exceptions import ConnectionClosedError

    peer = format_address(stream.peer_address)
    info = stream.handshake_info
    if info is not None:
        print(
            f"{tag}{peer}: handshake done: {describe_handshake(info)}, "
            f"peer {_peer_fingerprint(info)}",
            flush=True,
        )
        if export_srtp and info.srtp_keys is not None:
            print(srtp_json(stream.role.value, info.srtp_keys.to_dict(), peer), flush=True)
    records = 0
    reason = "close_notify"
    async with stream:
        try:
            async for data in stream:
                await stream.send(data)
                records += 1
        except ConnectionClosedError as exc:
            reason = str(exc.__cause__ or exc)
    print(f"{tag}{peer}: closed after {records} records echoed ({reason})", flush=True)


def run_server(args: argparse.Namespace) -> int:
    """Run ``dtls-ossl server``; returns the exit status."""
    import asyncio

    secret = cookie_secret(args)  # before the certificate: a bad secret fails at once
    config = _configuration(args)
    return asyncio.run(_serve(args, config, secret))


async def _serve(
    args: argparse.Namespace, config: DtlsConfiguration, secret: bytes | None = None
) -> int:
    import asyncio
    import os
    import signal

    from dtls_ossl.aio import serve

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    workers: int = args.workers
    # Both are module-level functions: 'spawn' workers receive them by reference.
    handler = functools.partial(
        _tagged_echo_handler if workers > 1 else echo_handler, export_srtp=args.export_srtp
    )
    rejected = _tagged_report_rejected if workers > 1 else report_rejected
    where = format_address((args.host, args.port))
    try:
        server = await serve(
            handler,
            args.host,
            args.port,
            config,
            remote_fingerprints=args.fingerprints,
            insecure_skip_fingerprint_check=args.insecure_no_fingerprint_check,
            cookie_exchange=not args.no_cookies,
            cookie_secret=secret,
            on_handshake_failed=rejected,
            workers=workers,
            reuse_port=workers > 1,
        )
    except OSError as exc:
        raise NetError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
    assert config.certificate is not None
    print(config.certificate.fingerprint("sha-256").sdp_attribute(), flush=True)
    cookies = "off" if args.no_cookies else ("on, shared secret" if secret else "on")
    procs = f"{workers} worker processes" if workers > 1 else f"pid {os.getpid()}"
    check = "any client certificate" if args.insecure_no_fingerprint_check else "fingerprints"
    print(
        f"listening on udp {format_address(server.address)} ({procs}, cookies {cookies}, "
        f"clients: {check}); Ctrl-C stops",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        _err("stopping: close_notify to every peer")
        await server.close()
    s = server.stats
    _err(
        f"stopped: {s.handshakes_completed} handshakes completed, {s.handshakes_failed} failed "
        f"({s.handshakes_timed_out} timed out), {s.hello_verify_sent} HelloVerifyRequests"
    )
    return 0


async def _tagged_echo_handler(stream: DtlsStream, *, export_srtp: bool = False) -> None:
    """:func:`echo_handler` with the worker's pid in front of every line."""
    import os

    await echo_handler(stream, tag=f"[pid {os.getpid()}] ", export_srtp=export_srtp)


def rejected_line(addr: tuple[object, ...], error: BaseException) -> str:
    """Describe a peer whose handshake failed, in one line (always printed by ``server``)."""
    from dtls_ossl.events import alert_name
    from dtls_ossl.exceptions import FingerprintMismatchError

    peer = format_address(addr)
    alert = getattr(error, "alert", None)
    sent = f"; alert {alert_name(alert)} ({alert})" if isinstance(alert, int) else ""
    if isinstance(error, FingerprintMismatchError):
        got = ", ".join(error.actual) or "?"
        expected = ", ".join(error.expected) or "?"
        return (
            f"{peer}: rejected: fingerprint mismatch: peer certificate {got}, "
            f"expected {expected}{sent}"
        )
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{peer}: handshake failed: {first}"


def report_rejected(addr: tuple[object, ...], error: BaseException) -> None:
    """Print :func:`rejected_line` (module level: 'spawn' workers take it by reference)."""
    print(rejected_line(addr, error), flush=True)


def _tagged_report_rejected(addr: tuple[object, ...], error: BaseException) -> None:
    import os

    print(f"[pid {os.getpid()}] {rejected_line(addr, error)}", flush=True)


# -------------------------------------------------------------------------------- client


def run_client(args: argparse.Namespace) -> int:
    """Run ``dtls-ossl client``; returns the exit status."""
    import asyncio

    config = _configuration(args, handshake_timeout=args.timeout)
    return asyncio.run(_client(args, config))


async def _connect(args: argparse.Namespace, config: DtlsConfiguration) -> DtlsStream:
    """Connect and verify; every failure becomes a :class:`NetError` worded for a person."""
    from dtls_ossl.aio import connect
    from dtls_ossl.exceptions import (
        FingerprintMismatchError,
        HandshakeError,
        HandshakeTimeoutError,
    )

    where = format_address((args.host, args.port))
    timeout: float = args.timeout
    t0 = time.monotonic()
    try:
        return await connect(
            args.host,
            args.port,
            config,
            remote_fingerprints=args.fingerprints,
            handshake_timeout=timeout,
            fail_on_port_unreachable=True,
        )
    except FingerprintMismatchError as exc:
        expected = ", ".join(exc.expected) or "?"
        got = ", ".join(exc.actual) or "?"
        raise NetError(f"fingerprint mismatch: expected {expected}, got {got}") from exc
    except HandshakeTimeoutError as exc:
        waited = time.monotonic() - t0
        why = ""
        if isinstance(exc.__cause__, ConnectionRefusedError):
            why = " (ICMP port unreachable: is a server listening there?)"
        raise NetError(f"no answer from {where} after {waited:.1f} s{why}") from exc
    except HandshakeError as exc:
        if isinstance(exc.__cause__, ConnectionRefusedError):
            waited = time.monotonic() - t0
            raise NetError(
                f"{where} refused the connection after {waited:.1f} s (ICMP port unreachable: "
                "is a server listening there?)"
            ) from exc
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NetError(f"handshake with {where} failed: {first}") from exc
    except OSError as exc:  # resolution, bind, unreachable network
        raise NetError(f"cannot reach {where}: {exc.strerror or exc}") from exc


async def _client(args: argparse.Namespace, config: DtlsConfiguration) -> int:
    import logging

    assert config.certificate is not None
    where = format_address((args.host, args.port))
    own = config.certificate.fingerprint("sha-256")
    logging.getLogger("dtls_ossl.cli").debug("client certificate %s", own)
    t0 = time.monotonic()
    stream = await _connect(args, config)
    async with stream:
        info = stream.handshake_info
        assert info is not None
        _err(
            f"connected to {where} in {(time.monotonic() - t0) * 1e3:.0f} ms: "
            f"{describe_handshake(info)}"
        )
        _err(f"server certificate matches {_peer_fingerprint(info)}")
        _err(f"client certificate {own}")
        if args.export_srtp:
            keys = stream.srtp_keys()
            print(srtp_json(stream.role.value, keys.to_dict()), flush=True)
            return 0
        return await _echo_stdin(stream, where, args.timeout)


async def _echo_stdin(stream: DtlsStream, where: str, timeout: float) -> int:
    """Send stdin lines, print what comes back; see :data:`CLIENT_DESCRIPTION`."""
    import asyncio
    import threading

    from dtls_ossl.exceptions import ConnectionClosedError, PayloadSizeError

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    def read_stdin() -> None:
        # A daemon thread: a blocked readline() must not keep the process alive at exit.
        try:
            for line in sys.stdin.buffer:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)
        except (RuntimeError, OSError, ValueError):  # loop closed, or stdin closed
            return

    threading.Thread(target=read_stdin, name="dtls-ossl-stdin", daemon=True).start()
    sent = received = 0
    closed_by_peer: list[BaseException | None] = []
    progress = asyncio.Event()

    async def receive() -> None:
        nonlocal received
        try:
            while True:
                data = await stream.recv()
                received += 1
                sys.stdout.buffer.write(data + b"\n")  # byte-exact: never decoded
                sys.stdout.buffer.flush()
                progress.set()
        except ConnectionClosedError as exc:
            closed_by_peer.append(exc.__cause__)
            progress.set()

    receiver = asyncio.create_task(receive())
    try:
        number = 0
        while not closed_by_peer:
            get = asyncio.ensure_future(lines.get())
            await asyncio.wait([get, receiver], return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                get.cancel()
                break
            line = get.result()
            if line is None:
                break
            number += 1
            payload = line.rstrip(b"\r\n")
            if not payload:
                continue
            try:
                await stream.send(payload)
            except PayloadSizeError:
                raise NetError(
                    f"stdin line {number} is {len(payload)} bytes; at most "
                    f"{stream.max_payload_size} fit one datagram"
                ) from None
            except ConnectionClosedError:
                break
            sent += 1
        # Wait for the outstanding replies: as long as they keep coming, up to `timeout`
        # of silence.
        while received < sent and not closed_by_peer:
            progress.clear()
            try:
                await asyncio.wait_for(progress.wait(), timeout)
            except asyncio.TimeoutError:
                break
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
    if closed_by_peer:
        cause = closed_by_peer[0]
        if cause is not None:
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise NetError(f"the connection to {where} ended: {first}")
        _err(f"{where} closed the connection (close_notify)")
    _err(f"sent {sent} lines, received {received} replies")
    if received < sent:
        raise NetError(f"no reply to {sent - received} of {sent} lines after {timeout:.1f} s")
    return 0
