"""Run the dtls-ossl command line: ``python -m dtls_ossl``."""

from __future__ import annotations

from dtls_ossl.cli import main

raise SystemExit(main())
