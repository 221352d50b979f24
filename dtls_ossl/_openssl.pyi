from typing import Any

from dtls_ossl.events import DataReceived

ffi: Any
lib: Any

# Added by DtlsOssl_install_fast (_cffi_src/fastpath.c) when dtls_ossl._binding is imported.
def fast_send(conn: int, data: bytes | bytearray | memoryview, out: list[bytes], /) -> int: ...
def fast_receive(
    conn: int, datagram: bytes | bytearray | memoryview, out: list[bytes], events: list[Any], /
) -> int: ...
def fast_send_many(conn: int, payloads: Any, start: int, out: list[bytes], /) -> int: ...
def fast_receive_many(
    conn: int, datagrams: Any, start: int, out: list[bytes], events: list[Any], /
) -> int: ...
def fast_setup(event_class: type[DataReceived], data_slot: Any, /) -> None: ...
def fast_established(
    conn: int, scratch: int, /
) -> tuple[str, str, int, int, bytes | None, bytes | None, int] | None: ...
def fast_step(
    conn: int,
    scratch: int,
    op: int,
    datagram: bytes | None,
    out: list[bytes],
    events: list[Any],
    /,
) -> int: ...
def install_methods(
    cls: type,
    slots: tuple[Any, ...],
    established: Any,
    outcomes: tuple[Any, Any],
    docs: tuple[str, ...],
    queue: tuple[int, int],
    /,
) -> None: ...
def record_fill(obj: object, slots: tuple[Any, ...], /, *values: object) -> None: ...
