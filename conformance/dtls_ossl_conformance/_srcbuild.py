"""Shared checks for the peers that install-peers builds from Debian's source."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from dtls_ossl_conformance._model import Availability
from dtls_ossl_conformance._names import peers_dir

__all__ = ["build_home", "build_problem", "recorded_version"]


def build_home(name: str) -> str:
    """Return the install prefix of the source build of *name* (``<peer cache>/<name>``)."""
    return str(peers_dir() / name)


def build_problem(home: str, files: Sequence[str], install: str) -> Availability | None:
    """Why the source build in *home* cannot run (a *files* entry missing, no stdbuf), or None."""
    missing = [f"{home}/{f}" for f in files if not os.path.exists(f"{home}/{f}")]
    if missing:
        return Availability(False, reason=f"not built: {missing[0]} missing", install=install)
    if shutil.which("stdbuf") is None:
        return Availability(
            False, reason="stdbuf (coreutils) not found", install="apt-get install coreutils"
        )
    return None


def recorded_version(home: str) -> str | None:
    """Return the version recorded in ``<home>/VERSION``, or None if it cannot be read."""
    try:
        with open(f"{home}/VERSION", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None
