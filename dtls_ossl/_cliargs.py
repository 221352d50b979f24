"""What the ``dtls-ossl`` subcommand modules share: the program name, argument types, errors.

It sits below :mod:`dtls_ossl.cli` (the parser and ``main``) and the subcommand modules
(``_netcli``, ``_demo``), so that they import it and never each other.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from dtls_ossl.configuration import _MAX_MTU, _MIN_MTU, _MIN_TIMEOUT
from dtls_ossl.webrtc.srtp import SrtpProfile

__all__ = [
    "PROG",
    "CliError",
    "UsageError",
    "mtu",
    "positive_float",
    "positive_int",
    "probability",
    "retransmit_timeout",
    "srtp_profile",
]

PROG = "dtls-ossl"
"The program name used in usage and error messages."


class UsageError(Exception):
    """A bad combination of arguments found after parsing (exit status 2)."""


class CliError(Exception):
    """A failure of a subcommand already worded as the one-line error to print (exit status 1).

    The CLI's own error, not the library's: it does not derive from
    :class:`~dtls_ossl.DtlsError`, which only dtls_ossl's library code raises.
    """


# ----------------------------------------------------------------------- argument types
# Each raises ArgumentTypeError, which argparse reports as "argument --x: <message>".


_N = TypeVar("_N", int, float)


def _number(text: str, convert: Callable[[str], _N], what: str) -> _N:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise argparse.ArgumentTypeError(message)


def probability(text: str) -> float:
    """Parse a probability in 0..1 (``0.3``; ``30%`` also works)."""
    percent = text.endswith("%")
    value = _number(text[:-1] if percent else text, float, "a number") / (100 if percent else 1)
    _require(0.0 <= value <= 1.0, f"{text} is not a probability in 0..1")
    return value


def positive_float(text: str) -> float:
    """Parse a number of seconds > 0."""
    value = _number(text, float, "a number")
    _require(0 < value < float("inf"), f"{text} must be a finite number > 0")
    return value


def retransmit_timeout(text: str) -> float:
    """Parse a retransmission timeout: seconds, at least what OpenSSL can time (20 ms)."""
    value = positive_float(text)
    _require(
        value >= _MIN_TIMEOUT,
        f"{text} s is below {_MIN_TIMEOUT} s (OpenSSL treats shorter timers as expired)",
    )
    return value


def mtu(text: str) -> int:
    """Parse an MTU: the largest UDP payload in bytes."""
    value = positive_int(text)
    _require(_MIN_MTU <= value <= _MAX_MTU, f"{text} is outside {_MIN_MTU}..{_MAX_MTU} bytes")
    return value


def positive_int(text: str) -> int:
    """Parse an integer >= 1."""
    value = _number(text, int, "an integer")
    _require(value >= 1, f"{text} must be at least 1")
    return value


def srtp_profile(text: str) -> SrtpProfile:
    """Parse an SRTP profile by OpenSSL name or enum name, case-insensitively.

    ``SRTP_AEAD_AES_128_GCM``, ``aead_aes_128_gcm`` and ``AEAD_AES_128_GCM`` are the same.
    """
    name = text.strip().upper()
    for profile in SrtpProfile:
        if name in (profile.openssl_name, profile.name):
            return profile
    choices = ", ".join(p.openssl_name for p in SrtpProfile)
    raise argparse.ArgumentTypeError(f"unknown SRTP profile {text!r}; choose from {choices}")
