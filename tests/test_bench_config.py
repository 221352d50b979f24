"""The benchmark's C baseline does exactly dtls_ossl's protocol work (issue 8, section 3).

One short handshake run of each (the C baseline given the library's configuration, and
dtls_ossl), then the two reports are compared as benchmarks/handshake.py compares them before it
prints any ratio. Catches drift: an option the library adds, a cipher or group list change, a
session cache or ticket setting, a different SRTP profile or certificate.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
TIMEOUT = 120  # seconds per subprocess: a compile, or 3 + 20 warm-up handshakes

pytestmark = [
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not found: no C baseline"),
    pytest.mark.skipif(
        shutil.which("pkg-config") is None, reason="pkg-config not found: no C baseline"
    ),
]


def _load_common() -> Any:
    # benchmarks/ is a directory of scripts, not a package: load _common as they do.
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("_common", BENCH / "_common.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["_common"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def common() -> Any:
    return _load_common()


@pytest.fixture(scope="module")
def runs(common: Any) -> dict[str, Any]:
    """C's CONFIG, and one short handshake run of C and of dtls_ossl."""
    try:
        exe = common.build_c_baseline()
    except common.BenchError as exc:  # e.g. no libssl-dev: the benchmark says the same
        pytest.skip(str(exc))
    peer = [sys.executable, str(BENCH / "_dtls_ossl_peer.py")]
    config = common.library_config(peer)
    c_out = common.run_kv([str(exe), *config, "handshake", "3"], timeout=TIMEOUT)
    d_out = common.run_kv([*peer, "handshake", "3"], timeout=TIMEOUT)
    return {"config": config, "exe": exe, "peer": peer, "c": c_out, "dtls_ossl": d_out}


def _flag(config: list[str], name: str) -> str:
    return config[config.index(name) + 1]


def test_config_comes_from_the_library(runs: dict[str, Any]) -> None:
    from helpers import openssl_constant

    from dtls_ossl.configuration import DEFAULT_CIPHERS, DEFAULT_GROUPS

    config = runs["config"]
    options = int(_flag(config, "--options"), 16)
    for name in (
        "SSL_OP_NO_TICKET",
        "SSL_OP_NO_RENEGOTIATION",
        "SSL_OP_NO_QUERY_MTU",
        "SSL_OP_CIPHER_SERVER_PREFERENCE",
    ):
        bit = openssl_constant(name)
        assert options & bit == bit
    assert int(_flag(config, "--session-cache-mode"), 16) == openssl_constant("SSL_SESS_CACHE_OFF")
    assert _flag(config, "--ciphers") == DEFAULT_CIPHERS
    assert _flag(config, "--groups") == DEFAULT_GROUPS
    assert _flag(config, "--srtp-profiles") == "SRTP_AES128_CM_SHA1_80"
    assert _flag(config, "--mtu") == "1200"
    assert _flag(config, "--max-version") == "DTLSv1.2"


def test_c_and_dtls_ossl_report_identical_work(common: Any, runs: dict[str, Any]) -> None:
    c = common.report_of(runs["c"])
    d = common.report_of(runs["dtls_ossl"])
    assert common.compare_reports({common.C: c, common.DTLS_OSSL: d}) == {common.DTLS_OSSL: []}
    # The values the issue names, as both sides reported them.
    for side in ("client.", "server."):
        assert d[side + "version"] == "DTLSv1.2"
        assert d[side + "cipher"] == "ECDHE-ECDSA-AES128-GCM-SHA256"
        assert d[side + "group"] == "x25519"
        assert d[side + "extms"] == "1"
        assert d[side + "srtp_profile"] == "SRTP_AES128_CM_SHA1_80"
        assert d[side + "ticket"] == "0"
        assert d[side + "session_cache_mode"] == "0x0"
        assert d[side + "sessions_cached"] == "0"  # after 24 handshakes on each context
        assert d[side + "peer_key"] == "EC P-256"
        assert d[side + "fingerprint_check"] == "sha-256 of the peer certificate DER, compared"
        assert d[side + "own_cert_shape"] == (
            "v3, 0 extensions, self-issued 1, CN 16 chars, serial <= 20 bytes, valid 31 days"
        )
        # Same flights: the same number of datagrams each way (bytes vary by a few: ECDSA).
        assert int(d[side + "handshake_datagrams_sent"]) > 0
        assert (
            abs(int(d[side + "handshake_bytes_sent"]) - int(c[side + "handshake_bytes_sent"])) < 16
        )
    assert d["server.shared_groups"] == "x25519:secp256r1:secp384r1"


def test_drift_is_refused(common: Any, runs: dict[str, Any]) -> None:
    # The baseline as it was before issue 8: tickets and the server session cache on.
    config = list(runs["config"])
    i = config.index("--options")
    config[i + 1] = hex(int(config[i + 1], 16) & ~0x4000)  # SSL_OP_NO_TICKET
    config[config.index("--session-cache-mode") + 1] = "0x2"  # SSL_SESS_CACHE_SERVER
    out = common.run_kv([str(runs["exe"]), *config, "handshake", "3"], timeout=TIMEOUT)
    c = common.report_of(out)
    assert c["client.ticket"] == "1"
    assert c["client.ticket_lifetime_hint"] == "7200"
    # OpenSSL caches no server session when it verifies the peer and has no session id
    # context (ssl_update_cache), so the cache mode alone changes no work here: the check still
    # compares the mode, and would see sessions_cached move if a session id context appeared.
    assert c["server.sessions_cached"] == "0"
    reports = {common.C: c, common.DTLS_OSSL: common.report_of(runs["dtls_ossl"])}
    diffs = common.compare_reports(reports)[common.DTLS_OSSL]
    for key in ("options", "session_cache_mode", "ticket", "ticket_lifetime_hint"):
        assert f"client.{key}" in diffs
    assert "server.session_cache_mode" in diffs

    c_impl = common.Impl(common.C, [str(runs["exe"])])
    d_impl = common.Impl(common.DTLS_OSSL, runs["peer"])
    jobs = [
        common.Job(common.C, c_impl, [], "x", values=[1.0], report=c),
        common.Job(
            common.DTLS_OSSL, d_impl, [], "x", values=[1.0], report=reports[common.DTLS_OSSL]
        ),
    ]
    unlike, refusal = common.like_for_like(jobs)
    assert unlike == []
    assert refusal.startswith("refusing to print ratios to C: C and dtls_ossl did not do the")
    assert "client.ticket" in refusal


def test_c_baseline_refuses_to_run_without_the_library_config(runs: dict[str, Any]) -> None:
    import subprocess

    proc = subprocess.run(
        [str(runs["exe"]), "handshake", "1"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert proc.returncode == 2
    assert "every CONFIG option is required" in proc.stderr
