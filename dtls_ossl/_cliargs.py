"""What the ``dtls-ossl`` subcommand modules share: the program name, argument types, errors.

It sits below :mod:`dtls_ossl.cli` (the parser and ``main``) and the subcommand modules
(``_netcli``, ``_demo``), so that they import it and never each other.
"""

from __future__ import annotations

import argparse

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


def probability(text: str) -> float:
    """Parse a probability in 0..1 (``0.3``; ``30%`` also works)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in 0..1")
    return value


def positive_float(text: str) -> float:
    """Parse a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return value


def retransmit_timeout(text: str) -> float:
    """Parse a retransmission timeout: seconds, at least what OpenSSL can time (20 ms)."""
    value = positive_float(text)
    if value < _MIN_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"{text} s is below {_MIN_TIMEOUT} s (OpenSSL treats shorter timers as expired)"
        )
    return value


def mtu(text: str) -> int:
    """Parse an MTU: the largest UDP payload in bytes."""
    value = positive_int(text)
    if not _MIN_MTU <= value <= _MAX_MTU:
        raise argparse.ArgumentTypeError(f"{text} is outside {_MIN_MTU}..{_MAX_MTU} bytes")
    return value


def positive_int(text: str) -> int:
    """Parse an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
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
