"""The seeded lossy, reordering path of the lossy cells, and the ClientHello inspector."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_runner import run

from dtls_ossl._impair import LossyPath as Impairment
from dtls_ossl._records import reassemble_client_hello_untrusted as inspect_client_hello
from dtls_ossl._roles import Role
from dtls_ossl_conformance import CellKind
from dtls_ossl_conformance._model import CellSpec
from dtls_ossl_conformance._peer import KEY_TYPES
from dtls_ossl_conformance.peer_openssl import OpenSSLPeer
from dtls_ossl_conformance.runner import all_peers

HANDSHAKE = b"\x16\xfe\xfd" + bytes(10)


def datagram(n: int) -> bytes:
    return HANDSHAKE + n.to_bytes(4, "big")


def test_first_datagram_each_way_is_lost_and_the_pattern_is_seeded() -> None:
    def pattern(seed: int) -> list[list[bytes]]:
        imp = Impairment(seed, loss=0.25, reorder=0.0)
        return [imp.outbound([datagram(i)], 0.0) for i in range(50)]

    first = pattern(7)
    assert first[0] == []
    assert first == pattern(7)
    assert first != pattern(8)
    lost = sum(not p for p in first)
    assert 5 <= lost <= 25
    imp = Impairment(1, loss=0.0, reorder=0.0)
    assert imp.inbound([datagram(0)], 0.0) == []
    assert imp.inbound([datagram(1)], 0.0) == [datagram(1)]
    assert (imp.inn.dropped, imp.inn.seen) == (1, 2)


def test_first_multi_datagram_batch_is_reversed_once() -> None:
    imp = Impairment(3, loss=0.0, reorder=0.0)
    assert imp.outbound([datagram(0)], 0.0) == []  # always lost
    batch = [datagram(1), datagram(2), datagram(3)]
    assert imp.outbound(batch, 0.0) == batch[::-1]
    assert imp.out.reordered == 2
    assert imp.outbound(batch, 0.0) == batch  # only the first such batch


def test_held_datagram_is_overtaken_or_released_after_its_hold() -> None:
    imp = Impairment(5, loss=0.0, reorder=0.999, max_hold=0.05)
    assert imp.outbound([datagram(0)], 0.0) == []
    assert imp.outbound([datagram(1)], 0.0) == []  # held
    release = imp.next_release()
    assert release is not None and 0.0 < release <= 0.05
    assert imp.due(release - 1e-6) == ([], [])
    assert imp.due(release) == ([datagram(1)], [])
    assert imp.out.delayed == 1

    imp = Impairment(5, loss=0.0, reorder=0.5)
    out = []
    for i in range(40):
        out += imp.outbound([datagram(i)], 0.0)
    assert imp.out.reordered > 0
    assert out != sorted(out)  # something was overtaken
    to_send, _ = imp.stop()
    assert sorted(out + to_send) == [datagram(i) for i in range(1, 40)]
    assert imp.outbound([datagram(99)], 1.0) == [datagram(99)]  # stopped: no impairment


def test_application_data_is_never_lost() -> None:
    imp = Impairment(9, loss=0.99, reorder=0.0)
    app = b"\x17\xfe\xfd" + bytes(10)
    assert imp.outbound([app], 0.0) == [app]
    assert imp.out.seen == 0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="loss"):
        Impairment(1, loss=1.0)


def _client_hello(extensions: bytes) -> bytes:
    body = (
        b"\xfe\xfd"
        + bytes(32)
        + b"\x00"  # session id
        + b"\x00"  # cookie
        + b"\x00\x02\xc0\x2b"
        + b"\x01\x00"
        + len(extensions).to_bytes(2, "big")
        + extensions
    )
    return body


def _records(body: bytes, pieces: int) -> list[bytes]:
    size = -(-len(body) // pieces)
    out = []
    for off in range(0, len(body), size):
        frag = body[off : off + size]
        hs = (
            b"\x01"
            + len(body).to_bytes(3, "big")
            + b"\x00\x00"
            + off.to_bytes(3, "big")
            + len(frag).to_bytes(3, "big")
            + frag
        )
        out.append(b"\x16\xfe\xff" + bytes(8) + len(hs).to_bytes(2, "big") + hs)
    return out


def test_client_hello_inspector_reassembles_fragments_and_reads_versions() -> None:
    versions = b"\x00\x2b\x00\x05\x04\xfe\xfc\xfe\xfd"
    share = b"\x00\x33\x00\x0a\x00\x08\x00\x1d\x00\x04" + bytes(4)
    padding = b"\x00\x15\x05\x00" + bytes(1280)
    body = _client_hello(versions + share + padding)
    first, second = _records(body, 2)
    info = inspect_client_hello([second, first, first])  # out of order, with a duplicate
    assert info is not None and info.complete
    assert (info.length, info.fragments, info.datagrams) == (len(body), 2, 2)
    assert info.versions == [0xFEFC, 0xFEFD] and info.offers_dtls13
    assert info.key_shares == [0x001D]
    assert "2 fragments" in info.describe() and "DTLSv1.3 (fefc)" in info.describe()

    partial = inspect_client_hello([first])
    assert partial is not None and not partial.complete and not partial.offers_dtls13
    assert inspect_client_hello([b"\x17\xfe\xfd" + bytes(20), b"junk"]) is None
    plain = inspect_client_hello(_records(_client_hello(b""), 1))
    assert plain is not None and plain.complete and plain.versions == []
    assert "absent" in plain.describe()


def test_matrix_has_lossy_and_dtls13_hello_cells() -> None:
    peers = {p.name: p for p in all_peers()}
    lossy = [s for p in peers.values() for s in p.cells() if s.kind is CellKind.LOSSY]
    assert {(s.peer, s.role) for s in lossy} >= {
        (name, role) for name in ("openssl", "gnutls") for role in (Role.CLIENT, Role.SERVER)
    }
    assert all(s.key_type == "rsa-2048" for s in lossy)
    hello = [s for p in peers.values() for s in p.cells() if s.kind is CellKind.DTLS13_HELLO]
    assert {s.peer for s in hello} >= {"chromium", "wolfssl"}
    assert all(s.role is Role.SERVER and s.key_type == KEY_TYPES[0] for s in hello)


class LossyOpenSSL(OpenSSLPeer):
    def cells(self) -> list[CellSpec]:
        return [s for s in super().cells() if s.kind is CellKind.LOSSY]


@pytest.mark.interop
@pytest.mark.timeout(90)
@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")
def test_lossy_cells_against_openssl_pass_with_the_impairment_recorded(tmp_path: Path) -> None:
    report, text, doc, _ = run([LossyOpenSSL()], tmp_path)
    assert report.exit_status == 0, text
    assert [c["kind"] for c in doc["cells"]] == ["lossy", "lossy"]
    for cell in doc["cells"]:
        checks = {c["name"]: c for c in cell["checks"]}
        assert checks["impairment"]["status"] == "pass"
        assert "lost" in checks["impairment"]["detail"]
        assert checks["keying_material"]["status"] == "pass"
        assert checks["app_data"]["status"] == "pass"
