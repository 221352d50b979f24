"""``python -m dtls_ossl_conformance``: the ``dtls-ossl-conformance`` command."""

from __future__ import annotations

from dtls_ossl_conformance.cli import console_main

if __name__ == "__main__":
    console_main()
