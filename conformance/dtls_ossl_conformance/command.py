"""``dtls-ossl-conformance run`` (the matrix; ``dtls-ossl conformance`` too): arguments and run."""

from __future__ import annotations

import argparse
import sys

from dtls_ossl_conformance._names import PROG, peers_dir

__all__ = ["DESCRIPTION", "add_arguments", "run"]

DESCRIPTION = """\
Run dtls_ossl against independently written DTLS implementations, in both roles.

Cells: peer x our role (client, server) x SRTP profile (each the peer supports) x our
certificate type (ecdsa-p256, rsa-2048), plus one wrong-fingerprint cell per peer and role
that must fail closed. Each cell checks that the handshake completes; that version, cipher and
SRTP profile agree; that the exported EXTRACTOR-dtls_srtp keying material is equal (where the
peer shows it); that application data round-trips; and both fingerprint checks.

A peer that is not installed is reported as skipped cells with the command that installs it
(dtls-ossl-conformance install-peers NAME).
Exit status 1 if any cell failed, 0 otherwise (2 for bad arguments)."""


def _peer_names() -> list[str]:
    from dtls_ossl_conformance.runner import all_peers

    return [p.name for p in all_peers()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--peers``, ``--report``, ``--timeout`` and ``--list``."""
    from dtls_ossl_conformance.runner import DEFAULT_TIMEOUT

    p.add_argument(
        "--peers",
        metavar="A,B,...",
        help=f"comma-separated peers to run (default: all of {', '.join(_peer_names())})",
    )
    p.add_argument(
        "--report", metavar="DIR", help="write report.json and junit.xml into DIR (created)"
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds one cell may take (default: {DEFAULT_TIMEOUT:g}; a browser gets 3x)",
    )
    p.add_argument("--list", action="store_true", help="list the peers and their status, run none")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 3600) seconds")
    return value


class UsageError(ValueError):
    """A bad ``--peers`` value."""


def run(args: argparse.Namespace) -> int:
    """Run the matrix; return 1 if any cell failed."""
    from dtls_ossl_conformance.runner import all_peers, run_matrix

    peers = all_peers()
    if args.peers:
        wanted = [n.strip().lower() for n in args.peers.split(",") if n.strip()]
        by_name = {p.name: p for p in peers}
        unknown = [n for n in wanted if n not in by_name]
        if unknown or not wanted:
            print(
                f"{PROG}: error: --peers: unknown peer {', '.join(unknown) or '(none)'}; "
                f"choose from {', '.join(by_name)}",
                file=sys.stderr,
            )
            return 2
        peers = [by_name[n] for n in dict.fromkeys(wanted)]
    if args.list:
        for peer in peers:
            a = peer.availability()
            state = a.version if a.available else f"skipped: {a.reason}; install: {a.install}"
            print(f"{peer.name:<10} {state}")
        print(f"peer cache: {peers_dir()}")
        return 0
    report = run_matrix(peers, timeout=args.timeout, out=sys.stdout, report_dir=args.report)
    return report.exit_status
