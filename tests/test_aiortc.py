"""dtls_ossl.aiortc: real aiortc peer connections over loopback, on dtls_ossl and stock aiortc."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest

pytest.importorskip("aiortc")

import aiortc
from aiortc import RTCPeerConnection, rtcpeerconnection
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc_pair import (
    Relay,
    close_all,
    corrupt_fingerprint,
    loopback_only,
    make_pc,
    negotiate,
    open_data_channel,
    roundtrip,
    set_offer_setup,
)

import dtls_ossl.aiortc as dtls_aiortc
from dtls_ossl import Certificate, ConfigurationError, FingerprintMismatchError

T = TypeVar("T")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _loopback() -> Iterator[None]:
    with loopback_only():
        yield
    dtls_aiortc.uninstall()


def run(coro: Awaitable[T], timeout: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def patched(name: str) -> Any:
    """What aiortc.rtcpeerconnection calls by that name now (the patch point)."""
    return getattr(rtcpeerconnection, name)


def dtls_of(pc: RTCPeerConnection) -> Any:
    return pc.sctp.transport if pc.sctp is not None else pc.getTransceivers()[0].receiver.transport


# (offerer on dtls_ossl, answerer on dtls_ossl, offer's a=setup)
PAIRS = [
    pytest.param(True, True, "actpass", id="ours-ours-offerer-server"),
    pytest.param(True, True, "active", id="ours-ours-offerer-client"),
    pytest.param(True, False, "actpass", id="ours-stock-ours-server"),
    pytest.param(True, False, "active", id="ours-stock-ours-client"),
    pytest.param(False, True, "actpass", id="stock-ours-ours-client"),
    pytest.param(False, True, "active", id="stock-ours-ours-server"),
]


@pytest.mark.parametrize(("ours1", "ours2", "setup"), PAIRS)
def test_data_channel_both_ways(ours1: bool, ours2: bool, setup: str) -> None:
    async def main() -> None:
        pc1, pc2 = make_pc(ours1), make_pc(ours2)
        ch1, ch2 = await open_data_channel(
            pc1, pc2, offer_filter=lambda s: set_offer_setup(s, setup)
        )
        t1, t2 = dtls_of(pc1), dtls_of(pc2)
        assert isinstance(t1, RTCDtlsTransport)
        assert (type(t1) is not RTCDtlsTransport) == ours1
        assert (type(t2) is not RTCDtlsTransport) == ours2
        assert t1._role == ("server" if setup == "actpass" else "client")
        assert {t1._role, t2._role} == {"client", "server"}
        assert await roundtrip(ch1, ch2, "ping") == "ping"
        big = "x" * 50_000  # many full-size SCTP packets: every one fits a datagram
        assert await roundtrip(ch2, ch1, big) == big
        await close_all(pc1, pc2)

    run(main())


async def _audio_frames(track: MediaStreamTrack, n: int) -> int:
    for _ in range(n):
        await track.recv()
    return n


@pytest.mark.parametrize(("ours1", "ours2", "setup"), PAIRS[:1] + PAIRS[2:3] + PAIRS[5:6])
def test_audio_frames_decoded_both_ways(ours1: bool, ours2: bool, setup: str) -> None:
    async def main() -> None:
        pc1, pc2 = make_pc(ours1), make_pc(ours2)
        tracks: dict[str, asyncio.Future[MediaStreamTrack]] = {
            "pc1": asyncio.get_running_loop().create_future(),
            "pc2": asyncio.get_running_loop().create_future(),
        }
        pc1.on("track", lambda t: tracks["pc1"].set_result(t))
        pc2.on("track", lambda t: tracks["pc2"].set_result(t))
        pc1.addTrack(AudioStreamTrack())
        await negotiate(
            pc1,
            pc2,
            offer_filter=lambda s: set_offer_setup(s, setup),
            before_answer=lambda: pc2.addTrack(AudioStreamTrack()),
        )
        got1, got2 = await tracks["pc1"], await tracks["pc2"]
        assert await _audio_frames(got1, 5) == 5
        assert await _audio_frames(got2, 5) == 5
        for pc in (pc1, pc2):
            stats = [s for s in (await pc.getStats()).values() if s.type == "transport"]
            assert stats and stats[0].dtlsState == "connected"
            assert stats[0].packetsReceived > 0 and stats[0].packetsSent > 0
        await close_all(pc1, pc2)

    run(main())


def test_srtp_keys_match_across_peers() -> None:
    async def main() -> None:
        pc1, pc2 = make_pc(True), make_pc(True)
        await open_data_channel(pc1, pc2)
        k1 = dtls_of(pc1).dtls_connection.srtp_keys()
        k2 = dtls_of(pc2).dtls_connection.srtp_keys()
        assert k1.profile == k2.profile
        assert (k1.local_key, k1.local_salt) == (k2.remote_key, k2.remote_salt)
        assert (k1.remote_key, k1.remote_salt) == (k2.local_key, k2.local_salt)
        await close_all(pc1, pc2)

    run(main())


@pytest.mark.parametrize("ours1", [True, False], ids=["offerer-ours", "offerer-stock"])
def test_fingerprint_mismatch_fails_inside_the_handshake(ours1: bool) -> None:
    # The answerer (client, on dtls_ossl) is told a wrong fingerprint for the offerer.
    async def main() -> None:
        pc1, pc2 = make_pc(ours1), make_pc(True)
        states: list[str] = []
        pc2.on("connectionstatechange", lambda: states.append(pc2.connectionState))
        pc1.createDataChannel("x")
        await negotiate(pc1, pc2, offer_filter=corrupt_fingerprint)
        t2 = dtls_of(pc2)
        for _ in range(200):
            if t2.state == "failed":
                break
            await asyncio.sleep(0.01)
        assert t2.state == "failed"
        assert "failed" in states
        end = t2.termination
        assert end is not None and isinstance(end.error, FingerprintMismatchError)
        assert t2.dtls_connection.handshake_info is None  # no keys ever came out
        t1 = dtls_of(pc1)
        for _ in range(200):
            if t1.state == "failed":
                break
            await asyncio.sleep(0.01)
        assert t1.state == "failed"  # the bad_certificate alert ended the peer's handshake
        if ours1:
            assert t1.termination.by_peer
        await close_all(pc1, pc2)

    run(main())


def test_state_changes_and_close() -> None:
    async def main() -> None:
        pc1, pc2 = make_pc(True), make_pc(True)
        pc1.createDataChannel("x")
        t1 = dtls_of(pc1)
        seen: list[str] = []
        t1.on("statechange", lambda: seen.append(t1.state))
        await negotiate(pc1, pc2)
        while t1.state != "connected":
            await asyncio.sleep(0.01)
        t2 = dtls_of(pc2)
        while t2.state != "connected":
            await asyncio.sleep(0.01)
        await pc1.close()
        assert t1.state == "closed"
        assert seen == ["connecting", "connected", "closed"]
        # The peer got our close_notify: its transport closes without waiting for ICE.
        for _ in range(200):
            if t2.state == "closed":
                break
            await asyncio.sleep(0.01)
        assert t2.state == "closed"
        assert t2.termination is not None and t2.termination.error is None
        assert t2.termination.by_peer
        await pc2.close()

    run(main())


def test_lossy_relay_connects_within_the_handshake_timeout() -> None:
    # 30% loss of DTLS handshake datagrams each way, 20% of the kept ones reordered.
    times: list[float] = []

    async def one(seed: int) -> float:
        relay = Relay(loss=0.3, seed=seed, reorder=0.2)
        await relay.start()
        pc1, pc2 = make_pc(True), make_pc(True)
        start = time.monotonic()
        ch1, ch2 = await open_data_channel(pc1, pc2, relay=relay)
        took = time.monotonic() - start
        assert await roundtrip(ch1, ch2, "through") == "through"
        await close_all(pc1, pc2)
        relay.close()
        return took

    for seed in range(6):
        times.append(run(one(seed), timeout=30.0))
    assert max(times) < 30.0
    assert statistics.median(times) < 5.0


def test_install_scopes_by_peer_connection_creation() -> None:
    async def main() -> None:
        before = make_pc(False)
        dtls_aiortc.install()
        assert dtls_aiortc.is_installed()
        during = RTCPeerConnection()
        dtls_aiortc.uninstall()
        assert not dtls_aiortc.is_installed()
        after = RTCPeerConnection()
        # Transports are made lazily (here by createDataChannel), after uninstall().
        for pc in (before, during, after):
            pc.createDataChannel("x")
        assert type(dtls_of(before)) is RTCDtlsTransport
        assert type(dtls_of(during)) is not RTCDtlsTransport
        assert type(dtls_of(after)) is RTCDtlsTransport
        await close_all(before, during, after)

    run(main())


def test_uninstall_restores_aiortc_once_no_pc_of_ours_is_left() -> None:
    # aiortc's own classes: a factory left by an earlier test (a pc of ours was alive at its
    # uninstall) is not the original.
    original_cert, original_transport = RTCCertificate, RTCDtlsTransport
    with dtls_aiortc.installed():
        assert patched("RTCCertificate") is not original_cert
    assert patched("RTCCertificate") is original_cert
    import gc

    gc.collect()
    dtls_aiortc.install()
    dtls_aiortc.uninstall()
    assert patched("RTCDtlsTransport") is original_transport
    dtls_aiortc.uninstall()  # twice: nothing to do


def test_installed_restores_the_previous_options() -> None:
    async def main() -> None:
        dtls_aiortc.install(initial_retransmit_timeout=0.5)
        with dtls_aiortc.installed(initial_retransmit_timeout=0.2):
            pc = RTCPeerConnection()
            pc.createDataChannel("x")
            assert dtls_of(pc)._dtls_configuration.initial_retransmit_timeout == 0.2
        assert dtls_aiortc.is_installed()
        pc2 = RTCPeerConnection()
        pc2.createDataChannel("x")
        assert dtls_of(pc2)._dtls_configuration.initial_retransmit_timeout == 0.5
        dtls_aiortc.uninstall()
        await close_all(pc, pc2)

    run(main())


def test_defaults_are_webrtc_timers_and_an_mtu_that_fits_sctp() -> None:
    async def main() -> None:
        dtls_aiortc.install()
        pc = RTCPeerConnection()
        pc.createDataChannel("x")
        config = dtls_of(pc)._dtls_configuration
        assert config.initial_retransmit_timeout == 0.1
        assert config.max_retransmit_timeout == 3.0
        assert config.handshake_timeout == 30.0
        assert config.mtu == dtls_aiortc.DEFAULT_MTU == 1232
        await close_all(pc)

    run(main())


def test_mtu_too_small_for_aiortc_sctp_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="too small for aiortc"):
        dtls_aiortc.install(mtu=1200)
    assert not dtls_aiortc.is_installed()
    dtls_aiortc.install(mtu=1226)  # 1189 + 37: exactly enough
    assert dtls_aiortc.is_installed()


def test_unknown_major_version_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "2.0.0")
    with pytest.raises(dtls_aiortc.AiortcVersionError) as info:
        dtls_aiortc.install()
    message = str(info.value)
    assert "\n" not in message and "aiortc 2.0.0" in message and "1.16.0" in message
    assert not dtls_aiortc.is_installed()
    assert patched("RTCCertificate") is RTCCertificate


def test_supported_versions_include_the_installed_one() -> None:
    assert dtls_aiortc.supported_versions() == ("1.16.0",)
    assert aiortc.__version__ in dtls_aiortc.supported_versions()


def test_check_internals_passes_and_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    dtls_aiortc.check_internals()
    monkeypatch.delattr(RTCDtlsTransport, "_set_state")
    with pytest.raises(dtls_aiortc.AiortcVersionError, match=r"RTCDtlsTransport\._set_state"):
        dtls_aiortc.install()
    assert not dtls_aiortc.is_installed()


def test_check_internals_sees_a_renamed_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if aiortc stopped storing _rx_srtp in RTCDtlsTransport.__init__.
    def init(self: Any, transport: Any, certificates: Any) -> None:
        self._state = None

    monkeypatch.setattr(RTCDtlsTransport, "__init__", init)
    with pytest.raises(dtls_aiortc.AiortcVersionError, match="_rx_srtp"):
        dtls_aiortc.check_internals()


@pytest.mark.parametrize("kind", ["rsa-2048", "aiortc"])
def test_caller_certificate_rsa_or_aiortc(kind: str) -> None:
    async def main() -> None:
        cert: Any = (
            Certificate.generate("rsa-2048")
            if kind != "aiortc"
            else RTCCertificate.generateCertificate()
        )
        pc1 = make_pc(True, certificate=cert)
        pc2 = make_pc(True)
        ch1, ch2 = await open_data_channel(pc1, pc2)
        assert await roundtrip(ch1, ch2, "cert") == "cert"
        info = dtls_of(pc2).dtls_connection.handshake_info
        expected = cert if kind != "aiortc" else dtls_aiortc._as_certificate(cert)
        assert info.peer_certificate == expected
        if kind != "aiortc":
            assert "RSA" in info.cipher
        await close_all(pc1, pc2)

    run(main())


def test_key_log_lines() -> None:
    lines: list[str] = []

    async def main() -> None:
        pc1, pc2 = make_pc(True, key_log=lines.append), make_pc(False)
        await open_data_channel(pc1, pc2)
        await close_all(pc1, pc2)

    run(main())
    assert lines and lines[0].startswith("CLIENT_RANDOM ")


def test_importing_dtls_ossl_does_not_import_aiortc() -> None:
    code = (
        "import sys, dtls_ossl, dtls_ossl.aiortc\n"
        "assert 'aiortc' not in sys.modules, 'aiortc imported'\n"
        "print(dtls_ossl.aiortc.supported_versions())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert "1.16.0" in out.stdout
