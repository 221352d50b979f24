"""The interface of a conformance peer, and the cells it contributes to the matrix."""

from __future__ import annotations

import abc

from dtls_ossl._roles import Role
from dtls_ossl.webrtc.srtp import SrtpProfile
from dtls_ossl_conformance._cell import CellContext, CellOutcome
from dtls_ossl_conformance._model import Availability, CellKind, CellSpec

__all__ = ["KEY_TYPES", "Peer", "UnwiredPeer"]

KEY_TYPES = ("ecdsa-p256", "rsa-2048")
"Our certificate types in the matrix."


class Peer(abc.ABC):
    """One foreign DTLS implementation.

    Subclasses set :attr:`name`, :attr:`profiles` and :attr:`install`, and implement
    :meth:`availability` and :meth:`run`.
    """

    name: str = ""
    "Short name used in ``--peers`` and the report."
    profiles: tuple[SrtpProfile, ...] = ()
    "SRTP profiles the peer supports (one cell each)."
    key_types: tuple[str, ...] = KEY_TYPES
    "Our certificate types the peer accepts."
    roles: tuple[Role, ...] = (Role.CLIENT, Role.SERVER)
    "Our roles against this peer."
    install: str = ""
    "The command that installs the peer."
    cell_timeout_factor: float = 1.0
    "Multiplier of ``--timeout`` for this peer's cells (a browser needs longer)."
    lossy_roles: tuple[Role, ...] = ()
    "Our roles that get a lossy-path cell against this peer."
    offers_dtls13: bool = False
    "Whether the peer's client offers DTLS 1.3: a cell checks our server against its hello."

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Tell whether the peer can run here (cheap; called once per run)."""

    @abc.abstractmethod
    def run(self, ctx: CellContext) -> CellOutcome:
        """Run the cell ``ctx.spec``; raise CellFailure when it cannot go on."""

    def cells(self) -> list[CellSpec]:
        """List the cells of this peer: every role x profile x key type, then wrong fingerprints."""
        out = [
            CellSpec(self.name, role, CellKind.HANDSHAKE, profile, key_type)
            for role in self.roles
            for profile in self.profiles
            for key_type in self.key_types
        ]
        out += [
            CellSpec(self.name, role, CellKind.WRONG_FINGERPRINT, self.profiles[0], KEY_TYPES[0])
            for role in self.roles
        ]
        if self.offers_dtls13 and Role.SERVER in self.roles:
            out.append(
                CellSpec(
                    self.name, Role.SERVER, CellKind.DTLS13_HELLO, self.profiles[0], KEY_TYPES[0]
                )
            )
        if self.lossy_roles:
            # RSA-2048 certificates make the flights span two datagrams, so that reordering
            # inside a flight happens too.
            key = "rsa-2048" if "rsa-2048" in self.key_types else self.key_types[0]
            out += [
                CellSpec(self.name, role, CellKind.LOSSY, self.profiles[0], key)
                for role in self.lossy_roles
            ]
        return out


class UnwiredPeer(Peer):
    """A peer the issue names that this harness does not drive yet: always skipped."""

    def __init__(
        self, name: str, profiles: tuple[SrtpProfile, ...], install: str, note: str
    ) -> None:
        """Describe the peer; ``note`` says what wiring it needs."""
        self.name = name
        self.profiles = profiles
        self.install = install
        self.note = note

    def availability(self) -> Availability:
        """Never available: not yet wired into the harness."""
        return Availability(False, reason=f"not yet wired: {self.note}", install=self.install)

    def run(self, ctx: CellContext) -> CellOutcome:  # pragma: no cover - always skipped
        """Never called."""
        raise NotImplementedError(self.name)

    def cells(self) -> list[CellSpec]:
        """One skipped cell per role: the matrix shows the peer without inventing cells."""
        return [
            CellSpec(self.name, role, CellKind.HANDSHAKE, self.profiles[0], KEY_TYPES[0])
            for role in self.roles
        ]
