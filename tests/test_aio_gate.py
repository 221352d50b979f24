"""AdmissionGate through its own API: injected ``send`` and wall clock, real ClientHellos.

The hellos come from a real client :class:`~dtls_ossl.DtlsConnection`; nothing touches a
socket (the gate only decides and answers).
"""

from __future__ import annotations

import time
from typing import Any

from test_aio import SERVER_FP, client_config

from dtls_ossl import DtlsConnection, Role
from dtls_ossl.aio._admission import AdmissionGate, Verdict, source_key
from dtls_ossl.cookies import CookieVerifier

ADDR = ("192.0.2.7", 40000)
OTHER = ("198.51.100.9", 40000)
WALL = 1_800_000_000.0


class Gate:
    """A gate with recorded output and a wall clock the test sets."""

    def __init__(self, *, cookies: bool = True, **limits: int) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.wall = WALL
        verifier = CookieVerifier(b"s" * 32, rotation_interval=30.0) if cookies else None
        self.gate = AdmissionGate(
            lambda d, a: self.sent.append((d, a)),
            verifier=verifier,
            max_handshakes=limits.get("max_handshakes", 10),
            max_peers=limits.get("max_peers", 10),
            max_per_source=limits.get("max_per_source", 2),
            wall_clock=lambda: self.wall,
        )


def client() -> tuple[DtlsConnection, bytes]:
    conn = DtlsConnection(client_config(), role=Role.CLIENT, remote_fingerprints=[SERVER_FP])
    now = time.monotonic()
    conn.connect(now)
    (hello,) = conn.datagrams_to_send(now)
    return conn, hello


def answer(conn: DtlsConnection, hvr: bytes) -> bytes:
    """The client's hello that carries the cookie of ``hvr``."""
    now = time.monotonic()
    conn.receive_datagram(hvr, now)
    (hello,) = conn.datagrams_to_send(now)
    return hello


def test_gate_answers_a_cookieless_hello_and_accepts_its_cookie() -> None:
    g = Gate()
    conn, hello = client()
    assert g.gate.admit(hello, ADDR, handshakes=0, peers=0) == (Verdict.CONSUMED, 0)
    ((hvr, to),) = g.sent
    assert to == ADDR and hvr[0] == 22 and hvr[13] == 3  # a HelloVerifyRequest
    verdict, hello_id = g.gate.admit(answer(conn, hvr), ADDR, handshakes=0, peers=0)
    assert verdict is Verdict.ACCEPT and isinstance(hello_id, int)
    assert len(g.sent) == 1 and g.gate.hello_verify_sent == 1 and g.gate.cookies_rejected == 0


def test_gate_rejects_a_cookie_from_another_address_or_too_old() -> None:
    g = Gate()
    conn, hello = client()
    g.gate.admit(hello, ADDR, handshakes=0, peers=0)
    with_cookie = answer(conn, g.sent[0][0])
    assert g.gate.admit(with_cookie, OTHER, handshakes=0, peers=0) == (Verdict.CONSUMED, 0)
    assert g.gate.cookies_rejected == 1 and g.sent[-1][1] == OTHER  # a fresh cookie for it
    g.wall = WALL + 120.0  # four rotations later
    assert g.gate.admit(with_cookie, ADDR, handshakes=0, peers=0) == (Verdict.CONSUMED, 0)
    assert g.gate.cookies_rejected == 2 and g.gate.hello_verify_sent == 3


def test_gate_drops_what_is_not_a_first_hello_fragment() -> None:
    g = Gate()
    _, hello = client()
    assert g.gate.admit(b"\x17\xfe\xfd" + bytes(20), ADDR, handshakes=0, peers=0)[0] is (
        Verdict.CONSUMED
    )
    assert g.gate.dropped == 1 and g.sent == []
    assert g.gate.admit(hello[:20], ADDR, handshakes=0, peers=0)[0] is Verdict.CONSUMED
    assert g.gate.dropped == 2 and g.sent == []


def test_gate_limits_drop_new_hellos() -> None:
    g = Gate(cookies=False, max_handshakes=3, max_peers=5, max_per_source=2)
    _, hello = client()
    assert g.gate.admit(hello, ADDR, handshakes=3, peers=0)[0] is Verdict.CONSUMED
    assert g.gate.admit(hello, ADDR, handshakes=0, peers=5)[0] is Verdict.CONSUMED
    assert g.gate.rejected_limit == 2
    g.gate.started(ADDR)
    g.gate.started(("192.0.2.7", 40001))  # same host, other port: same source
    assert g.gate.in_progress_from(ADDR) == 2
    assert g.gate.admit(hello, ADDR, handshakes=2, peers=2)[0] is Verdict.CONSUMED
    assert g.gate.admit(hello, OTHER, handshakes=2, peers=2)[0] is Verdict.ACCEPT
    g.gate.finished(ADDR)
    assert g.gate.admit(hello, ADDR, handshakes=1, peers=1)[0] is Verdict.ACCEPT
    g.gate.finished(ADDR)
    assert g.gate.in_progress_from(ADDR) == 0
    assert g.gate.rejected_limit == 3 and g.sent == []


def test_gate_restart_needs_a_valid_cookie_and_a_new_random() -> None:
    g = Gate()
    conn, hello = client()
    g.gate.admit(hello, ADDR, handshakes=0, peers=0)
    first = answer(conn, g.sent[0][0])
    _, first_id = g.gate.admit(first, ADDR, handshakes=0, peers=0)
    # Established now. Not an epoch-0 hello: the connection's business.
    assert g.gate.restart(b"\x16\xfe\xfd\x00\x01" + bytes(20), ADDR, first_id) == (Verdict.PASS, 0)
    # A late copy of the hello that started the association: dropped.
    assert g.gate.restart(first, ADDR, first_id) == (Verdict.CONSUMED, 0)
    assert g.gate.dropped == 1 and g.gate.restarted == 0
    # The client restarted: a cookie-less hello is answered, its cookie accepted.
    conn2, hello2 = client()
    assert g.gate.restart(hello2, ADDR, first_id) == (Verdict.CONSUMED, 0)
    verdict, new_id = g.gate.restart(answer(conn2, g.sent[-1][0]), ADDR, first_id)
    assert verdict is Verdict.ACCEPT and new_id != first_id
    assert g.gate.restarted == 1 and g.gate.hello_verify_sent == 2


def test_gate_without_cookies_never_restarts() -> None:
    g = Gate(cookies=False)
    _, hello = client()
    assert not g.gate.cookie_exchange
    assert g.gate.restart(hello, ADDR, 0) == (Verdict.PASS, 0)


def test_source_key_groups_ipv6_by_64_and_maps_ipv4() -> None:
    assert source_key(("192.0.2.7", 5000)) == "192.0.2.7"
    assert source_key(("::ffff:192.0.2.7", 5000, 0, 0)) == "192.0.2.7"
    a = source_key(("2001:db8:1:2::1", 5000, 0, 0))
    assert a == source_key(("2001:db8:1:2:ffff::9", 6000, 0, 0))
    assert a != source_key(("2001:db8:1:3::1", 5000, 0, 0))
    assert source_key(("fe80::1%lo", 5000, 0, 1)) == source_key(("fe80::2", 5000, 0, 1))
