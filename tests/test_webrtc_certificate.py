from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dtls_ossl.exceptions import ConfigurationError, InvalidStateError
from dtls_ossl.webrtc.certificate import KEY_TYPES, Certificate
from dtls_ossl.webrtc.sdp import Fingerprint


@pytest.fixture(scope="module")
def p256() -> Certificate:
    return Certificate.generate()


@pytest.fixture(scope="module")
def rsa2048() -> Certificate:
    return Certificate.generate("rsa-2048")


def test_certificate_key_types_constant() -> None:
    assert KEY_TYPES == ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-4096")


def test_certificate_generate_p256_defaults(p256: Certificate) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    assert p256.key_type == "ecdsa-p256"
    assert p256.has_private_key
    assert p256.private_key_der is not None
    assert p256.x509.version is x509.Version.v3
    assert isinstance(p256.x509.signature_hash_algorithm, hashes.SHA256)
    assert p256.x509.subject == p256.x509.issuer
    assert len(p256.common_name) == 16
    int(p256.common_name, 16)  # random hex


def test_certificate_generate_rsa2048(rsa2048: Certificate) -> None:
    from cryptography.hazmat.primitives import hashes

    assert rsa2048.key_type == "rsa-2048"
    assert rsa2048.has_private_key
    assert isinstance(rsa2048.x509.signature_hash_algorithm, hashes.SHA256)


def test_certificate_generate_p384() -> None:
    assert Certificate.generate("ecdsa-p384").key_type == "ecdsa-p384"


@pytest.mark.parametrize("fixture", ["p256", "rsa2048"])
def test_certificate_generate_validity_backdated(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    cert: Certificate = request.getfixturevalue(fixture)
    now = datetime.now(timezone.utc)
    slack = timedelta(minutes=5)  # module-scoped fixture: generated a little earlier
    assert cert.not_valid_before.tzinfo is not None
    assert cert.not_valid_after.tzinfo is not None
    assert abs(cert.not_valid_before - (now - timedelta(days=1))) < slack
    assert abs(cert.not_valid_after - (now + timedelta(days=30))) < slack
    assert cert.not_valid_after - cert.not_valid_before == timedelta(days=31)


def test_certificate_generate_custom_cn_and_validity() -> None:
    cert = Certificate.generate(common_name="alice", validity_days=2)
    assert cert.common_name == "alice"
    assert cert.not_valid_after - cert.not_valid_before == timedelta(days=3)


def test_certificate_generate_random_cn_differs(p256: Certificate) -> None:
    other = Certificate.generate()
    assert other.common_name != p256.common_name
    assert other != p256
    assert other.x509.serial_number != p256.x509.serial_number


@pytest.mark.parametrize("key_type", ["ed25519", "rsa-3072", "ECDSA-P256", ""])
def test_certificate_generate_rejects_unknown_key_type(key_type: str) -> None:
    with pytest.raises(ConfigurationError, match="unsupported key type"):
        Certificate.generate(key_type)


@pytest.mark.parametrize("days", [0, -1])
def test_certificate_generate_rejects_bad_validity(days: int) -> None:
    with pytest.raises(ConfigurationError, match="validity_days"):
        Certificate.generate(validity_days=days)


def test_certificate_generate_rejects_bad_common_name() -> None:
    with pytest.raises(ConfigurationError, match="invalid common name"):
        Certificate.generate(common_name="")


@pytest.mark.parametrize("fixture", ["p256", "rsa2048"])
def test_certificate_pem_round_trip(fixture: str, request: pytest.FixtureRequest) -> None:
    cert: Certificate = request.getfixturevalue(fixture)
    cert_pem, key_pem = cert.to_pem()
    assert cert_pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert cert_pem == cert.cert_pem()
    loaded = Certificate.from_pem(cert_pem, key_pem)
    assert loaded.der == cert.der
    assert loaded.private_key_der == cert.private_key_der
    assert loaded.fingerprint() == cert.fingerprint()
    assert loaded == cert
    assert hash(loaded) == hash(cert)
    from_str = Certificate.from_pem(cert_pem.decode(), key_pem.decode())
    assert from_str.der == cert.der


def test_certificate_pem_matches_cryptography_output(p256: Certificate) -> None:
    from cryptography.hazmat.primitives import serialization

    assert p256.cert_pem() == p256.x509.public_bytes(serialization.Encoding.PEM)


def test_certificate_from_pem_encrypted_key(p256: Certificate) -> None:
    from cryptography.hazmat.primitives import serialization

    assert p256.private_key_der is not None
    key = serialization.load_der_private_key(p256.private_key_der, None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    loaded = Certificate.from_pem(p256.cert_pem(), encrypted, password=b"secret")
    assert loaded.private_key_der == p256.private_key_der
    with pytest.raises(ConfigurationError, match="unreadable private key PEM"):
        Certificate.from_pem(p256.cert_pem(), encrypted)
    with pytest.raises(ConfigurationError, match="unreadable private key PEM"):
        Certificate.from_pem(p256.cert_pem(), encrypted, password=b"wrong")


def test_certificate_from_pem_mismatched_key(p256: Certificate, rsa2048: Certificate) -> None:
    other_p256 = Certificate.generate()
    for cert, key_source in ((p256, rsa2048), (p256, other_p256)):
        with pytest.raises(ConfigurationError, match="does not belong to the certificate"):
            Certificate.from_pem(cert.cert_pem(), key_source.to_pem()[1])


@pytest.mark.parametrize(
    "garbage", [b"", b"not a pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]
)
def test_certificate_from_pem_garbage_cert(garbage: bytes | str) -> None:
    with pytest.raises(ConfigurationError, match="unreadable certificate PEM") as info:
        Certificate.from_pem(garbage)
    assert "\n" not in str(info.value)


def test_certificate_from_pem_garbage_key(p256: Certificate) -> None:
    with pytest.raises(ConfigurationError, match="unreadable private key PEM") as info:
        Certificate.from_pem(p256.cert_pem(), b"-----BEGIN PRIVATE KEY-----\nAA==\n")
    assert "\n" not in str(info.value)


def test_certificate_from_der_has_no_key(p256: Certificate) -> None:
    peer = Certificate.from_der(p256.der)
    assert not peer.has_private_key
    assert peer.private_key_der is None
    assert peer == p256
    assert peer.common_name == p256.common_name
    assert peer.key_type == "ecdsa-p256"
    assert peer.cert_pem() == p256.cert_pem()
    with pytest.raises(InvalidStateError, match="no private key"):
        peer.to_pem()


def test_certificate_from_der_is_lazy_about_validation() -> None:
    junk = Certificate.from_der(b"\x30\x03\x02\x01\x00")
    assert junk.fingerprint() == Fingerprint.from_der(b"\x30\x03\x02\x01\x00")
    with pytest.raises(ConfigurationError, match="malformed certificate DER"):
        junk.x509  # noqa: B018
    assert "<malformed>" in repr(junk)
    with pytest.raises(ConfigurationError, match="empty"):
        Certificate.from_der(b"")


def test_certificate_fingerprint_is_sha256_of_der(p256: Certificate) -> None:
    fp = p256.fingerprint()
    assert fp.algorithm == "sha-256"
    assert fp.value == hashlib.sha256(p256.der).digest()
    assert fp.matches(p256.der)
    assert p256.fingerprint("sha-512").value == hashlib.sha512(p256.der).digest()
    assert p256.fingerprint("SHA-1") == Fingerprint.from_der(p256.der, "sha-1")
    assert p256.fingerprint() is p256.fingerprint()  # cached
    with pytest.raises(ConfigurationError, match="unknown fingerprint algorithm"):
        p256.fingerprint("md4")


def test_certificate_repr_shows_cn_and_fingerprint_not_key(p256: Certificate) -> None:
    text = repr(p256)
    assert p256.common_name in text
    assert str(p256.fingerprint()) in text
    assert p256.private_key_der is not None
    assert p256.private_key_der.hex() not in text.lower()
    assert "PRIVATE KEY" not in text


def test_certificate_equality_ignores_key_and_other_types(p256: Certificate) -> None:
    assert p256 == Certificate.from_der(p256.der)
    assert p256 != p256.der
    assert {p256, Certificate.from_der(p256.der)} == {p256}


def test_certificate_load_from_files(p256: Certificate, tmp_path: Path) -> None:
    cert_pem, key_pem = p256.to_pem()
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    loaded = Certificate.load(cert_file, key_file)
    assert loaded.der == p256.der
    assert loaded.private_key_der == p256.private_key_der
    assert Certificate.load(str(cert_file)).has_private_key is False


def test_certificate_load_missing_file(p256: Certificate, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigurationError, match="cannot read certificate file") as info:
        Certificate.load(missing)
    assert "nope.pem" in str(info.value)
    cert_file = tmp_path / "cert.pem"
    cert_file.write_bytes(p256.cert_pem())
    with pytest.raises(ConfigurationError, match="cannot read private key file"):
        Certificate.load(cert_file, missing)


def test_certificate_load_names_unparseable_file(p256: Certificate, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    with pytest.raises(ConfigurationError, match=r"unreadable certificate file .*bad\.pem"):
        Certificate.load(bad)
    cert_file = tmp_path / "cert.pem"
    cert_file.write_bytes(p256.cert_pem())
    with pytest.raises(ConfigurationError, match=r"unreadable private key file .*bad\.pem"):
        Certificate.load(cert_file, bad)


def test_certificate_import_does_not_load_cryptography() -> None:
    # dtls_ossl/__init__.py belongs to the core; only what the webrtc package adds is checked.
    code = (
        "import sys, dtls_ossl\n"
        "before = {m for m in sys.modules if m.startswith('cryptography')}\n"
        "import dtls_ossl.webrtc\n"
        "from dtls_ossl.webrtc import Certificate\n"
        "Certificate.from_der(b'0123').fingerprint()\n"
        "after = {m for m in sys.modules if m.startswith('cryptography')}\n"
        "print(sorted(after - before))\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    assert result.stdout.strip() == "[]"


def test_certificate_generate_rejects_huge_validity() -> None:
    with pytest.raises(ConfigurationError, match="too large"):
        Certificate.generate(validity_days=10**9)
