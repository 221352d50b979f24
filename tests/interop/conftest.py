"""Interop fixtures: certificates per key type, and the ``interop`` marker for this folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtls_ossl import Certificate

from .udp_driver import Certificates

_HERE = Path(__file__).parent.resolve()

KEY_TYPES = ("ecdsa-p256", "rsa-2048")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected under tests/interop with ``interop``."""
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def certificates() -> Certificates:
    """Two certificates (ours, the peer's) per key type, made once: RSA keygen is slow."""
    return {kt: (Certificate.generate(kt), Certificate.generate(kt)) for kt in KEY_TYPES}


@pytest.fixture(params=KEY_TYPES)
def our_key_type(request: pytest.FixtureRequest) -> str:
    """Each key type for our certificate in turn."""
    kt: str = request.param
    return kt


@pytest.fixture(params=KEY_TYPES)
def peer_key_type(request: pytest.FixtureRequest) -> str:
    """Each key type for the peer's certificate in turn (mixed pairs included)."""
    kt: str = request.param
    return kt


@pytest.fixture
def our_certificate(certificates: Certificates, our_key_type: str) -> Certificate:
    """Our own certificate."""
    return certificates[our_key_type][0]


@pytest.fixture
def peer_certificate(certificates: Certificates, peer_key_type: str) -> Certificate:
    """The independent peer's certificate."""
    return certificates[peer_key_type][1]
