"""``connect()``: a DTLS client on its own connected UDP socket."""

from __future__ import annotations

import asyncio

from dtls_ossl._roles import Role
from dtls_ossl.aio._endpoint import DtlsEndpoint
from dtls_ossl.aio._stream import DtlsStream
from dtls_ossl.aio._types import Fingerprints
from dtls_ossl.configuration import DtlsConfiguration
from dtls_ossl.exceptions import ConfigurationError

__all__ = ["connect"]


async def connect(
    host: str,
    port: int,
    configuration: DtlsConfiguration,
    *,
    remote_fingerprints: Fingerprints | None,
    insecure_skip_fingerprint_check: bool = False,
    local_addr: tuple[str, int] | None = None,
    handshake_timeout: float | None = None,
    max_queued_datagrams: int = 256,
    fail_on_port_unreachable: bool = False,
) -> DtlsStream:
    """Connect to a DTLS server and return the stream once the handshake completed.

    The socket is connected to the server, so the kernel drops datagrams from anyone else
    and reports ICMP errors. An ICMP "port unreachable" does not end the handshake (the
    server may just be starting, and ICMP is easy to forge); if the handshake then times
    out, that error is the ``__cause__`` of the :class:`~dtls_ossl.HandshakeTimeoutError`.
    With ``fail_on_port_unreachable=True`` (interactive tools), an ICMP "port unreachable"
    that arrives before anything from the server ends the handshake at once with a
    :class:`~dtls_ossl.HandshakeError` whose ``__cause__`` is the ConnectionRefusedError.

    :param remote_fingerprints: the server certificate must match one of these (RFC 8122).
    :param insecure_skip_fingerprint_check: accept any certificate (tests only).
    :param local_addr: bind the socket to this address first.
    :param handshake_timeout: seconds for the whole handshake (None: the configuration's
        ``handshake_timeout``, and OpenSSL's retransmission limit).
    :param max_queued_datagrams: received records kept for ``recv()``; beyond, new ones drop.
    :param fail_on_port_unreachable: fail fast on ICMP port unreachable (see above).
    :raises FingerprintMismatchError: the server's certificate is not the expected one.
    :raises HandshakeTimeoutError: no handshake within the deadline.
    :raises HandshakeError: the handshake failed otherwise (e.g. the server's fatal alert).
    :raises ConfigurationError: a bad argument.
    :raises OSError: the address cannot be resolved or bound.
    """
    if remote_fingerprints is None and not insecure_skip_fingerprint_check:
        raise ConfigurationError(
            "connect() needs remote_fingerprints, or insecure_skip_fingerprint_check=True"
        )
    loop = asyncio.get_running_loop()
    endpoint = DtlsEndpoint(
        configuration,
        handshake_timeout=handshake_timeout,
        max_queued_datagrams=max_queued_datagrams,
    )
    endpoint._close_transport_when_empty = True
    endpoint._fail_on_refused = bool(fail_on_port_unreachable)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: endpoint, remote_addr=(host, port), local_addr=local_addr
    )
    try:
        peer = transport.get_extra_info("peername")
        stream = endpoint.connection_for(
            peer,
            Role.CLIENT,
            remote_fingerprints,
            insecure_skip_fingerprint_check=insecure_skip_fingerprint_check,
        )
        await stream.wait_handshake()
    except BaseException:
        transport.abort()
        raise
    return stream
