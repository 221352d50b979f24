"""The handshake path in C (_cffi_src/step.c, conninit.c): the same behaviour as in Python.

The C ``__init__`` twin, ``receive`` (handshake flights and a new server's ClientHello), ``step``
and the completion that builds HandshakeCompleted stand in front of the Python definitions in
connection.py and _conn_core.py, which stay the reference: these tests compare the two, and
check that a connection's C object can never be reached once it is freed.
"""

from __future__ import annotations

import gc
import pydoc
import sys
import time
from typing import Any

import pytest
from helpers import (
    cached_cert,
    current_state,
    drain_events,
    expect_event,
    handshake,
    make_pair,
)

from dtls_ossl import (
    ConnectionState,
    DtlsConfiguration,
    DtlsConnection,
    InvalidStateError,
    Role,
    SrtpKeys,
    SrtpProfile,
    _openssl,
    events,
)
from dtls_ossl._binding import scratch
from dtls_ossl._conn_core import ConnectionCore
from dtls_ossl.webrtc.certificate import Certificate

pytestmark = pytest.mark.timeout(60)

_SLOTS = [name for name in ConnectionCore.__slots__ if name not in ("_ref", "_addr", "_sc")]


def _state(conn: DtlsConnection) -> dict[str, Any]:
    """Every slot __init__ sets (a new list compares equal to another new list)."""
    return {name: getattr(conn, name) for name in _SLOTS}


@pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER])
@pytest.mark.parametrize("given", ["list", "tuple", "none"])
def test_c_init_makes_the_state_of_the_python_definition(role: Role, given: str) -> None:
    config = DtlsConfiguration(certificate=cached_cert("client"))
    fp = cached_cert("server").fingerprint()
    fps = {"list": [fp], "tuple": (fp,), "none": None}[given]
    fast = DtlsConnection(config, role=role, remote_fingerprints=fps)
    # A keyword the C twin leaves to the Python definition, with the default value.
    reference = DtlsConnection(
        config, role=role, remote_fingerprints=fps, insecure_skip_fingerprint_check=False
    )
    assert _state(fast) == _state(reference)
    assert fast._expected == reference._expected == (None if fps is None else (fp,))
    assert fast._addr and reference._addr and fast._addr != reference._addr
    assert type(fast._ref) is type(reference._ref)


def test_c_init_leaves_every_other_call_and_error_to_python() -> None:
    config = DtlsConfiguration(certificate=cached_cert("client"))
    fp = cached_cert("server").fingerprint()
    conn = DtlsConnection(config, role=Role.CLIENT, remote_fingerprints=[str(fp)])
    assert conn.remote_fingerprints == (fp,)
    conn = DtlsConnection(config, role=Role.SERVER, insecure_skip_fingerprint_check=True)
    assert conn._insecure and conn.remote_fingerprints is None
    with pytest.raises(Exception, match="role"):
        DtlsConnection(config, role="client")  # type: ignore[arg-type]
    with pytest.raises(Exception, match="configuration"):
        DtlsConnection(object(), role=Role.CLIENT)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        DtlsConnection(config, Role.CLIENT)  # type: ignore[call-arg]


def test_the_c_methods_keep_the_python_signatures_and_docs() -> None:
    import inspect

    assert str(inspect.signature(DtlsConnection)) == (
        "(configuration, *, role, remote_fingerprints=None, insecure_skip_fingerprint_check=False)"
    )
    assert (DtlsConnection.__init__.__doc__ or "").startswith("Create the connection")
    # help() shows it too (pydoc reads the signature the same way)
    text = pydoc.render_doc(DtlsConnection, renderer=pydoc.TextDoc())
    assert "insecure_skip_fingerprint_check=False" in text.split("One DTLS association")[0]


def test_completion_built_in_c_matches_the_python_values() -> None:
    client, server = make_pair()
    handshake(client, server)
    for conn, peer in ((client, "server"), (server, "client")):
        done = expect_event(drain_events(conn), events.HandshakeCompleted)
        assert conn.state is ConnectionState.ESTABLISHED
        assert conn.handshake_info is done
        assert conn.max_payload_size > 0
        cert = done.peer_certificate
        assert type(cert) is Certificate and not cert.has_private_key
        assert cert == cached_cert(peer) == Certificate.from_der(cert.der)
        assert done.peer_fingerprint == cached_cert(peer).fingerprint()
        assert cert.fingerprint() == done.peer_fingerprint
        assert isinstance(done.srtp_profile, SrtpProfile)
        assert done.srtp_keys is not None and done.srtp_keys.profile is done.srtp_profile
        assert done == events.HandshakeCompleted(*done._values(done))  # a well-formed record
        # RFC 5764 section 4.2, split as SrtpKeys.from_keying_material does it.
        profile = done.srtp_profile
        material = conn.export_keying_material(
            "EXTRACTOR-dtls_srtp", profile.keying_material_length
        )
        role = Role.CLIENT if conn is client else Role.SERVER
        assert done.srtp_keys == SrtpKeys.from_keying_material(profile, material, role)
    assert client.srtp_keys().mirrors(server.srtp_keys())


@pytest.mark.parametrize("profile", list(SrtpProfile))
def test_completion_splits_every_srtp_profile(profile: SrtpProfile) -> None:
    client, server = make_pair({"srtp_profiles": [profile]}, {"srtp_profiles": [profile]})
    handshake(client, server)
    keys = client.srtp_keys()
    assert keys.profile is profile and keys.mirrors(server.srtp_keys())
    assert len(keys.local_key) == profile.key_length
    assert len(keys.remote_salt) == profile.salt_length


def test_completion_without_srtp() -> None:
    client, server = make_pair({"srtp_profiles": ()}, {"srtp_profiles": ()})
    handshake(client, server)
    done = expect_event(drain_events(client), events.HandshakeCompleted)
    assert done.srtp_profile is None and done.srtp_keys is None


def test_an_ended_connection_has_no_c_address_to_hand_out() -> None:
    client, server = make_pair()
    handshake(client, server)
    now = time.monotonic()
    client.close(now)
    assert client.state is ConnectionState.CLOSED
    assert client._addr == 0 and client._ref is None
    with pytest.raises(InvalidStateError):
        client._c  # noqa: B018
    with pytest.raises(ValueError):
        _openssl.step(client, scratch(), 1, b"\x16\xfe\xfd" + bytes(40), now)
    with pytest.raises(ValueError):
        _openssl.fast_send(client._addr, b"x", [])
    # Every verb still answers as an ended connection does.
    client.receive_datagram(b"\x17\xfe\xfd" + bytes(40), now)
    client.handle_timer(now + 100)
    with pytest.raises(InvalidStateError):
        client.send(b"x", now)
    assert client.stats.datagrams_dropped == 1
    # The peer's close_notify ends the server, which frees its C object too.
    for d in client.datagrams_to_send(now):
        server.receive_datagram(d, now)
    assert server.state is ConnectionState.CLOSED and server._addr == 0


def test_only_the_connection_owns_its_c_object() -> None:
    config = DtlsConfiguration(certificate=cached_cert("client"))
    conn = DtlsConnection(config, role=Role.CLIENT, remote_fingerprints=None)
    conn.connect(time.monotonic())
    # The owner (freed with the connection: test_leak counts the memory) is referenced by the
    # connection alone, so a connection collected in a cycle frees its C object with it.
    assert sys.getrefcount(conn._ref) == sys.getrefcount(conn._out)  # a slot's only
    conn._held = [conn]  # type: ignore[list-item]  # a cycle
    del conn
    assert gc.collect() >= 1


def test_step_refuses_what_is_not_a_connection_or_a_scratch() -> None:
    client, _ = make_pair()
    with pytest.raises(TypeError):
        _openssl.step(object(), scratch(), 0, None, 0.0)
    with pytest.raises(TypeError):
        _openssl.step(client, object(), 0, None, 0.0)
    with pytest.raises(ValueError):
        _openssl.step(client, scratch(), 9, None, 0.0)
    with pytest.raises(TypeError):
        _openssl.conn_free(object())


def test_receive_datagram_by_keyword_takes_the_python_path() -> None:
    client, server = make_pair()
    now = time.monotonic()
    client.connect(now)
    for d in client.datagrams_to_send(now):
        server.receive_datagram(data=d, now=now)
    assert current_state(server) is ConnectionState.HANDSHAKING
    for d in server.datagrams_to_send(now):
        client.receive_datagram(data=d, now=now)
    for _ in range(4):
        for src, dst in ((client, server), (server, client)):
            for d in src.datagrams_to_send(now):
                dst.receive_datagram(d, now=now)
    assert current_state(client) is current_state(server) is ConnectionState.ESTABLISHED


class _CloseOnCollect:
    """Garbage in a cycle that closes a connection when the collector finalizes it, noting the
    connection's state just before (in ``seen``)."""

    def __init__(self, conn: DtlsConnection, now: float, seen: list[ConnectionState]) -> None:
        self.conn, self.now, self.seen, self.me = conn, now, seen, self

    def __del__(self) -> None:
        self.seen.append(current_state(self.conn))
        self.conn.close(self.now)


# Python 3.11 runs the collector where an allocation crosses the threshold, in the middle of C
# code; from 3.12 it runs at the interpreter's next check between bytecodes, which the C
# completion (no Python code in it) never reaches.
COLLECTS_INSIDE_C = sys.version_info < (3, 12)


def test_a_finalizer_that_ends_the_connection_during_completion() -> None:
    """C reads nothing from a C object that Python code, run by the collector in the middle of
    building HandshakeCompleted (its first container: the peer Certificate's dict), may have
    freed: the connection ends as the finalizer closed it, with no HandshakeCompleted. Where
    the collector cannot run there (3.12 and later), it runs just after: the connection
    completes, then ends."""
    client, server = make_pair()
    now = time.monotonic()
    client.connect(now)
    for d in client.datagrams_to_send(now):
        server.receive_datagram(d, now)
    for d in server.datagrams_to_send(now):
        client.receive_datagram(d, now)
    flight = client.datagrams_to_send(now)  # its last datagram completes the server
    for d in flight[:-1]:
        server.receive_datagram(d, now)
    last = flight[-1]
    seen: list[ConnectionState] = []
    old = gc.get_threshold()
    gc.collect()
    _CloseOnCollect(server, now, seen)
    # From here to the Certificate's dict, nothing allocates a container: the collection the
    # threshold forces runs in the middle of the completion.
    gc.set_threshold(1)
    try:
        server.receive_datagram(last, now)
    finally:
        gc.set_threshold(*old)
    gc.collect()  # where it has not run yet
    assert len(seen) == 1
    assert current_state(server) is ConnectionState.CLOSED
    assert server._addr == 0
    assert server.stats.datagrams_dropped == 0  # it was fed, not dropped as an ended one's
    evs = drain_events(server)
    assert isinstance(evs[-1], events.ConnectionTerminated)
    completed = [e for e in evs if isinstance(e, events.HandshakeCompleted)]
    if COLLECTS_INSIDE_C:
        assert seen == [ConnectionState.HANDSHAKING]
        assert completed == []
    else:
        assert seen == [ConnectionState.ESTABLISHED]
        assert len(completed) == 1 and evs.index(completed[0]) < len(evs) - 1
