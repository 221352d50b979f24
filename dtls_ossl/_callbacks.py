"""Every ``@ffi.def_extern`` callback, and the per-connection state they reach through a handle.

C finds the state through ``SSL_get_ex_data`` → ``DtlsOssl_conn.handle`` (an ``ffi.new_handle``
of a :class:`CallbackState`, kept alive by the connection). A callback only computes and
returns: any exception is captured in the state and re-raised by the connection after the C
call returns (pyOpenSSL's pattern), never printed as "unraisable".
"""

from __future__ import annotations

from dtls_ossl._openssl import ffi
from dtls_ossl._util import TYPE_CHECKING
from dtls_ossl.webrtc.sdp import digest, format_fingerprint

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["CallbackState"]

# Peer-check outcomes returned to DtlsOssl_cert_verify_cb.
ACCEPT = 1
REJECT = 0
CALLBACK_FAILED = -1


class CallbackState:
    """What the C callbacks of one connection need: expected fingerprints, results, errors."""

    __slots__ = (
        "captured",
        "expected",
        "insecure",
        "key_log",
        "matched",
        "mismatch",
        "peer_der",
    )

    def __init__(self, key_log: Callable[[str], None] | None) -> None:
        """Create an empty state; the connection fills ``expected`` before verification."""
        self.expected: tuple[tuple[str, bytes], ...] | None = None
        "(hashlib name, digest) pairs the peer certificate may match; None = not known yet."
        self.insecure = False
        self.key_log = key_log
        self.peer_der: bytes | None = None
        self.matched = -1
        "Index in ``expected`` of the fingerprint the peer matched; -1 until one has."
        self.mismatch: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self.captured: BaseException | None = None

    def capture(self, exc: BaseException) -> None:
        """Keep the first exception raised inside a callback."""
        if self.captured is None:
            self.captured = exc


def _check_peer(state: CallbackState, der: bytes) -> int:
    import hmac  # lazily (~3 ms of ``import dtls_ossl``); a sys.modules lookup after the first

    state.peer_der = der
    if state.insecure:
        return ACCEPT
    expected = state.expected
    if not expected:
        # Fail closed: verification must never pass without fingerprints. The connection holds
        # the peer's flight until they arrive, so this only happens if that logic is bypassed.
        state.mismatch = ((), ())
        return REJECT
    actual: dict[str, bytes] = {}
    for index, (name, value) in enumerate(expected):
        got = actual.get(name)
        if got is None:
            got = actual[name] = digest(name, der)
        if hmac.compare_digest(got, value):
            state.matched = index
            return ACCEPT
    state.mismatch = (
        tuple(format_fingerprint(n, d) for n, d in expected),
        tuple(format_fingerprint(n, d) for n, d in actual.items()),
    )
    return REJECT


@ffi.def_extern(onerror=lambda *_: CALLBACK_FAILED)  # type: ignore[untyped-decorator]
def DtlsOssl_py_check_peer(handle: Any, der: Any, length: int) -> int:
    """Compare the peer certificate (DER) with the expected fingerprints; 1 accepts it."""
    state: CallbackState = ffi.from_handle(handle)
    try:
        return _check_peer(state, ffi.buffer(der, length)[:])
    except BaseException as exc:
        state.capture(exc)
        return CALLBACK_FAILED


@ffi.def_extern()  # type: ignore[untyped-decorator]
def DtlsOssl_py_keylog(handle: Any, line: Any) -> None:
    """Hand one NSS key-log line to the configured writer."""
    state: CallbackState = ffi.from_handle(handle)
    try:
        if state.key_log is not None:
            state.key_log(ffi.string(line).decode("ascii"))
    except BaseException as exc:
        state.capture(exc)
