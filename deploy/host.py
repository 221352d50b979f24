"""One backend host of the load-balanced deployment: a DTLS echo server on ``aio.serve``.

What ``dtls-ossl server`` does, plus what an operator behind a balancer needs:

- the cookie secret shared by every host comes from ``$DTLS_OSSL_COOKIE_SECRET`` or
  ``--cookie-secret-file`` (hex), never from the command line;
- every peer arrives from its own address and port (the balancer rewrites only the
  destination), so the per-address handshake limit keeps its meaning;
- ``--stats FILE`` is rewritten every ``--stats-interval`` seconds with the server's
  counters (summed over its workers) as JSON, so a monitor (or a test) reads them live;
- ``--export-srtp`` prints each peer's SRTP keys as a JSON line (testing only: secret keys).

SIGTERM or SIGINT closes every peer (close_notify) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

from dtls_ossl import Certificate, DtlsConfiguration
from dtls_ossl.aio import DtlsStream, serve
from dtls_ossl.exceptions import ConnectionClosedError

SECRET_ENV = "DTLS_OSSL_COOKIE_SECRET"


async def echo(stream: DtlsStream, *, name: str = "", export_srtp: bool = False) -> None:
    """Echo every record back (module level: 'spawn' workers take it by reference)."""
    if export_srtp:
        keys = stream.srtp_keys().to_dict()
        line = json.dumps({"host": name, "peer": list(stream.peer_address), **keys}) + "\n"
        # One write(2) per line: the workers share this file, and print() may split a line.
        os.write(sys.stdout.fileno(), line.encode())
    async with stream:
        try:
            async for data in stream:
                await stream.send(data)
        except ConnectionClosedError:
            pass


def cookie_secret(path: str | None) -> bytes:
    """Return the shared secret: ``path``'s hex content, else ``$DTLS_OSSL_COOKIE_SECRET``'s."""
    text = Path(path).read_text(encoding="ascii") if path else os.environ.get(SECRET_ENV)
    if not text:
        sys.exit(f"host: no cookie secret: set ${SECRET_ENV} or --cookie-secret-file")
    secret = bytes.fromhex("".join(text.split()))
    if len(secret) < 16:
        sys.exit("host: the cookie secret needs at least 16 bytes")
    return secret


def _write_stats(path: Path, payload: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)  # atomic: a reader never sees half a file


async def main(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = DtlsConfiguration(certificate=Certificate.load(args.cert, args.key))
    fingerprints = [args.client_fingerprint] if args.client_fingerprint else None
    server = await serve(
        _Echo(args.name, args.export_srtp),
        args.host,
        args.port,
        config,
        remote_fingerprints=fingerprints,
        insecure_skip_fingerprint_check=fingerprints is None,
        cookie_secret=cookie_secret(args.cookie_secret_file),
        max_handshakes=args.max_handshakes,
        max_handshakes_per_address=args.max_handshakes_per_address,
        idle_timeout=args.idle_timeout,
        workers=args.workers,
        reuse_port=args.workers > 1,
    )
    print(f"{args.name} listening on {args.host}:{server.address[1]}", flush=True)
    stats = Path(args.stats) if args.stats else None
    try:
        while not stop.is_set():
            if stats is not None:
                counters = server.stats.as_dict()
                _write_stats(stats, {"host": args.name, "pid": os.getpid(), **counters})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.stats_interval)
    finally:
        await server.close()
    return 0


@dataclasses.dataclass(frozen=True)
class _Echo:
    """A picklable handler carrying the host's name (for 'spawn' workers)."""

    name: str
    export_srtp: bool

    async def __call__(self, stream: DtlsStream) -> None:
        await echo(stream, name=self.name, export_srtp=self.export_srtp)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (no secret on it: see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="host")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=4444)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-fingerprint", help="accept only this client certificate")
    p.add_argument("--cookie-secret-file", help=f"hex secret (default: ${SECRET_ENV})")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-handshakes", type=int, default=1000)
    p.add_argument("--max-handshakes-per-address", type=int, default=64)
    p.add_argument("--idle-timeout", type=float, default=300.0)
    p.add_argument("--stats", metavar="FILE", help="rewrite FILE with the counters (JSON)")
    p.add_argument("--stats-interval", type=float, default=0.25)
    p.add_argument("--export-srtp", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
