"""Give freed C heap pages back after failed handshakes: :class:`HeapTrimmer`.

glibc keeps the memory of freed SSL objects resident when anything lives above it in the
heap: without a trim, what a flood of abandoned handshakes made OpenSSL allocate stays in the
RSS after they all timed out. The endpoint tells the trimmer of every failed handshake; the
trimmer calls ``malloc_trim`` (through the binding) at most once per ``interval``, and once
more when the last handshake in progress ends. A trim costs about a millisecond per 100 MB.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import final

from dtls_ossl._binding import lib

__all__ = ["HeapTrimmer"]


def _release() -> None:
    lib.DtlsOssl_release_memory()


@final
class HeapTrimmer:
    """Decides when to give the C heap back after failed handshakes (see the module doc).

    :param clock: the current time in seconds (the endpoint's loop time).
    :param release: gives the memory back (default: the binding's ``malloc_trim`` call).
    :param interval: seconds between two releases while handshakes are in progress.
    """

    __slots__ = ("_clock", "_interval", "_release", "_released_at", "_unreleased", "releases")

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        release: Callable[[], None] = _release,
        interval: float = 1.0,
    ) -> None:
        """Make a trimmer with nothing to release yet."""
        self._clock = clock
        self._release = release
        self._interval = interval
        self._unreleased = 0
        self._released_at = -math.inf
        self.releases = 0
        "How many times the memory was given back."

    def peer_ended(self, *, failed: bool, in_progress: int) -> None:
        """Note that a peer ended (its handshake ``failed``, or not); release if it is time.

        ``in_progress`` is the number of handshakes still running.
        """
        if failed:
            self._unreleased += 1
        if not self._unreleased:
            return
        now = self._clock()
        if in_progress == 0 or now - self._released_at >= self._interval:
            self._unreleased = 0
            self._released_at = now
            self.releases += 1
            self._release()
