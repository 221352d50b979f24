"""RFC 8122 §5 fingerprint sets: only the strongest hash offered counts, and its input forms.

Every combination of a correct and a wrong fingerprint at each strength, checked on in-memory
pairs (both roles), through ``set_remote_fingerprints`` (held flight) and through the asyncio
endpoint. A refused certificate must end in FingerprintMismatchError with a fatal
bad_certificate alert, no HandshakeCompleted, no keys and no data.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

import pytest
from helpers import (
    cached_cert,
    drain_events,
    expect_event,
    handshake,
    make_config,
    make_pair,
    transfer,
)

from dtls_ossl import (
    ConfigurationError,
    ConnectionState,
    DtlsConnection,
    FingerprintMismatchError,
    HandshakeError,
    InvalidStateError,
    Role,
    events,
)
from dtls_ossl.webrtc.sdp import (
    FINGERPRINT_PREFERENCE,
    Fingerprint,
    parse_fingerprints,
    select_fingerprints,
)

pytestmark = pytest.mark.timeout(60)

STRENGTHS = ("sha-1", "sha-224", "sha-256", "sha-384", "sha-512")  # weakest first
BAD_CERTIFICATE = 42


def good(algorithm: str, who: str = "server") -> Fingerprint:
    return cached_cert(who).fingerprint(algorithm)


def bad(algorithm: str) -> Fingerprint:
    return cached_cert("other").fingerprint(algorithm)


def expect_pass(fps: list[Fingerprint]) -> bool:
    """The oracle, written independently of the library: strongest algorithm's set decides."""
    top = max(STRENGTHS.index(fp.algorithm) for fp in fps)
    return any(fp == good(fp.algorithm) for fp in fps if STRENGTHS.index(fp.algorithm) == top)


def assert_refused(conn: DtlsConnection) -> FingerprintMismatchError:
    evs = drain_events(conn)
    assert not any(isinstance(e, (events.HandshakeCompleted, events.DataReceived)) for e in evs)
    assert events.AlertSent(2, BAD_CERTIFICATE) in evs, evs
    last = evs[-1]
    assert isinstance(last, events.ConnectionTerminated)
    assert isinstance(last.error, FingerprintMismatchError)
    assert last.error.alert == BAD_CERTIFICATE
    assert conn.state is ConnectionState.FAILED
    assert conn.handshake_info is None
    with pytest.raises(InvalidStateError):
        conn.srtp_keys()
    with pytest.raises(InvalidStateError):
        conn.send(b"x", 0.0)
    return last.error


def run_client_check(fps: list[Fingerprint]) -> DtlsConnection:
    client, server = make_pair(client_expects=fps)
    handshake(client, server)
    return client


# Every pair (first, second) of fingerprints, each correct or wrong, at every strength.
PAIRS = [
    ((a1, ok1), (a2, ok2))
    for (a1, a2) in itertools.product(STRENGTHS, repeat=2)
    for ok1, ok2 in itertools.product((True, False), repeat=2)
]


@pytest.mark.parametrize(
    ("first", "second"), PAIRS, ids=lambda p: f"{p[0]}-{'ok' if p[1] else 'bad'}"
)
def test_every_pair_of_strengths_and_outcomes(
    first: tuple[str, bool], second: tuple[str, bool]
) -> None:
    fps = [good(a) if ok else bad(a) for a, ok in (first, second)]
    client = run_client_check(fps)
    if expect_pass(fps):
        done = drain_events(client)[0]
        assert isinstance(done, events.HandshakeCompleted)
        assert done.peer_fingerprint is not None
        assert done.peer_fingerprint == good(done.peer_fingerprint.algorithm)
        top = max((first[0], second[0]), key=STRENGTHS.index)
        assert done.peer_fingerprint.algorithm == top
    else:
        err = assert_refused(client)
        top = max((first[0], second[0]), key=STRENGTHS.index)
        assert all(e.startswith(top + " ") for e in err.expected)
        assert err.actual == (str(good(top)),)


def test_correct_sha1_with_wrong_sha256_fails_closed() -> None:
    """The issue's case: it used to reach ESTABLISHED, matched on sha-1."""
    client = run_client_check([good("sha-1"), bad("sha-256")])
    err = assert_refused(client)
    assert err.expected == (str(bad("sha-256")),)
    assert "1 weaker-hash fingerprint ignored" in str(err)
    assert "RFC 8122" in str(err)


def test_server_side_applies_the_same_rule() -> None:
    client, server = make_pair(server_expects=[good("sha-1", "client"), bad("sha-512")])
    handshake(client, server)
    assert_refused(server)
    evs = drain_events(client)
    end = expect_event(evs, events.ConnectionTerminated, -1)
    assert isinstance(end.error, HandshakeError) and end.by_peer
    assert events.AlertReceived(2, BAD_CERTIFICATE) in evs


def test_several_of_the_strongest_one_correct_passes() -> None:
    fps = [bad("sha-256"), bad("sha-1"), good("sha-1"), bad("sha-256"), good("sha-256")]
    fps.append(cached_cert("third").fingerprint("sha-256"))
    client = run_client_check(fps)
    done = drain_events(client)[0]
    assert isinstance(done, events.HandshakeCompleted)
    assert done.peer_fingerprint == good("sha-256")


def test_all_of_the_strongest_wrong_fails_even_with_many_correct_weaker() -> None:
    fps = [good("sha-1"), good("sha-224"), good("sha-256"), good("sha-384")]
    fps += [bad("sha-512"), cached_cert("third").fingerprint("sha-512")]
    err = assert_refused(run_client_check(fps))
    assert len(err.expected) == 2
    assert "4 weaker-hash fingerprints ignored" in str(err)


@pytest.mark.parametrize("algorithm", STRENGTHS)
def test_duplicates(algorithm: str) -> None:
    client = run_client_check([good(algorithm), good(algorithm), good("sha-1")])
    assert isinstance(drain_events(client)[0], events.HandshakeCompleted)
    err = assert_refused(run_client_check([bad(algorithm), bad(algorithm)]))
    assert err.expected == (str(bad(algorithm)),) * 2


def test_remote_fingerprints_property_keeps_everything_given() -> None:
    fps = (good("sha-1"), bad("sha-256"))
    client, _ = make_pair(client_expects=fps)
    assert client.remote_fingerprints == fps


@pytest.mark.parametrize(
    ("late", "passes"),
    [
        ([good("sha-1", "client"), bad("sha-256")], False),
        ([bad("sha-1"), good("sha-256", "client")], True),
        ([good("sha-384", "client"), bad("sha-384"), good("sha-224", "client")], True),
        ([good("sha-256", "client"), bad("sha-512")], False),
    ],
)
def test_set_remote_fingerprints_held_flight(late: list[Fingerprint], passes: bool) -> None:
    client, server = make_pair(server_expects=None)
    now = time.monotonic()
    handshake(client, server, now)
    assert [type(e) for e in drain_events(server)] == [events.DatagramsHeld]
    server.set_remote_fingerprints(late, now)
    transfer(server, client, now)
    if passes:
        assert isinstance(drain_events(server)[0], events.HandshakeCompleted)
        assert server.state is ConnectionState.ESTABLISHED
    else:
        assert_refused(server)
        assert client.state is ConnectionState.FAILED


def test_aio_endpoint_applies_the_rule() -> None:
    """The endpoint builds its connections from the same expected list: same selection."""

    async def scenario(fps: list[Fingerprint]) -> BaseException | None:
        from dtls_ossl.aio import DtlsEndpoint

        loop = asyncio.get_running_loop()
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        a.setblocking(False)
        b.setblocking(False)
        ep_a = DtlsEndpoint(make_config(cached_cert("client")))
        ep_b = DtlsEndpoint(make_config(cached_cert("server")))
        ta, _ = await loop.create_datagram_endpoint(lambda: ep_a, sock=a)
        tb, _ = await loop.create_datagram_endpoint(lambda: ep_b, sock=b)
        try:
            client = ep_a.connection_for(b.getsockname(), Role.CLIENT, fps)
            ep_b.connection_for(a.getsockname(), Role.SERVER, [good("sha-256", "client")])
            try:
                await asyncio.wait_for(client.wait_handshake(), 10)
            except Exception as exc:
                return exc
            return None
        finally:
            await ep_a.close(grace=0.1)
            await ep_b.close(grace=0.1)
            ta.close()
            tb.close()

    err = asyncio.run(scenario([good("sha-1"), bad("sha-256")]))
    assert isinstance(err, FingerprintMismatchError), repr(err)
    assert asyncio.run(scenario([bad("sha-1"), good("sha-256")])) is None


# ----------------------------------------------------------------------- selection, parsing


def test_select_fingerprints_order_and_empty() -> None:
    assert FINGERPRINT_PREFERENCE == ("sha-512", "sha-384", "sha-256", "sha-224", "sha-1")
    fps = [good(a) for a in STRENGTHS]
    for i in range(len(STRENGTHS)):
        assert select_fingerprints(fps[: i + 1]) == (fps[i],)
    assert select_fingerprints([]) == ()
    mixed = [good("sha-256"), good("sha-1"), bad("sha-256")]
    assert select_fingerprints(mixed) == (good("sha-256"), bad("sha-256"))


SHA256 = good("sha-256")
COLONS = SHA256.hex


@pytest.mark.parametrize(
    "text",
    [
        f"sha-256 {COLONS}",
        f"sha256 {COLONS}",
        f"SHA256 {COLONS}",
        f"SHA-256 {COLONS}",
        f"Sha-256 {COLONS.lower()}",
        f"SHA256 Fingerprint={COLONS}",
        f"sha256 Fingerprint={COLONS}",
        f"  SHA256 Fingerprint={COLONS.lower()}\n",
        f"a=fingerprint:sha256 {COLONS}",
    ],
)
def test_input_forms_of_sha256(text: str) -> None:
    assert Fingerprint.parse(text) == SHA256
    assert parse_fingerprints([text]) == (SHA256,)


@pytest.mark.parametrize("algorithm", STRENGTHS)
def test_openssl_output_for_each_algorithm(algorithm: str) -> None:
    fp = good(algorithm)
    name = algorithm.replace("-", "").upper()
    assert Fingerprint.parse(f"{name} Fingerprint={fp.hex}") == fp
    assert Fingerprint.parse(f"{name.lower()} Fingerprint={fp.hex}") == fp
    assert Fingerprint(name, fp.value) == fp


@pytest.mark.parametrize(
    "text",
    [
        f"SHA256 Fingerprint={COLONS[:-3]}",  # one byte short
        f"SHA256 Fingerprint={COLONS}:00",  # one byte long
        f"SHA256 Fingerprint={COLONS[:-1]}G",  # not hex
        f"SHA256 Fingerprint={COLONS.replace(':', '')}",  # no colons
        f"SHA1 Fingerprint={COLONS}",  # sha-256 length under sha-1
        "SHA256 Fingerprint=",
        f"SHA256Fingerprint={COLONS}",
        f"MD5 Fingerprint={good('sha-1').hex[:47]}",
        f"md5 {good('sha-1').hex[:47]}",
        f"sha 256 {COLONS}",
        f"sha_256 {COLONS}",
        f"sha3-256 {COLONS}",
        f"SHA256 Fingerprint={COLONS} extra",
    ],
)
def test_input_forms_stay_strict(text: str) -> None:
    with pytest.raises(ConfigurationError):
        Fingerprint.parse(text)
