"""asyncio for dtls_ossl: clients, servers for many peers, and WebRTC's shared socket.

* :func:`connect` returns a :class:`DtlsStream` once the handshake with a server completed.
* :func:`serve` runs a server: one UDP socket, one :class:`~dtls_ossl.DtlsConnection` per
  peer address, ``handler(stream)`` started once per established peer, stateless cookies
  (RFC 6347 §4.2.1) and limits on by default. It returns a :class:`DtlsServer`.
* :class:`DtlsEndpoint` is the building block of both, for the WebRTC case: the caller owns
  the socket, and the endpoint demultiplexes it (RFC 7983) between the caller's STUN and
  RTP/RTCP callbacks and the DTLS connections.

Every endpoint has a single timer: a heap of per-connection deadlines with one
``loop.call_at`` armed at the earliest; established peers cost no wake-ups (but one per
``idle_timeout``). Errors surface as :class:`~dtls_ossl.DtlsError` subclasses on the call
that awaits them.

Scaling
=======

One process handles every peer of its socket on one core. ``serve(..., workers=N,
reuse_port=True)`` starts N processes, each binding its own socket to the same port with
``SO_REUSEPORT``. The kernel picks a socket by hashing the 4-tuple, so every datagram of one
peer reaches the same worker, which holds that peer's connection. All workers share one
cookie secret, so a cookie minted by one is accepted by all. Caveat: the hash is taken over
the *live* sockets, so when a worker exits, peers move between the remaining workers and
those associations are lost (their clients must reconnect).

Past one machine, put a UDP load balancer in front (an L4 balancer such as IPVS, a cloud
network load balancer, or ``SO_REUSEPORT``-style ECMP) that keeps each client's 4-tuple on
one backend, and give every backend the same ``cookie_secret``: a cookie depends only on the
secret, the client's address and the time, so it is valid on every backend whichever one
minted it, and the HelloVerifyRequest round trip needs no shared state. The balancer must
preserve client source addresses (no SNAT), since cookies and connections are keyed on them.
Keep clocks within ``cookie_rotation_interval`` (30 s by default) of each other.
"""

from __future__ import annotations

from dtls_ossl.aio._client import connect
from dtls_ossl.aio._endpoint import DtlsEndpoint
from dtls_ossl.aio._server import DtlsServer, serve
from dtls_ossl.aio._stats import ServerStats
from dtls_ossl.aio._stream import DtlsStream, Handler, HandshakeCallback
from dtls_ossl.aio._types import (
    Address,
    DatagramCallback,
    HandshakeFailedCallback,
    RemoteFingerprints,
)
from dtls_ossl.exceptions import IdleTimeoutError

__all__ = [
    "Address",
    "DatagramCallback",
    "DtlsEndpoint",
    "DtlsServer",
    "DtlsStream",
    "Handler",
    "HandshakeCallback",
    "HandshakeFailedCallback",
    "IdleTimeoutError",
    "RemoteFingerprints",
    "ServerStats",
    "connect",
    "serve",
]
