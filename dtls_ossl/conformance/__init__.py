"""Conformance: dtls_ossl against independently written DTLS stacks, in both roles.

``dtls-ossl conformance`` (see :mod:`dtls_ossl.cli`) runs the matrix of
:func:`~dtls_ossl.conformance.runner.all_peers`: each peer x our role x SRTP profile x our
certificate type, plus one wrong-fingerprint cell per peer and role. A peer that is not
installed shows up as skipped cells with the command that installs it.
"""

from __future__ import annotations

from dtls_ossl.conformance._model import (
    Availability,
    CellKind,
    CellResult,
    CellSpec,
    Check,
    CheckStatus,
    Status,
)
from dtls_ossl.conformance.runner import DEFAULT_TIMEOUT, all_peers, run_matrix

__all__ = [
    "DEFAULT_TIMEOUT",
    "Availability",
    "CellKind",
    "CellResult",
    "CellSpec",
    "Check",
    "CheckStatus",
    "Status",
    "all_peers",
    "run_matrix",
]
