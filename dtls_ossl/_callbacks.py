"""Every ``@ffi.def_extern`` callback, and the per-connection state they reach through a handle.

C finds the state through ``SSL_get_ex_data`` → ``DtlsOssl_conn.handle`` (an ``ffi.new_handle``
of a :class:`CallbackState`, kept alive by the connection). A callback only computes and
returns: any exception is captured in the state and re-raised by the connection after the C
call returns (pyOpenSSL's pattern), never printed as "unraisable".

The peer certificate's fingerprint is checked in C (``DtlsOssl_cert_verify_cb`` in
_cffi_src/engine.c, against the digests the connection prepared when it was made), so the only
Python callback is the key log: a connection without one has no handle at all.
"""

from __future__ import annotations

from dtls_ossl._openssl import ffi
from dtls_ossl._util import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["NO_CALLBACKS", "CallbackState"]

CALLBACK_FAILED = -1
"What a callback returns to C when it raised: C then reports DTLSOSSL_CALLBACK."


class CallbackState:
    """What the C callbacks of one connection need: the key-log writer, the error it raised."""

    __slots__ = ("captured", "key_log")

    def __init__(self, key_log: Callable[[str], None] | None) -> None:
        """Create an empty state for a key-log writer."""
        self.key_log = key_log
        self.captured: BaseException | None = None

    def capture(self, exc: BaseException) -> None:
        """Keep the first exception raised inside a callback."""
        if self.captured is None:
            self.captured = exc


NO_CALLBACKS = CallbackState(None)
"The shared state of every connection without a key log: no callback can reach it."


@ffi.def_extern(onerror=lambda *_: CALLBACK_FAILED)  # type: ignore[untyped-decorator]
def DtlsOssl_py_keylog(handle: Any, line: Any) -> int:
    """Hand one NSS key-log line to the configured writer; -1 if it raised (captured)."""
    state: CallbackState = ffi.from_handle(handle)
    try:
        if state.key_log is not None:
            state.key_log(ffi.string(line).decode("ascii"))
    except BaseException as exc:
        state.capture(exc)
        return CALLBACK_FAILED
    return 0
