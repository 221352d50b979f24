"""``serve()``: a DTLS server on one UDP socket, or on N worker processes sharing a port."""

from __future__ import annotations

import asyncio
import os
from typing import Any, final

from dtls_ossl._limits import DEFAULT_HANDSHAKE_TIMEOUT
from dtls_ossl.aio._endpoint import DtlsEndpoint
from dtls_ossl.aio._socket import open_server_endpoint
from dtls_ossl.aio._stats import ServerStats
from dtls_ossl.aio._stream import Handler
from dtls_ossl.aio._types import Address, HandshakeFailedCallback, RemoteFingerprints
from dtls_ossl.aio._workers import WorkerPool
from dtls_ossl.configuration import DtlsConfiguration
from dtls_ossl.exceptions import ConfigurationError

__all__ = ["DtlsServer", "serve"]


@final
class DtlsServer:
    """A running DTLS server (an async context manager); made by :func:`serve`.

    With ``workers > 1`` this object lives in the parent process, which only supervises:
    :attr:`stats` is the sum of the workers' latest reports (sent every half second and at
    shutdown).
    """

    __slots__ = ("_address", "_endpoint", "_pool", "_stopped", "_transport")

    def __init__(
        self,
        *,
        address: Address,
        endpoint: DtlsEndpoint | None = None,
        transport: asyncio.DatagramTransport | None = None,
        pool: WorkerPool | None = None,
    ) -> None:
        """Wrap a running server; use :func:`serve` to make one."""
        self._address = address
        self._endpoint = endpoint
        self._transport = transport
        self._pool = pool
        self._stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def address(self) -> tuple[str, int]:
        """The local ``(host, port)`` the server is bound to."""
        return (str(self._address[0]), int(self._address[1]))

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters (summed over the workers)."""
        if self._pool is not None:
            return self._pool.stats()
        if self._endpoint is None:  # pragma: no cover - one of the two is always set
            return ServerStats()
        return self._endpoint.stats

    @property
    def worker_pids(self) -> tuple[int, ...]:
        """Process ids of the workers (this process's id with ``workers=1``)."""
        if self._pool is not None:
            return self._pool.pids()
        return (os.getpid(),)

    @property
    def endpoint(self) -> DtlsEndpoint | None:
        """The endpoint serving in this process (None with ``workers > 1``)."""
        return self._endpoint

    def is_serving(self) -> bool:
        """Tell whether :meth:`close` has not been called yet."""
        return not self._stopped.done()

    async def close(self, *, grace: float = 1.0) -> None:
        """Stop: close_notify to every established peer, then close the socket(s).

        Handler tasks get ``grace`` seconds to return, then are cancelled. Idempotent.
        """
        if not self._stopped.done():
            self._stopped.set_result(None)
        if self._pool is not None:
            await self._pool.close(grace=grace)
        if self._endpoint is not None:
            await self._endpoint.close(grace=grace)

    async def serve_forever(self) -> None:
        """Wait until :meth:`close` is called; closes the server if cancelled."""
        try:
            await asyncio.shield(self._stopped)
        except asyncio.CancelledError:
            await self.close()
            raise

    async def __aenter__(self) -> DtlsServer:
        """Enter: the server itself."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Exit: :meth:`close`."""
        await self.close()

    def __repr__(self) -> str:
        """Show the address and worker count."""
        n = len(self.worker_pids)
        return f"<DtlsServer {self.address[0]}:{self.address[1]} workers={n}>"


async def serve(
    handler: Handler,
    host: str | None,
    port: int,
    configuration: DtlsConfiguration,
    *,
    remote_fingerprints: RemoteFingerprints = None,
    insecure_skip_fingerprint_check: bool = False,
    cookie_exchange: bool = True,
    cookie_secret: bytes | None = None,
    cookie_rotation_interval: float = 30.0,
    max_handshakes: int = 1000,
    max_handshakes_per_address: int = 64,
    max_peers: int = 100_000,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    idle_timeout: float | None = 300.0,
    max_queued_datagrams: int = 256,
    on_handshake_failed: HandshakeFailedCallback | None = None,
    workers: int = 1,
    reuse_port: bool = False,
    start_method: str = "spawn",
) -> DtlsServer:
    """Serve DTLS on ``(host, port)``; ``handler(stream)`` runs once per established peer.

    One UDP socket and one :class:`~dtls_ossl.DtlsConnection` per peer address. New peers
    must return a stateless cookie first (``cookie_exchange``, RFC 6347 §4.2.1) and fit the
    limits; see :class:`DtlsEndpoint` for every parameter. Defaults suit a public server:
    1000 handshakes in progress (64 per source address), 100,000 peers, 10 s per handshake,
    300 s of silence before an established peer is closed.

    Half-open peers: DTLS 1.2 ends with the server's flight, so a client that gives up at its
    deadline after the server completed leaves an established peer here whose handler gets no
    data; it is closed after ``idle_timeout``, or replaced as soon as the client retries from
    the same address (a new cookie-checked ClientHello). Set ``idle_timeout`` to what the
    protocol's keep-alives allow.

    ``workers=N`` (with ``reuse_port=True``) starts N processes, each with its own socket on
    the same port (``SO_REUSEPORT``), event loop and handler; this process only supervises.
    ``start_method`` is the :mod:`multiprocessing` start method: with ``"spawn"`` (the
    default, safe with any threads or loops) the handler and ``remote_fingerprints`` must be
    picklable (module-level functions); ``"fork"`` takes anything, but fork only from a
    process that runs no other threads. One ``cookie_secret`` (random if omitted) is shared
    by all workers. ``on_handshake_failed(addr, error)`` (picklable too) reports each peer
    whose handshake failed, e.g. a rejected certificate.

    :raises ConfigurationError: a bad argument.
    :raises OSError: the address cannot be bound, or a worker failed to start.
    """
    if not callable(handler):
        raise ConfigurationError("handler: expected an async function handler(stream)")
    if not isinstance(configuration, DtlsConfiguration):
        raise ConfigurationError("configuration: expected a DtlsConfiguration")
    if remote_fingerprints is None and not insecure_skip_fingerprint_check:
        raise ConfigurationError(
            "serve() needs remote_fingerprints (a list, or a callable addr -> list), or "
            "insecure_skip_fingerprint_check=True"
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigurationError(f"workers: expected an int >= 1, got {workers!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port: expected 0..65535, got {port!r}")
    options: dict[str, Any] = {
        "remote_fingerprints": remote_fingerprints,
        "insecure_skip_fingerprint_check": insecure_skip_fingerprint_check,
        "cookie_exchange": cookie_exchange,
        "cookie_secret": cookie_secret,
        "cookie_rotation_interval": cookie_rotation_interval,
        "max_handshakes": max_handshakes,
        "max_handshakes_per_address": max_handshakes_per_address,
        "max_peers": max_peers,
        "handshake_timeout": handshake_timeout,
        "idle_timeout": idle_timeout,
        "max_queued_datagrams": max_queued_datagrams,
        "on_handshake_failed": on_handshake_failed,
    }
    if workers > 1:
        if not reuse_port:
            raise ConfigurationError("workers > 1 needs reuse_port=True (SO_REUSEPORT)")
        if cookie_exchange and cookie_secret is None:
            options["cookie_secret"] = os.urandom(32)  # one secret for every worker
        pool = await WorkerPool.start(
            handler, host, port, configuration, options, workers, start_method
        )
        return DtlsServer(address=pool.address, pool=pool)
    endpoint, transport = await open_server_endpoint(
        handler, host, port, configuration, options, reuse_port=reuse_port
    )
    return DtlsServer(
        address=transport.get_extra_info("sockname"), endpoint=endpoint, transport=transport
    )
