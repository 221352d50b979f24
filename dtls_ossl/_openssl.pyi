from typing import Any

from dtls_ossl.events import DataReceived

ffi: Any
lib: Any

# Added by DtlsOssl_install_fast (_cffi_src/module.c) when dtls_ossl._binding is imported.
def fast_send(conn: int, data: bytes | bytearray | memoryview, out: list[bytes], /) -> int: ...
def fast_receive(
    conn: int, datagram: bytes | bytearray | memoryview, out: list[bytes], events: list[Any], /
) -> int: ...
def fast_send_many(conn: int, payloads: Any, start: int, out: list[bytes], /) -> int: ...
def fast_receive_many(
    conn: int, datagrams: Any, start: int, out: list[bytes], events: list[Any], /
) -> int: ...
def fast_setup(event_class: type[DataReceived], data_slot: Any, /) -> None: ...
def step(
    conn: object,
    scratch: object,
    op: int,
    datagram: bytes | bytearray | memoryview | None,
    now: float,
    /,
) -> int: ...
def complete(conn: object, scratch: object, /) -> int: ...
def conn_new(
    conn: object,
    args: tuple[int, int, int, int],
    is_server: bool,
    handle: int | None,
    check: int,
    md: int,
    digests: bytes,
    /,
) -> bool: ...
def conn_free(conn: object, /) -> None: ...
def step_setup(
    conn_class: type,
    scratch_class: type,
    completed_class: type,
    keys_class: type,
    certificate_class: type,
    objects: dict[str, Any],
    /,
) -> None: ...
def install_init(cls: type, doc: str, /) -> None: ...
def receive(conn: object, data: bytes | bytearray | memoryview, now: float, /) -> None: ...
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
