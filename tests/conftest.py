from __future__ import annotations

import cffi
import cryptography
import pytest

import dtls_ossl


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"dtls_ossl {dtls_ossl.__version__} on {dtls_ossl.openssl_version()} "
        f"(HAS_DTLS_1_3={dtls_ossl.HAS_DTLS_1_3})",
        f"cffi {cffi.__version__}, cryptography {cryptography.__version__}",
    ]
