"""RFC 7983 routing of what is not DTLS, and the rule that callbacks are plain functions.

One socket carries a whole WebRTC 5-tuple: the first byte of a datagram tells STUN (0-3),
DTLS (20-63), RTP/RTCP (128-191) and the rest apart (:func:`dtls_ossl.webrtc.demux.classify`).
The endpoint handles DTLS itself; :class:`Router` hands everything else to the caller's
callbacks, synchronously and in datagram order (a task per datagram would reorder them and
let SRTP overtake its keys), and counts what it drops and what the callbacks raise.
"""

from __future__ import annotations

import inspect
from typing import final

from dtls_ossl.aio._types import Address, DatagramCallback, logger
from dtls_ossl.exceptions import ConfigurationError
from dtls_ossl.webrtc.demux import classify

__all__ = ["Router", "check_sync_callback", "discard_awaitable"]


def check_sync_callback(name: str, cb: object) -> None:
    """Refuse a coroutine function as a synchronous callback, with a one-line reason."""
    if cb is None:
        return
    if not callable(cb):
        raise ConfigurationError(f"{name}: expected a function, got {type(cb).__name__}")
    if inspect.iscoroutinefunction(cb) or inspect.iscoroutinefunction(
        getattr(cb, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        raise ConfigurationError(
            f"{name}: async def callbacks are not supported (callbacks run synchronously, in "
            "datagram order); pass a plain function, which may start a task itself"
        )


def discard_awaitable(r: object) -> None:
    """Close a coroutine a callback returned, so Python does not warn it was never awaited."""
    close = getattr(r, "close", None)
    if callable(close):
        close()


@final
class Router:
    """Delivers non-DTLS datagrams to ``on_stun``, ``on_rtp`` or ``on_other`` by first byte.

    A datagram with no callback for its kind is counted in :attr:`dropped`; a callback that
    raises, or returns an awaitable (which is closed, not run), is logged and counted in
    :attr:`errors`. Callbacks are checked with :func:`check_sync_callback`.
    """

    __slots__ = ("_table", "dropped", "errors")

    def __init__(
        self,
        *,
        on_stun: DatagramCallback | None,
        on_rtp: DatagramCallback | None,
        on_other: DatagramCallback | None,
    ) -> None:
        """Build the table of one entry per first byte.

        :raises ConfigurationError: a callback is not a plain function.
        """
        for name, cb in (("on_stun", on_stun), ("on_rtp", on_rtp), ("on_other", on_other)):
            check_sync_callback(name, cb)
        routes = {"stun": on_stun, "rtp": on_rtp}
        self._table: list[DatagramCallback | None] = [
            routes.get(classify(bytes([b])), on_other) for b in range(256)
        ]
        self.dropped = 0
        "Datagrams that had no callback."
        self.errors = 0
        "Callbacks that raised or returned an awaitable."

    def deliver(self, data: bytes, addr: Address) -> None:
        """Hand a non-empty datagram to the callback of its kind."""
        cb = self._table[data[0]]
        if cb is None:
            self.dropped += 1
            return
        try:
            r = cb(data, addr)
        except Exception:
            self.errors += 1
            logger.exception("datagram callback failed for a datagram from %r", addr)
            return
        if r is not None and inspect.isawaitable(r):
            discard_awaitable(r)
            self.errors += 1
            logger.error(
                "datagram callback returned an awaitable for a datagram from %r; callbacks "
                "must be plain functions (it was not run)",
                addr,
            )
