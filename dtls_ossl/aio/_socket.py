"""Bind a UDP socket and serve an endpoint on it: what ``serve()`` and each worker share.

Below both :mod:`dtls_ossl.aio._server` (one process) and :mod:`dtls_ossl.aio._workers`
(``workers=N``: each worker process runs this), so neither imports the other to start one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from dtls_ossl.aio._endpoint import DtlsEndpoint
from dtls_ossl.aio._stream import Handler
from dtls_ossl.aio._types import logger
from dtls_ossl.configuration import DtlsConfiguration

__all__ = ["bind_udp_socket", "open_server_endpoint"]

# Asked for; the kernel caps it at net.core.rmem_max / wmem_max. A deep receive queue absorbs
# bursts of handshakes (and floods) while the loop is busy.
_SOCKET_BUFFER = 4 * 1024 * 1024


async def bind_udp_socket(host: str | None, port: int, *, reuse_port: bool) -> socket.socket:
    """Create a non-blocking UDP socket bound to ``(host, port)`` (``host=None``: any)."""
    try:
        # A numeric address needs no resolver thread (and no executor in a forked worker).
        infos = socket.getaddrinfo(
            host,
            port,
            type=socket.SOCK_DGRAM,
            proto=socket.IPPROTO_UDP,
            flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST,
        )
    except socket.gaierror:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP, flags=socket.AI_PASSIVE
        )
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(f"cannot resolve {host!r}")
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):  # only a hint
                sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
        sock.bind(addr)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_server_endpoint(
    handler: Handler,
    host: str | None,
    port: int,
    configuration: DtlsConfiguration,
    options: dict[str, Any],
    *,
    reuse_port: bool,
) -> tuple[DtlsEndpoint, asyncio.DatagramTransport]:
    """Bind ``(host, port)`` and serve ``handler`` on it in this process.

    ``options`` are :class:`DtlsEndpoint` keyword arguments. Returns the endpoint and its
    transport (the endpoint closes the transport when it is closed).
    """
    loop = asyncio.get_running_loop()
    endpoint = DtlsEndpoint(configuration, handler=handler, **options)
    sock = await bind_udp_socket(host, port, reuse_port=reuse_port)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
    except BaseException:
        sock.close()
        raise
    logger.debug("DTLS server listening on %r", transport.get_extra_info("sockname"))
    return endpoint, transport
