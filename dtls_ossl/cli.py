"""The ``dtls-ossl`` command line (also ``python -m dtls_ossl``).

Subcommands:

- ``cert``: generate a WebRTC-style self-signed certificate and key (PEM files) and print the
  SDP ``a=fingerprint`` line.
- ``fingerprint``: print the ``a=fingerprint`` line of an existing PEM certificate.
- ``server``: a DTLS echo server on UDP that prints each peer's handshake (``_netcli``).
- ``client``: connect to a DTLS server, verify its fingerprint, echo stdin lines or print the
  SRTP keys as JSON (``_netcli``).
- ``demo``: a DTLS-SRTP handshake between two local peers over UDP, through a configurable
  impairment (loss, reordering, duplication), with a readable timeline.

Every subcommand is one :class:`Command` in :data:`COMMANDS`: a name, a help line, a function
adding its arguments and a function running it. To add one, write both functions and append a
:class:`Command`. Errors a user can cause (bad arguments, unreadable files, values the library
refuses) end as one line ``dtls-ossl: error: ...`` on stderr: exit status 2 for argument
syntax, 1 otherwise. ``-v`` logs at DEBUG level to stderr; key material is never logged.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from dtls_ossl import __version__, _netcli, openssl_version
from dtls_ossl._binding import format_version, openssl_build_version_number
from dtls_ossl._cliargs import (
    PROG,
    CliError,
    UsageError,
    mtu,
    positive_float,
    positive_int,
    probability,
    retransmit_timeout,
    srtp_profile,
)
from dtls_ossl.configuration import DEFAULT_SRTP_PROFILES
from dtls_ossl.exceptions import DtlsError
from dtls_ossl.webrtc.certificate import KEY_TYPES, Certificate
from dtls_ossl.webrtc.sdp import FINGERPRINT_ALGORITHMS
from dtls_ossl.webrtc.srtp import SrtpProfile

__all__ = [
    "COMMANDS",
    "CONFORMANCE_INSTALL",
    "PROG",
    "Command",
    "build_parser",
    "conformance_alias",
    "main",
    "version_line",
]

# The argument types and UsageError live in _cliargs, below this module and the subcommand
# modules; they stay importable from here under their old names.
_UsageError = UsageError

_log = logging.getLogger("dtls_ossl.cli")


# --------------------------------------------------------------------------- the parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``dtls-ossl: error: <message> (see '<prog> --help')`` and exit with 2."""
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


@dataclass(frozen=True)
class Command:
    """One subcommand of the CLI."""

    name: str
    "What the user types, e.g. ``cert``."
    help: str
    "One line for ``dtls-ossl --help``."
    add_arguments: Callable[[argparse.ArgumentParser], None]
    "Adds the subcommand's options to its parser."
    run: Callable[[argparse.Namespace], int]
    "Runs it; returns the exit status. May raise CliError, DtlsError or OSError (one line)."
    description: str = ""
    "Longer text for ``dtls-ossl <name> --help``; the help line if empty."


def _add_verbose(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On subcommands the default is SUPPRESS, so "dtls-ossl -v demo" is not undone by the
    # subparser's own default (argparse copies the sub-namespace over the main one).
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log at DEBUG level to stderr",
    )


def version_line() -> str:
    """Return what ``dtls-ossl --version`` prints: ours, the build and the run-time OpenSSL."""
    built = format_version(openssl_build_version_number())
    return f"{PROG} {__version__} (built against OpenSSL {built}, running {openssl_version()})"


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand of :data:`COMMANDS`."""
    parser = _Parser(
        prog=PROG,
        description="DTLS 1.2 for WebRTC on the system OpenSSL: certificates, fingerprints, "
        "an echo server and client, a loopback DTLS-SRTP demo and a conformance matrix.",
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the versions of dtls-ossl and of the OpenSSL it was built against and runs on",
    )
    _add_verbose(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_verbose(p, top=False)
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


# ------------------------------------------------------------------------------- cert


def _cert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--key-type",
        choices=KEY_TYPES,
        default="ecdsa-p256",
        help="key algorithm (default: ecdsa-p256, as browsers use)",
    )
    p.add_argument("--days", type=positive_int, default=30, help="validity in days (default: 30)")
    p.add_argument("--common-name", metavar="CN", help="subject CN (default: random hex)")
    p.add_argument(
        "--out-cert", metavar="PATH", default="cert.pem", help="certificate file (cert.pem)"
    )
    p.add_argument(
        "--out-key",
        metavar="PATH",
        default="key.pem",
        help="private key file, created with mode 0600 (key.pem)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    _algorithm_argument(p)


def _algorithm_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--algorithm",
        choices=list(FINGERPRINT_ALGORITHMS),
        default="sha-256",
        help="fingerprint hash (default: sha-256, what browsers send)",
    )


def _write_file(path: str, data: bytes, mode: int, *, force: bool) -> None:
    """Write ``data`` to a new file with permissions ``mode`` (or replace it with ``force``)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, mode)
    try:
        # An existing file keeps its old mode through O_TRUNC: set ours explicitly.
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _run_cert(args: argparse.Namespace) -> int:
    cert_path: str = args.out_cert
    key_path: str = args.out_key
    if os.path.abspath(cert_path) == os.path.abspath(key_path):
        raise UsageError("--out-cert and --out-key must be different files")
    if not args.force:
        for path in (cert_path, key_path):
            if os.path.lexists(path):
                raise FileExistsError(
                    errno.EEXIST, "already exists; use --force to overwrite it", path
                )
    cert = Certificate.generate(
        args.key_type, common_name=args.common_name, validity_days=args.days
    )
    cert_pem, key_pem = cert.to_pem()
    _write_file(key_path, key_pem, 0o600, force=args.force)
    try:
        _write_file(cert_path, cert_pem, 0o644, force=args.force)
    except OSError:
        os.unlink(key_path)  # no half-written pair: the key is useless without its certificate
        raise
    _log.debug("wrote %s (certificate) and %s (private key, 0600)", cert_path, key_path)
    print(cert.fingerprint(args.algorithm).sdp_attribute())
    print(
        f"{PROG}: wrote {args.key_type} certificate {cert_path} "
        f"(valid {args.days} days) and private key {key_path} (mode 0600)",
        file=sys.stderr,
    )
    return 0


# ------------------------------------------------------------------------ fingerprint


def _fingerprint_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("certificate", metavar="CERT.pem", help="a PEM certificate file")
    _algorithm_argument(p)


def _run_fingerprint(args: argparse.Namespace) -> int:
    cert = Certificate.load(args.certificate)
    print(cert.fingerprint(args.algorithm).sdp_attribute())
    return 0


# ------------------------------------------------------------------------------- demo

_DEMO_DESCRIPTION = """\
Run a WebRTC-style DTLS-SRTP handshake between two local peers and explain it.

Each peer is a DtlsConnection with its own generated certificate; they learn each other's
fingerprint and role from an SDP offer (a=setup:actpass, becomes the DTLS server) and answer
(a=setup:active, the DTLS client). They talk over two UDP sockets on 127.0.0.1 through an
in-process impairment (--loss, --reorder, --duplicate, per direction, seeded). The timeline
shows every datagram and what it carries, retransmissions, the negotiated parameters, an
application-data echo, the SRTP keys of both sides, and close_notify.

Exit status 0 if everything checked out (or, with --wrong-fingerprint, if the handshake
failed closed), 1 otherwise."""


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    imp = p.add_argument_group("impairment (each direction)")
    imp.add_argument(
        "--loss", type=probability, default=0.0, metavar="P", help="drop probability (0..1)"
    )
    imp.add_argument(
        "--reorder",
        type=probability,
        default=0.0,
        metavar="P",
        help="probability to hold a datagram back 10-30 ms (0..1)",
    )
    imp.add_argument(
        "--duplicate",
        type=probability,
        default=0.0,
        metavar="P",
        help="probability to deliver a datagram twice (0..1)",
    )
    imp.add_argument("--seed", type=int, help="impairment seed (default: random, printed)")
    dtls = p.add_argument_group("DTLS")
    dtls.add_argument("--mtu", type=mtu, default=1200, help="largest datagram in bytes (1200)")
    dtls.add_argument(
        "--profile",
        dest="profiles",
        type=srtp_profile,
        action="append",
        metavar="NAME",
        help="SRTP profile to offer, repeatable, e.g. SRTP_AES128_CM_SHA1_80 "
        f"(default: {', '.join(p.name for p in DEFAULT_SRTP_PROFILES)})",
    )
    dtls.add_argument(
        "--key-type", choices=KEY_TYPES, default="ecdsa-p256", help="certificate keys"
    )
    dtls.add_argument(
        "--initial-timeout",
        type=retransmit_timeout,
        default=0.1,
        metavar="SECONDS",
        help="first retransmission timeout (default: 0.1 for a snappy demo)",
    )
    dtls.add_argument(
        "--timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="overall handshake deadline (default: 10)",
    )
    p.add_argument(
        "--wrong-fingerprint",
        action="store_true",
        help="give the client a wrong expected fingerprint: the handshake must fail closed",
    )
    p.add_argument(
        "--json", action="store_true", help="print a JSON summary instead of the timeline"
    )


def _run_demo(args: argparse.Namespace) -> int:
    from dtls_ossl._demo import DemoOptions, run_demo

    profiles: list[SrtpProfile] | None = args.profiles
    if profiles is not None and len(set(profiles)) != len(profiles):
        raise UsageError("--profile: a profile is given twice")
    options = DemoOptions(
        loss=args.loss,
        reorder=args.reorder,
        duplicate=args.duplicate,
        seed=args.seed,
        mtu=args.mtu,
        profiles=tuple(profiles) if profiles else DEFAULT_SRTP_PROFILES,
        key_type=args.key_type,
        initial_timeout=args.initial_timeout,
        timeout=args.timeout,
        wrong_fingerprint=args.wrong_fingerprint,
        json=args.json,
    )
    return run_demo(options, sys.stdout)


# ------------------------------------------------------------------------------- main

CONFORMANCE_INSTALL = "python -m pip install dtls-ossl-conformance"
"The one command that installs the conformance harness."
_CONFORMANCE_DESCRIPTION = f"""\
An alias: '{PROG} conformance ARGS' runs 'dtls-ossl-conformance ARGS' (see its --help): the
interop matrix against real DTLS stacks, install-peers, and target (test your own endpoint).
The harness is its own distribution; without it this prints the command that installs it
({CONFORMANCE_INSTALL}) and exits with status 2."""


def _conformance_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "args", nargs=argparse.REMAINDER, metavar="ARGS", help="dtls-ossl-conformance's arguments"
    )


def _run_conformance(args: argparse.Namespace) -> int:
    return conformance_alias(args.args)


def conformance_alias(argv: Sequence[str]) -> int:
    """Run ``dtls-ossl-conformance`` with ``argv`` if installed; else say how to install it.

    Imported only here, so that the library's CLI never pays for the harness.
    """
    try:
        from dtls_ossl_conformance.cli import main as conformance_main
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("dtls_ossl_conformance"):
            raise
        return _fail(f"the conformance harness is not installed; run: {CONFORMANCE_INSTALL}", 2)
    return conformance_main(list(argv))


COMMANDS: list[Command] = [
    Command(
        "cert",
        "generate a certificate and key (PEM) and print its a=fingerprint line",
        _cert_arguments,
        _run_cert,
    ),
    Command(
        "fingerprint",
        "print the a=fingerprint line of a PEM certificate",
        _fingerprint_arguments,
        _run_fingerprint,
    ),
    Command(
        "demo",
        "DTLS-SRTP handshake between two local peers over impaired UDP, explained",
        _demo_arguments,
        _run_demo,
        _DEMO_DESCRIPTION,
    ),
    Command(
        "server",
        "DTLS echo server on UDP; prints each peer's handshake; Ctrl-C stops",
        _netcli.server_arguments,
        _netcli.run_server,
        _netcli.SERVER_DESCRIPTION,
    ),
    Command(
        "client",
        "connect to a DTLS server, verify its fingerprint, echo stdin or print SRTP keys",
        _netcli.client_arguments,
        _netcli.run_client,
        _netcli.CLIENT_DESCRIPTION,
    ),
    Command(
        "conformance",
        "run dtls-ossl-conformance (the interop matrix; a separate distribution) with ARGS",
        _conformance_arguments,
        _run_conformance,
        _CONFORMANCE_DESCRIPTION,
    ),
]
"Every subcommand, in ``--help`` order."


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename
        return f"{where}: {exc.strerror}" if where is not None else exc.strerror
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["conformance"]:
        # Everything after it is the harness's, options included (argparse's REMAINDER would
        # take an option such as --peers for one of ours).
        return conformance_alias(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argument error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "verbose", False):
        logging.basicConfig(
            stream=sys.stderr,
            level=logging.DEBUG,
            format="%(relativeCreated)8.1f ms %(name)s %(levelname)s: %(message)s",
        )
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
    if args.version:  # printed by hand: argparse's version action wraps it at the terminal width
        print(version_line())
        return 0
    if run is None:
        names = ", ".join(c.name for c in COMMANDS)
        return _fail(f"choose a command: {names} (see '{PROG} --help')", 2)
    try:
        return run(args)
    except UsageError as exc:
        return _fail(str(exc), 2)
    except (CliError, DtlsError) as exc:
        return _fail(_one_line(exc), 1)
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # pragma: no cover - BrokenPipeError above
            return 1
        return _fail(_one_line(exc), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # pragma: no cover - stdout is not a file
        pass
