"""The ``dtls-ossl-conformance`` command.

Subcommands: ``run`` (the matrix: dtls_ossl against every installed peer; the default when the
first argument is an option, so ``dtls-ossl-conformance --peers openssl`` works), ``install-peers``
(install the peers into the user cache), ``target`` (test your own DTLS endpoint, dtls_ossl
playing the other side) and ``targets-matrix`` (``target``'s scenarios against every peer of the
matrix, compared with their known defects). ``dtls-ossl conformance ARGS`` runs
``dtls-ossl-conformance ARGS``.

Exit status: 0 when everything run passed, 1 when a cell, a scenario or a peer install failed,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from dtls_ossl_conformance import command, target, targets_matrix
from dtls_ossl_conformance._names import CACHE_ENV, PROG

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS = ("run", "install-peers", "target", "targets-matrix")
"The subcommands; anything else as a first argument means ``run``."


def _add_cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=f"where peers are installed (default: ${CACHE_ENV}, else $DTLS_OSSL_PEERS_DIR, "
        "else $XDG_CACHE_HOME/dtls-ossl-conformance)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="DTLS conformance: dtls_ossl against independent DTLS stacks, or against "
        "your own endpoint.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run the interop matrix against real DTLS stacks; reports, exit 1 on any failure",
        description=command.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_arguments(run)
    _add_cache_dir(run)
    run.set_defaults(run=command.run)
    install = sub.add_parser(
        "install-peers",
        help="install the peers (Debian packages, source builds, Go, Node, pip) into a cache",
        description="Install each peer named (default: all) when missing: idempotent, one line "
        "per step. Builds go to the peer cache (see --cache-dir), never to the source tree or "
        "site-packages. Exit status 1 if a peer failed to install (the others still are).",
    )
    from dtls_ossl_conformance._install import RECIPES

    install.add_argument(
        "names", nargs="*", metavar="NAME", help=f"peers to install: {', '.join(RECIPES)}"
    )
    _add_cache_dir(install)
    install.set_defaults(run=_run_install)
    t = sub.add_parser(
        "target",
        help="test your own DTLS server or client; report.json, junit.xml, exit 1 on failure",
        description=target.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target.add_arguments(t)
    t.set_defaults(run=target.run)
    tm = sub.add_parser(
        "targets-matrix",
        help="target's scenarios against every peer of the matrix; exit 1 unless as expected",
        description=targets_matrix.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    targets_matrix.add_arguments(tm)
    _add_cache_dir(tm)
    tm.set_defaults(run=targets_matrix.run)
    return parser


def _run_install(args: argparse.Namespace) -> int:
    from dtls_ossl_conformance._install import install_peers

    try:
        return install_peers(args.names, out=sys.stdout)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in SUBCOMMANDS and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "run")
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as exc:  # --help, or an argument error already printed
        return exc.code if isinstance(exc.code, int) else 2
    cache_dir = getattr(args, "cache_dir", None)
    if cache_dir:
        os.environ[CACHE_ENV] = os.path.abspath(cache_dir)
    status: int = args.run(args)
    return status


def console_main() -> None:
    """Entry point of the ``dtls-ossl-conformance`` console script."""
    sys.exit(main())
