"""Conformance: dtls_ossl against independently written DTLS stacks, in both roles.

``dtls-ossl-conformance`` (:mod:`dtls_ossl_conformance.cli`; ``dtls-ossl conformance`` is an
alias) runs the matrix of :func:`~dtls_ossl_conformance.runner.all_peers`: each peer x our role
x SRTP profile x our certificate type, plus one wrong-fingerprint cell per peer and role. A peer
that is not installed shows up as skipped cells with the command that installs it.
"""

from __future__ import annotations

from dtls_ossl_conformance._model import (
    Availability,
    CellKind,
    CellResult,
    CellSpec,
    Check,
    CheckStatus,
    Status,
)
from dtls_ossl_conformance.runner import DEFAULT_TIMEOUT, all_peers, run_matrix

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
