"""The compiled OpenSSL binding: runtime checks, the error queue and per-thread scratch buffers.

Everything that touches ``lib`` directly converts results to Python values here or in
:mod:`dtls_ossl.connection`; cdata never reaches users.
"""

from __future__ import annotations

from _thread import _local as _thread_local

from dtls_ossl._util import TYPE_CHECKING
from dtls_ossl.exceptions import OpenSSLError, OpenSSLErrorInfo


def _load_failure(exc: ImportError) -> str:
    """Say why ``dtls_ossl._openssl`` did not load, and the command that fixes it."""
    from importlib.machinery import EXTENSION_SUFFIXES
    from pathlib import Path

    package = Path(__file__).resolve().parent
    if isinstance(exc, ModuleNotFoundError) and exc.name == "dtls_ossl._openssl":
        # ``python -m dtls_ossl`` in a clone puts the clone first on sys.path, so this source
        # tree shadows the package that ``pip install .`` compiled into site-packages.
        if not (package.parent / "pyproject.toml").is_file():
            return (
                f"dtls_ossl: the compiled OpenSSL binding is missing: {package} has no "
                f"_openssl{EXTENSION_SUFFIXES[0]}; reinstall it for this Python with "
                "`pip install --force-reinstall dtls_ossl`"
            )
        return (
            f"dtls_ossl: the compiled OpenSSL binding is missing: {package} has no "
            f"_openssl{EXTENSION_SUFFIXES[0]}, so it is a source tree that was not built for this "
            f"Python. Build it in place with `pip install -e {package.parent}`, or, after "
            "`pip install .`, run the installed `dtls-ossl` command or Python from another "
            "directory so that the installed package is imported"
        )
    # Typically "version `OPENSSL_3.3.0' not found": a libssl.so.3 older than the headers the
    # module was compiled with was loaded first (Python's ssl or hashlib load the system one).
    return (
        f"dtls_ossl: loading the compiled OpenSSL binding from {package} failed ({exc}). If it "
        "names an OPENSSL_ symbol version, the module was built against a newer OpenSSL than "
        "the libssl/libcrypto that was loaded: run with LD_LIBRARY_PATH set to the lib directory "
        "of the OpenSSL it was built against, or rebuild it against the OpenSSL that runs "
        "(`pip install --force-reinstall --no-cache-dir .` without CFLAGS/LDFLAGS)"
    )


try:
    import dtls_ossl._openssl as _openssl
except ImportError as _exc:
    # The message carries all that the original said; its traceback would only add noise.
    raise ImportError(_load_failure(_exc)) from None

from dtls_ossl._openssl import ffi, lib  # noqa: E402

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "HAS_DTLS_1_3",
    "Scratch",
    "check_runtime_version",
    "consume_errors",
    "ffi",
    "format_version",
    "lib",
    "local",
    "openssl_assert",
    "openssl_build_version_number",
    "openssl_version",
    "openssl_version_number",
    "scratch",
]

HAS_DTLS_1_3: bool = bool(lib.DtlsOssl_HAS_DTLS_1_3)
"True when the linked OpenSSL can negotiate DTLS 1.3 (OpenSSL 4.1 and later)."

_BUILT_VERSION = int(lib.OPENSSL_VERSION_NUMBER)


def format_version(number: int) -> str:
    """Return ``OPENSSL_VERSION_NUMBER`` as text: ``0x30000130`` -> ``3.0.19``.

    OpenSSL 3 and later encode major.minor.patch as ``0xMNN00PP0``; 1.x as ``0xMNNFFPPS``
    (fix number, then a patch letter), shown as e.g. ``1.1.1w``.
    """
    major, minor = number >> 28, (number >> 20) & 0xFF
    if major >= 3:
        return f"{major}.{minor}.{(number >> 4) & 0xFF}"
    letter = (number >> 4) & 0xFF
    suffix = chr(ord("a") + letter - 1) if 1 <= letter <= 26 else ""
    return f"{major}.{minor}.{(number >> 12) & 0xFF}{suffix}"


def check_runtime_version(built: int, running: int) -> None:
    """Raise ImportError unless OpenSSL ``running`` can stand in for the ``built`` headers.

    Both are ``OPENSSL_VERSION_NUMBER`` values. The runtime must be 3.0 or later, of the same
    major version as the headers (a major version changes the ABI) and not older than them
    (minor releases add functions; an older patch level lacks fixes the build assumed). In the
    3.x encoding ``0xMNN00PP0`` the fields are ordered most significant first, so the integers
    compare as (major, minor, patch) tuples; a newer minor or patch level at run time is fine.
    """
    fix = (
        "rebuild dtls_ossl against the OpenSSL that runs (`pip install --force-reinstall "
        "--no-cache-dir .` without CFLAGS/LDFLAGS), or load the one it was built against first "
        "(LD_LIBRARY_PATH=<its lib directory>; Python's ssl and hashlib load the system libssl)"
    )
    if running >> 28 < 3:
        raise ImportError(
            f"dtls_ossl needs OpenSSL >= 3.0 at run time, found {format_version(running)}: {fix}"
        )
    if running >> 28 != built >> 28 or running < built:
        raise ImportError(
            f"dtls_ossl was built against OpenSSL {format_version(built)} but OpenSSL "
            f"{format_version(running)} is the one loaded at run time: {fix}"
        )


# Debian names OpenSSL 3.0 and 3.5 both libssl.so.3: a module compiled against newer headers
# can silently bind to an older library that was loaded first.
check_runtime_version(_BUILT_VERSION, int(lib.OpenSSL_version_num()))


if lib.DtlsOssl_init() != 1:  # pragma: no cover - only out of memory
    raise ImportError("dtls_ossl: initialising the OpenSSL binding failed (ex_data index, BIO)")

# The per-record paths are CPython functions that the C code adds to the _openssl module.
if lib.DtlsOssl_install_fast(_openssl.__name__.encode("ascii")) != 0:  # pragma: no cover
    raise ImportError("dtls_ossl: adding the fast paths to dtls_ossl._openssl failed")


def openssl_version() -> str:
    """Return the version text of the OpenSSL loaded at run time, e.g. ``OpenSSL 3.0.19 ...``."""
    return str(ffi.string(lib.OpenSSL_version(lib.OPENSSL_VERSION)).decode("ascii"))


def openssl_version_number() -> int:
    """Return ``OPENSSL_VERSION_NUMBER`` of the OpenSSL loaded at run time."""
    return int(lib.OpenSSL_version_num())


def openssl_build_version_number() -> int:
    """Return ``OPENSSL_VERSION_NUMBER`` of the OpenSSL headers the binding was compiled with."""
    return _BUILT_VERSION


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
    on demand (large batches) and never shrink. ``wire_buf``/``plain_buf`` are ``ffi.buffer``
    views of ``wire``/``plain``: slicing one is the cheapest way to copy output into ``bytes``.
    """

    __slots__ = (
        "addr",
        "dgram_ends",
        "plain",
        "plain_buf",
        "ptr",
        "rec_ends",
        "wire",
        "wire_buf",
        "wire_room",
    )

    def __init__(self) -> None:
        """Allocate the buffers (uninitialised memory: they are always written before read)."""
        self.ptr: Any = ffi.new("DtlsOssl_scratch *")  # owned: Python memory
        # Its address, for the CPython fast paths (_cffi_src/fastpath.c), which take ints.
        self.addr = int(ffi.cast("uintptr_t", self.ptr))
        self.wire: Any = None
        self.wire_buf: Any = None
        self.dgram_ends: Any = None
        self.plain: Any = None
        self.plain_buf: Any = None
        self.rec_ends: Any = None
        # What grow_wire can take without reallocating (no cdata reads needed).
        self.wire_room = 0
        self._set_wire(_WIRE_CAP, _DGRAM_CAP)
        self._set_plain(_PLAIN_CAP, _REC_CAP)
        lib.DtlsOssl_scratch_claim(self.ptr)  # this thread's: the fast paths check it

    def _set_wire(self, cap: int, dgrams: int) -> None:
        # owned: these arrays live as long as this object; ptr and the buffer only borrow them.
        self.wire = _alloc("char[]", cap)
        self.wire_buf = ffi.buffer(self.wire)
        self.dgram_ends = _alloc("int[]", dgrams)
        p = self.ptr
        p.wire, p.wire_cap, p.dgram_ends, p.dgram_cap = self.wire, cap, self.dgram_ends, dgrams
        self.wire_room = min(cap, (dgrams - 64) * 13)

    def _set_plain(self, cap: int, recs: int) -> None:
        self.plain = _alloc("char[]", cap)
        self.plain_buf = ffi.buffer(self.plain)
        self.rec_ends = _alloc("int[]", recs)
        p = self.ptr
        p.plain, p.plain_cap, p.rec_ends, p.rec_cap = self.plain, cap, self.rec_ends, recs

    def grow_wire(self, needed: int) -> None:
        """Make room for ``needed`` bytes of framed output (the buffer must be collected)."""
        if needed <= self.wire_room:
            return
        cap = max(2 * int(self.ptr.wire_cap), needed)
        self._set_wire(cap, cap // 13 + 64)


_alloc = ffi.new_allocator(should_clear_after_alloc=False)

local = _thread_local()
"Per-thread storage; ``local.scratch`` is this thread's :class:`Scratch` once created."


def scratch() -> Scratch:
    """Return this thread's :class:`Scratch`, creating it on first use."""
    try:
        s: Scratch = local.scratch
    except AttributeError:
        s = local.scratch = Scratch()
    return s


# The callbacks must be attached before any SSL object exists.
from dtls_ossl import _callbacks  # noqa: E402

__all__ += ["_callbacks"]
