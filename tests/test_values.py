"""The Record base: fields declared once, slots, frozen, eq, repr, match_args, pickling."""

from __future__ import annotations

import pickle

import pytest

from dtls_ossl import events
from dtls_ossl._stats import ConnectionStats
from dtls_ossl._util import FrozenInstanceError, Record, private
from dtls_ossl.aio import ServerStats
from dtls_ossl.exceptions import ConfigurationError
from dtls_ossl.webrtc.srtp import SrtpKeys, SrtpProfile


class Point(Record):
    x: int
    y: int = 0
    _cache: object = private(default=None)


class Checked(Record):
    n: int

    def _validate(self) -> None:
        if self.n < 0:
            raise ValueError("n")
        object.__setattr__(self, "n", int(self.n))


def test_record_derives_slots_match_args_and_defaults() -> None:
    assert getattr(Point, "__slots__") == ("x", "y", "_cache")  # noqa: B009 (derived, unseen by mypy)
    assert Point.__match_args__ == ("x", "y")
    p = Point(1)
    assert (p.x, p.y) == (1, 0)
    assert not hasattr(p, "__dict__")


def test_record_is_frozen_eq_hash_repr() -> None:
    p = Point(1, 2)
    with pytest.raises(FrozenInstanceError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del p.x
    assert p == Point(1, 2) and p != Point(2, 1) and hash(p) == hash(Point(1, 2))
    assert repr(p) == "Point(x=1, y=2)"
    match p:
        case Point(1, y):
            assert y == 2
        case _:
            pytest.fail("no match")


def test_record_pickles_and_validates() -> None:
    assert pickle.loads(pickle.dumps(Point(3, 4))) == Point(3, 4)
    with pytest.raises(ValueError, match="n"):
        Checked(-1)
    assert Checked._unchecked(-1).n == -1  # the trusted path skips the hook


def test_alerts_share_one_base_but_stay_distinct() -> None:
    r, s = events.AlertReceived(2, 40), events.AlertSent(2, 40)
    assert r != s and r.name == s.name == "handshake_failure"
    assert events.AlertReceived.__match_args__ == ("level", "description")
    assert pickle.loads(pickle.dumps(r)) == r


def test_stats_one_mechanism() -> None:
    a, b = ServerStats(handshakes_completed=1), ServerStats(handshakes_completed=2, active_peers=1)
    assert (a + b).handshakes_completed == 3 and (a + b).active_peers == 1
    assert (ConnectionStats(1) + ConnectionStats(2)).datagrams_received == 3
    assert ConnectionStats(datagrams_sent=4).as_dict()["datagrams_sent"] == 4
    assert pickle.loads(pickle.dumps(a)) == a


def test_srtp_split_is_one_function() -> None:
    p = SrtpProfile.AES128_CM_SHA1_80
    material = bytes(range(60))
    from dtls_ossl._roles import Role

    c = SrtpKeys.from_keying_material(p, material, Role.CLIENT)
    s = SrtpKeys.from_keying_material(p, material, Role.SERVER)
    assert c.mirrors(s) and c.local_key == material[:16]
    with pytest.raises(ConfigurationError):
        SrtpKeys.from_keying_material(p, material[:-1], Role.CLIENT)


def test_one_handshake_deadline() -> None:
    """The endpoint's deadline is the connection's: set once, seen by get_timer()."""
    import sys

    sys.path.insert(0, "tests")
    from helpers import make_config

    from dtls_ossl import DtlsConnection, HandshakeTimeoutError, Role

    conn = DtlsConnection(make_config(handshake_timeout=None), role=Role.SERVER)
    assert conn.get_timer() is None
    conn.set_handshake_timeout(5.0, now=100.0)
    assert conn.get_timer() == 105.0
    conn.handle_timer(105.0)
    ev = conn.events()
    assert isinstance(ev[-1], events.ConnectionTerminated)
    assert isinstance(ev[-1].error, HandshakeTimeoutError)
