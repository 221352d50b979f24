"""The compiled OpenSSL binding: runtime checks, the error queue and per-thread scratch buffers.

Everything that touches ``lib`` directly converts results to Python values here or in
:mod:`dtls_ossl.connection`; cdata never reaches users.
"""

from __future__ import annotations

import threading
from typing import Any

from dtls_ossl._openssl import ffi, lib
from dtls_ossl.exceptions import OpenSSLError, OpenSSLErrorInfo

__all__ = [
    "HAS_DTLS_1_3",
    "Scratch",
    "consume_errors",
    "ffi",
    "lib",
    "openssl_assert",
    "openssl_version",
    "openssl_version_number",
    "scratch",
]

HAS_DTLS_1_3: bool = bool(lib.DtlsOssl_HAS_DTLS_1_3)
"True when the linked OpenSSL can negotiate DTLS 1.3 (OpenSSL 4.1 and later)."

_BUILT_VERSION = int(lib.OPENSSL_VERSION_NUMBER)

if int(lib.OpenSSL_version_num()) >> 28 < 3:  # pragma: no cover - refused at build time too
    raise ImportError(
        "dtls_ossl needs OpenSSL >= 3.0 at run time, found "
        + ffi.string(lib.OpenSSL_version(lib.OPENSSL_VERSION)).decode("ascii")
    )


def openssl_version() -> str:
    """Return the version text of the OpenSSL loaded at run time, e.g. ``OpenSSL 3.0.19 ...``."""
    return str(ffi.string(lib.OpenSSL_version(lib.OPENSSL_VERSION)).decode("ascii"))


def openssl_version_number() -> int:
    """Return ``OPENSSL_VERSION_NUMBER`` of the OpenSSL loaded at run time."""
    return int(lib.OpenSSL_version_num())


def consume_errors() -> tuple[OpenSSLErrorInfo, ...]:
    """Drain OpenSSL's per-thread error queue into Python objects; the queue is left empty."""
    out: list[OpenSSLErrorInfo] = []
    while True:
        code = int(lib.ERR_get_error())
        if code == 0:
            return tuple(out)
        lib_p = lib.ERR_lib_error_string(code)
        reason_p = lib.ERR_reason_error_string(code)
        if reason_p == ffi.NULL:
            buf = ffi.new("char[]", 256)
            lib.ERR_error_string_n(code, buf, 256)
            reason = ffi.string(buf).decode("ascii", "replace")
        else:
            reason = ffi.string(reason_p).decode("ascii", "replace")
        library = "" if lib_p == ffi.NULL else ffi.string(lib_p).decode("ascii", "replace")
        out.append(OpenSSLErrorInfo(code=code, library=library, reason=reason))


def openssl_assert(ok: bool, what: str) -> None:
    """Raise :class:`OpenSSLError` with the drained error queue if ``ok`` is false."""
    if not ok:
        raise OpenSSLError(f"{what} failed", consume_errors())


# Sizes of the scratch buffers. A datagram is at most 65535 bytes, so its plaintext is too; one
# extra record's worth keeps SSL_read from ever splitting a record (DtlsOssl_pump checks it).
_PLAIN_CAP = 65536 + 18432
_REC_CAP = 65536 // 13 + 64
_WIRE_CAP = 65536
_DGRAM_CAP = _WIRE_CAP // 13 + 64


class Scratch:
    """Per-thread output buffers shared by every connection that thread drives.

    Each C entry point writes framed datagrams and plaintext here; the connection copies them
    out before returning, so sharing between connections of one thread is safe. Buffers grow
    on demand (large batches) and never shrink.
    """

    __slots__ = ("_keep", "ptr")

    def __init__(self) -> None:
        """Allocate the buffers (uninitialised memory: they are always written before read)."""
        alloc = ffi.new_allocator(should_clear_after_alloc=False)
        self.ptr: Any = ffi.new("DtlsOssl_scratch *")  # owned: Python memory
        self._keep: list[Any] = []
        self._set_wire(alloc, _WIRE_CAP, _DGRAM_CAP)
        self._set_plain(alloc, _PLAIN_CAP, _REC_CAP)

    def _set_wire(self, alloc: Any, cap: int, dgrams: int) -> None:
        wire = alloc("unsigned char[]", cap)
        ends = alloc("int[]", dgrams)
        self._keep += [wire, ends]
        p = self.ptr
        p.wire, p.wire_cap, p.dgram_ends, p.dgram_cap = wire, cap, ends, dgrams

    def _set_plain(self, alloc: Any, cap: int, recs: int) -> None:
        plain = alloc("unsigned char[]", cap)
        ends = alloc("int[]", recs)
        self._keep += [plain, ends]
        p = self.ptr
        p.plain, p.plain_cap, p.rec_ends, p.rec_cap = plain, cap, ends, recs

    def grow_wire(self, needed: int) -> None:
        """Make room for ``needed`` bytes of framed output (the buffer must be collected)."""
        p = self.ptr
        if int(p.wire_cap) >= needed and int(p.dgram_cap) >= needed // 13 + 64:
            return
        cap = max(2 * int(p.wire_cap), needed)
        old = (p.wire, p.dgram_ends)
        self._set_wire(ffi.new_allocator(should_clear_after_alloc=False), cap, cap // 13 + 64)
        self._keep = [k for k in self._keep if k not in old]

    def ensure_plain(self, needed: int) -> None:
        """Make sure a batch of ``needed`` ciphertext bytes fits the plaintext buffers."""
        p = self.ptr
        if int(p.plain_cap) >= needed + 18432 and int(p.rec_cap) >= needed // 13 + 64:
            return
        alloc = ffi.new_allocator(should_clear_after_alloc=False)
        old = (p.plain, p.rec_ends)
        self._set_plain(alloc, needed + 18432, needed // 13 + 64)
        self._keep = [k for k in self._keep if k not in old]


_local = threading.local()


def scratch() -> Scratch:
    """Return this thread's :class:`Scratch`, creating it on first use."""
    try:
        s: Scratch = _local.scratch
    except AttributeError:
        s = _local.scratch = Scratch()
    return s


# The callbacks must be attached before any SSL object exists.
from dtls_ossl import _callbacks  # noqa: E402

__all__ += ["_callbacks"]
