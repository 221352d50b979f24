"""Limits every layer shares: the handshake-timeout default and the positive-number check.

Light on purpose (it imports only the exceptions), so that the CLI's argument defaults and the
asyncio layer read the same value as :class:`~dtls_ossl.DtlsConfiguration` without importing
the OpenSSL binding.
"""

from __future__ import annotations

from dtls_ossl.exceptions import ConfigurationError

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "check_positive"]

DEFAULT_HANDSHAKE_TIMEOUT = 30.0
"""Seconds a handshake may take: the one default of the connection, the asyncio layer and the
CLI, enough for OpenSSL's doubling retransmissions (1, 2, 4, 8 s...) to get a lost flight
through."""


def check_positive(
    name: str, value: object, *, optional: bool = False, integer: bool = False
) -> None:
    """Raise :class:`ConfigurationError` unless *value* is a number > 0 (None if *optional*).

    A bool is refused (``True`` is an int); ``integer`` refuses a float too. NaN and infinity
    are refused: neither is a usable count of seconds.
    """
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and not isinstance(value, int))
        or not 0 < value < float("inf")
    ):
        kind = "an int" if integer else "seconds"
        extra = " or None" if optional else ""
        raise ConfigurationError(f"{name}: expected {kind} > 0{extra}, got {value!r}")
