"""The dtls-ossl command line: cert, fingerprint, demo, and one-line errors.

Most tests call ``main([...])`` in-process with capsys; two run ``python -m dtls_ossl`` in a
subprocess to prove the entry point (and ``-v`` logging, which would otherwise install a
root handler on capsys's stream for the rest of the session).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dtls_ossl import Certificate
from dtls_ossl._demo import describe_datagram
from dtls_ossl.cli import COMMANDS, main

pytestmark = pytest.mark.timeout(60)

WIDTH = 100


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str) -> None:
    assert rc != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dtls-ossl: error: "), err
    assert "Traceback" not in err


def assert_narrow(out: str) -> None:
    """Every line fits WIDTH columns, except the verbatim SDP fingerprint lines."""
    for line in out.splitlines():
        if not line.startswith("a=fingerprint:"):
            assert len(line) <= WIDTH, line


# --------------------------------------------------------------------------------- cert


def test_cert_writes_pem_files_that_load_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    rc, out, err = run(capsys, "cert", "--out-cert", str(cert_path), "--out-key", str(key_path))
    assert rc == 0, err
    cert = Certificate.load(cert_path, key_path)
    assert cert.has_private_key
    assert cert.key_type == "ecdsa-p256"
    assert out == cert.fingerprint("sha-256").sdp_attribute() + "\n"
    assert out.startswith("a=fingerprint:sha-256 ")
    if os.name == "posix":
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_cert_key_type_days_and_algorithm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    rc, out, _ = run(
        capsys,
        "cert",
        "--key-type",
        "rsa-2048",
        "--days",
        "3",
        "--common-name",
        "demo",
        "--algorithm",
        "sha-1",
        "--out-cert",
        str(cert_path),
        "--out-key",
        str(key_path),
    )
    assert rc == 0
    cert = Certificate.load(cert_path, key_path)
    assert cert.key_type == "rsa-2048"
    assert cert.common_name == "demo"
    days = (cert.not_valid_after - cert.not_valid_before).days
    assert days == 4  # notBefore is backdated one day
    assert out == cert.fingerprint("sha-1").sdp_attribute() + "\n"


def test_cert_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    key_path.write_text("precious")
    rc, out, err = run(capsys, "cert", "--out-cert", str(cert_path), "--out-key", str(key_path))
    assert_one_line_error(rc, out, err)
    assert "already exists" in err and "--force" in err
    assert key_path.read_text() == "precious"
    assert not cert_path.exists()  # nothing half-written


def test_cert_force_overwrites_and_tightens_the_key_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    cert_path.write_text("old")
    key_path.write_text("old")
    key_path.chmod(0o644)
    argv = ["cert", "--force", "--out-cert", str(cert_path), "--out-key", str(key_path)]
    rc, out, _ = run(capsys, *argv)
    assert rc == 0
    assert out == Certificate.load(cert_path, key_path).fingerprint().sdp_attribute() + "\n"
    if os.name == "posix":
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_cert_same_file_for_both_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "both.pem")
    rc, out, err = run(capsys, "cert", "--out-cert", path, "--out-key", path)
    assert_one_line_error(rc, out, err)


def test_cert_unwritable_directory_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_path = tmp_path / "k.pem"
    bad = str(tmp_path / "missing" / "c.pem")
    rc, out, err = run(capsys, "cert", "--out-cert", bad, "--out-key", str(key_path))
    assert_one_line_error(rc, out, err)
    assert rc == 1
    assert "No such file or directory" in err
    assert not key_path.exists()


# -------------------------------------------------------------------------- fingerprint


def test_fingerprint_of_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = Certificate.generate()
    cert_pem, _ = cert.to_pem()
    path = tmp_path / "peer.pem"
    path.write_bytes(cert_pem)
    rc, out, _ = run(capsys, "fingerprint", str(path))
    assert rc == 0
    assert out == cert.fingerprint().sdp_attribute() + "\n"
    rc, out, _ = run(capsys, "fingerprint", str(path), "--algorithm", "sha-512")
    assert rc == 0
    assert out == cert.fingerprint("sha-512").sdp_attribute() + "\n"


def test_fingerprint_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "fingerprint", str(tmp_path / "nope.pem"))
    assert_one_line_error(rc, out, err)
    assert rc == 1
    assert "nope.pem" in err


def test_fingerprint_of_something_that_is_not_a_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "junk.pem"
    path.write_text("not a certificate\n" * 5)
    rc, out, err = run(capsys, "fingerprint", str(path))
    assert_one_line_error(rc, out, err)
    assert rc == 1


# --------------------------------------------------------------------------------- demo


def test_demo_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    rc, out, err = run(capsys, "demo", "--seed", "1")
    assert rc == 0, out + err
    assert time.monotonic() - started < 10
    lines = out.splitlines()
    assert lines[-1].startswith("OK: ")
    assert "a=setup:actpass" in out and "a=setup:active" in out
    assert sum(line.startswith("a=fingerprint:sha-256 ") for line in lines) == 2
    for label in ("ClientHello", "ServerHello+Certificate", "ChangeCipherSpec", "Finished"):
        assert label in out
    assert "ApplicationData" in out
    assert out.count("fingerprint verified") == 2
    assert "received 17 bytes: 'hello from client'" in out
    assert "close_notify" in out
    key_rows = [line for line in lines if line.rstrip().endswith("==")]
    assert len(key_rows) == 4  # both keys and both salts mirror
    assert "DROPPED" not in out
    assert_narrow(out)


def test_demo_with_loss_drops_and_retransmits_but_succeeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    rc, out, err = run(capsys, "demo", "--loss", "0.3", "--seed", "1")
    assert rc == 0, out + err
    assert time.monotonic() - started < 10
    assert "DROPPED" in out
    assert "retransmitted its last flight" in out
    assert out.splitlines()[-1].startswith("OK: ")
    assert_narrow(out)


def test_demo_with_reordering_and_duplication(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "demo", "--reorder", "0.5", "--duplicate", "0.5", "--seed", "7")
    assert rc == 0, out + err
    assert "REORDERED" in out
    assert "DUPLICATED" in out


def test_demo_small_mtu_other_profile_and_rsa(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--mtu", "300", "--key-type", "rsa-2048", "--profile", "aes128_cm_sha1_80"]
    rc, out, err = run(capsys, *argv, "--profile", "SRTP_AEAD_AES_256_GCM")
    assert rc == 0, out + err
    assert "Certificate[" in out  # fragmented across datagrams
    assert "SRTP_AES128_CM_SHA1_80" in out
    assert "ECDHE-RSA-" in out
    assert_narrow(out)


def test_demo_256_bit_keys_stay_narrow(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "demo", "--profile", "SRTP_AEAD_AES_256_GCM", "--seed", "1")
    assert rc == 0
    assert "SRTP_AEAD_AES_256_GCM" in out
    assert_narrow(out)


def test_demo_wrong_fingerprint_fails_closed(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "demo", "--wrong-fingerprint", "--seed", "1")
    assert rc == 0, out + err
    assert "FingerprintMismatchError" in out
    assert "bad_certificate" in out
    assert "handshake completed" not in out
    assert "SRTP master keys" not in out
    assert "ApplicationData" not in out
    assert out.splitlines()[-1].startswith("OK: failed closed")
    assert_narrow(out)


def test_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "demo", "--json", "--loss", "0.2", "--seed", "3")
    assert rc == 0
    summary = json.loads(out)
    assert summary["ok"] is True
    assert summary["result"] == "OK"
    assert summary["echo_returned"] is True
    assert summary["keys_mirror"] is True
    client, server = summary["client"], summary["server"]
    for side in (client, server):
        assert side["handshake_completed"] is True
        assert side["fingerprint_verified"] is True
        assert side["protocol_version"] == "DTLSv1.2"
    assert client["cipher"] == server["cipher"]
    assert client["srtp_keys"]["local_key"] == server["srtp_keys"]["remote_key"]
    assert client["srtp_keys"]["remote_salt"] == server["srtp_keys"]["local_salt"]
    assert summary["options"]["seed"] == 3
    assert summary["datagrams"]["sent"] == len([t for t in summary["timeline"] if "carries" in t])


def test_demo_json_wrong_fingerprint(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "demo", "--json", "--wrong-fingerprint")
    assert rc == 0
    summary = json.loads(out)
    assert summary["ok"] is True
    assert summary["expected_outcome"] == "fail-closed"
    assert summary["client"]["error"]["type"] == "FingerprintMismatchError"
    assert summary["client"]["srtp_keys"] is None
    assert summary["server"]["srtp_keys"] is None
    assert summary["keys_mirror"] is False


def test_demo_that_cannot_complete_fails(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    rc, out, _ = run(capsys, "demo", "--loss", "1", "--timeout", "0.5", "--seed", "1")
    assert rc == 1
    assert time.monotonic() - started < 5
    assert out.splitlines()[-1].startswith("FAILED: ")
    assert "HandshakeTimeoutError" in out


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--loss", "2"],
        ["demo", "--loss", "lots"],
        ["demo", "--reorder", "-0.1"],
        ["demo", "--profile", "SRTP_NULL"],
        ["demo", "--profile", "AES128_CM_SHA1_80", "--profile", "SRTP_AES128_CM_SHA1_80"],
        ["demo", "--mtu", "100"],
        ["demo", "--initial-timeout", "0"],
        ["demo", "--initial-timeout", "0.001"],
        ["demo", "--timeout", "-1"],
        ["demo", "--key-type", "dsa"],
        ["cert", "--days", "0"],
        ["fingerprint"],
        ["fingerprint", "x.pem", "--algorithm", "md5"],
        ["nonsense"],
        [],
    ],
)
def test_bad_arguments_give_one_line_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    rc, out, err = run(capsys, *argv)
    assert_one_line_error(rc, out, err)
    assert rc == 2


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for command in COMMANDS:
        assert command.name in out
    rc, out, _ = run(capsys, "demo", "--help")
    assert rc == 0
    assert "--wrong-fingerprint" in out


def test_describe_datagram_labels() -> None:
    def record(ctype: int, epoch: int, body: bytes) -> bytes:
        header = bytes([ctype, 0xFE, 0xFD]) + epoch.to_bytes(2, "big") + bytes(6)
        return header + len(body).to_bytes(2, "big") + body

    def handshake(
        msg_type: int, length: int, frag_off: int = 0, frag_len: int | None = None
    ) -> bytes:
        frag_len = length if frag_len is None else frag_len
        head = bytes([msg_type]) + length.to_bytes(3, "big") + bytes(2)
        return head + frag_off.to_bytes(3, "big") + frag_len.to_bytes(3, "big") + bytes(frag_len)

    assert describe_datagram(record(22, 0, handshake(1, 40))) == "ClientHello"
    flight = record(22, 0, handshake(2, 10)) + record(22, 0, handshake(11, 30))
    flight += record(22, 0, handshake(14, 0))
    assert describe_datagram(flight) == "ServerHello+Certificate+ServerHelloDone"
    assert describe_datagram(record(22, 0, handshake(11, 100, 0, 40))) == "Certificate[0..40/100]"
    ccs = record(20, 0, b"\x01") + record(22, 1, bytes(40))
    assert describe_datagram(ccs) == "ChangeCipherSpec+Finished (encrypted)"
    assert describe_datagram(record(21, 0, b"\x02\x2a")) == "Alert(fatal bad_certificate)"
    assert describe_datagram(record(21, 1, bytes(26))) == "Alert (encrypted)"
    assert describe_datagram(record(23, 1, bytes(30))) == "ApplicationData"
    assert describe_datagram(b"\x16\xfe\xfd") == "?(3 trailing bytes)"
    assert describe_datagram(b"") == "(empty)"


# --------------------------------------------------------------------------- subprocess


def _python_m(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "dtls_ossl", *argv],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        env=env,
        check=False,
    )


def test_python_m_dtls_ossl_demo() -> None:
    proc = _python_m("demo", "--loss", "0.3", "--seed", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("OK: ")
    assert "DROPPED" in proc.stdout
    assert proc.stderr == ""


def test_python_m_verbose_logs_to_stderr_and_errors_have_no_traceback(tmp_path: Path) -> None:
    proc = _python_m("-v", "demo", "--seed", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DEBUG" in proc.stderr
    assert "handshake completed" in proc.stderr
    proc = _python_m("fingerprint", str(tmp_path / "missing.pem"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("dtls-ossl: error: ")
    assert len(proc.stderr.splitlines()) == 1
