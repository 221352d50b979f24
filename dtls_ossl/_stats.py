"""Counter snapshots: one mechanism for a connection's, an endpoint's and a server's counters.

A :class:`Stats` subclass declares its counters once, as ``int`` annotations defaulting to 0
(a :class:`~dtls_ossl._util.Record`); snapshots of the same class add up field by field, which
is how a multi-process server sums its workers.
"""

from __future__ import annotations

from operator import add

from dtls_ossl._util import TYPE_CHECKING, Record, final

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["ConnectionStats", "Stats"]


class Stats(Record):
    """Base of the counter snapshots: immutable, compared and summed field by field."""

    def __add__(self, other: Self) -> Self:
        """Sum two snapshots of the same class field by field."""
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._unchecked(*map(add, self._values(self), other._values(other)))

    def as_dict(self) -> dict[str, int]:
        """Return the counters by name, in declaration order (for logs and JSON)."""
        return dict(zip(self.__match_args__, self._values(self), strict=True))


@final
class ConnectionStats(Stats):
    """Counters of one connection (a snapshot)."""

    datagrams_received: int = 0
    "Datagrams given to ``receive_datagram`` (including dropped and held ones)."
    datagrams_dropped: int = 0
    """Datagrams dropped before OpenSSL saw them: not DTLS framing, past what a handshake may
    make OpenSSL buffer (``max_handshake_message``, next-epoch records), or after the end."""
    datagrams_held: int = 0
    "Datagrams held while waiting for the remote fingerprints (total)."
    datagrams_sent: int = 0
    "Datagrams returned by ``datagrams_to_send``."
    retransmissions: int = 0
    "Flights we retransmitted after our timer expired."
