"""Worker processes for ``serve(workers=N, reuse_port=True)``.

The parent starts worker 0 first (so that ``port=0`` picks one port for everybody), then the
others on the port it reported. Each worker binds its own socket with ``SO_REUSEPORT``, runs
its own event loop, endpoint and handler, and talks to the parent over a pipe:

* worker -> parent: ``("ready", pid, address)``, ``("stats", pid, counters)`` every half
  second and at the end, ``("error", text)`` if it could not start, ``("closed",)``;
* parent -> worker: ``("close", grace)``. End of file on the pipe (the parent died) also
  stops the worker.

Workers ignore SIGINT: a Ctrl-C in a terminal reaches the whole process group, and the
parent decides when they stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING, Any, final

from dtls_ossl.aio._socket import open_server_endpoint
from dtls_ossl.aio._stats import ServerStats
from dtls_ossl.aio._stream import Handler
from dtls_ossl.aio._types import Address, logger
from dtls_ossl.configuration import DtlsConfiguration
from dtls_ossl.exceptions import ConfigurationError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess

__all__ = ["WorkerPool"]

_STATS_INTERVAL = 0.5
_READY_TIMEOUT = 60.0


def _rebuild_configuration(
    der: bytes, key_der: bytes | None, fields: dict[str, Any]
) -> DtlsConfiguration:
    from dtls_ossl.webrtc.certificate import Certificate

    return DtlsConfiguration(certificate=Certificate(der, key_der), **fields)


@final
class _ConfigurationCarrier:
    """Pickles a configuration as its certificate bytes and fields (for 'spawn').

    The configuration's SSL_CTX and the certificate's parsed form cannot be pickled; the
    worker rebuilds both from the DER bytes. A ``key_log`` stream or closure cannot cross a
    process boundary: use a file path.
    """

    __slots__ = ("configuration",)

    def __init__(self, configuration: DtlsConfiguration) -> None:
        self.configuration = configuration

    def __reduce__(self) -> tuple[Any, ...]:
        config = self.configuration
        cert = config.certificate
        if cert is None:  # pragma: no cover - a configuration always has one once built
            raise ConfigurationError("the configuration has no certificate")
        fields = {n: getattr(config, n) for n in config.__match_args__ if n != "certificate"}
        return (_rebuild_configuration, (cert.der, cert.private_key_der, fields))


def _send(conn: Connection, message: tuple[Any, ...]) -> None:
    with contextlib.suppress(OSError):  # the parent is gone; the worker stops on its own
        conn.send(message)


def worker_main(
    handler: Handler,
    host: str | None,
    port: int,
    carrier: _ConfigurationCarrier | DtlsConfiguration,
    options: dict[str, Any],
    conn: Connection,
) -> None:
    """Entry point of a worker process (module level, so 'spawn' can find it).

    ``carrier`` arrives as the configuration itself when it was pickled ('spawn'), and as
    the carrier when the process was forked.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        signal.set_wakeup_fd(-1)  # after 'fork': never write into the parent loop's pipe
    # After 'fork' from inside a running loop, this thread still looks like it runs one.
    asyncio.events._set_running_loop(None)
    try:
        configuration = (
            carrier.configuration if isinstance(carrier, _ConfigurationCarrier) else carrier
        )
        asyncio.run(_worker(handler, host, port, configuration, options, conn))
    except BaseException as exc:
        _send(conn, ("error", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None


async def _worker(
    handler: Handler,
    host: str | None,
    port: int,
    configuration: DtlsConfiguration,
    options: dict[str, Any],
    conn: Connection,
) -> None:
    loop = asyncio.get_running_loop()
    endpoint, transport = await open_server_endpoint(
        handler, host, port, configuration, options, reuse_port=True
    )
    pid = os.getpid()
    _send(conn, ("ready", pid, transport.get_extra_info("sockname")))
    stop: asyncio.Future[float] = loop.create_future()

    def on_message() -> None:
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "close" and not stop.done():
                    stop.set_result(float(message[1]))
        except (EOFError, OSError):
            if not stop.done():
                stop.set_result(1.0)

    loop.add_reader(conn.fileno(), on_message)
    try:
        while not stop.done():
            await asyncio.wait([stop], timeout=_STATS_INTERVAL)
            _send(conn, ("stats", pid, endpoint.stats))
    finally:
        loop.remove_reader(conn.fileno())
    await endpoint.close(grace=stop.result())
    _send(conn, ("stats", pid, endpoint.stats))
    _send(conn, ("closed",))


@final
class _Worker:
    __slots__ = ("address", "conn", "exited", "pid", "process", "ready", "stats")

    def __init__(
        self, process: BaseProcess, conn: Connection, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.process = process
        self.conn = conn
        self.pid = 0
        self.address: Address = ()
        self.stats = ServerStats()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()


@final
class WorkerPool:
    """The parent's view of the worker processes."""

    __slots__ = ("_closing", "_context", "_loop", "_workers", "address")

    def __init__(self, context: BaseContext) -> None:
        self._context = context
        self._loop = asyncio.get_running_loop()
        self._workers: list[_Worker] = []
        self._closing = False
        self.address: Address = ()

    @classmethod
    async def start(
        cls,
        handler: Handler,
        host: str | None,
        port: int,
        configuration: DtlsConfiguration,
        options: dict[str, Any],
        count: int,
        start_method: str,
    ) -> WorkerPool:
        """Start ``count`` workers and wait until every one is bound and serving."""
        import multiprocessing

        try:
            context = multiprocessing.get_context(start_method)
        except ValueError as exc:
            raise ConfigurationError(f"start_method: {exc}") from None
        pool = cls(context)
        carrier = _ConfigurationCarrier(configuration)
        try:
            first = await pool._start_one(handler, host, port, carrier, options)
            pool.address = first.address
            port = int(first.address[1])
            await asyncio.gather(
                *(pool._start_one(handler, host, port, carrier, options) for _ in range(count - 1))
            )
        except BaseException:
            await pool.close(grace=0.0)
            raise
        return pool

    async def _start_one(
        self,
        handler: Handler,
        host: str | None,
        port: int,
        carrier: _ConfigurationCarrier,
        options: dict[str, Any],
    ) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(handler, host, port, carrier, options, child_conn),
            name=f"dtls_ossl-worker-{len(self._workers)}",
            daemon=True,
        )
        try:
            process.start()
        except Exception as exc:
            parent_conn.close()
            child_conn.close()
            raise ConfigurationError(
                f"cannot start a worker process ({type(exc).__name__}: {exc}); with "
                "start_method='spawn' the handler, remote_fingerprints and key_log must be "
                "picklable (module-level functions, file paths)"
            ) from exc
        child_conn.close()
        worker = _Worker(process, parent_conn, self._loop)
        self._workers.append(worker)
        self._loop.add_reader(parent_conn.fileno(), self._on_message, worker)
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), _READY_TIMEOUT)
        except asyncio.TimeoutError:
            raise OSError(f"worker {process.name} did not start in {_READY_TIMEOUT:g} s") from None
        return worker

    def _on_message(self, worker: _Worker) -> None:
        conn = worker.conn
        try:
            while conn.poll():
                message = conn.recv()
                kind = message[0]
                if kind == "stats":
                    worker.stats = message[2]
                elif kind == "ready":
                    worker.pid = int(message[1])
                    worker.address = tuple(message[2])
                    if not worker.ready.done():
                        worker.ready.set_result(None)
                elif kind == "error" and not worker.ready.done():
                    worker.ready.set_exception(
                        OSError(f"worker {worker.process.name} failed to start: {message[1]}")
                    )
                elif kind == "error":
                    logger.error("worker %s failed: %s", worker.process.name, message[1])
        except (EOFError, OSError):
            self._loop.remove_reader(conn.fileno())
            if not worker.ready.done():
                worker.ready.set_exception(
                    OSError(f"worker {worker.process.name} exited before it was ready")
                )
            elif not self._closing:
                logger.error(
                    "worker %s (pid %d) exited unexpectedly; the kernel now spreads its peers "
                    "over the remaining workers",
                    worker.process.name,
                    worker.pid,
                )
            if not worker.exited.done():
                worker.exited.set_result(None)

    def stats(self) -> ServerStats:
        """Return the sum of every worker's latest counters."""
        total = ServerStats()
        for worker in self._workers:
            total = total + worker.stats
        return total

    def pids(self) -> tuple[int, ...]:
        """Process ids of the workers that reported ready."""
        return tuple(w.pid for w in self._workers if w.pid)

    async def close(self, *, grace: float) -> None:
        """Ask every worker to stop, wait for them, and terminate stragglers."""
        if self._closing:
            return
        self._closing = True
        for worker in self._workers:
            if not worker.exited.done():
                _send(worker.conn, ("close", grace))
        pending = [w.exited for w in self._workers if not w.exited.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace + 5.0)
        for worker in self._workers:
            process = worker.process
            if process.is_alive() and not worker.exited.done():
                process.terminate()
            await self._loop.run_in_executor(None, process.join, 5.0)
            if not worker.exited.done():
                self._loop.remove_reader(worker.conn.fileno())
                worker.exited.set_result(None)
            worker.conn.close()
