"""Run aiortc's DTLS on dtls_ossl: ``dtls_ossl.aiortc.install()`` and nothing else changes.

aiortc (the Python WebRTC stack) does its DTLS with pyOpenSSL over a memory BIO. After
:func:`install`, every ``RTCPeerConnection`` created does its DTLS with a
:class:`~dtls_ossl.DtlsConnection` instead: WebRTC retransmission timers (0.1 s doubling to
3 s rather than 1 s to 60 s), datagrams of at most ``mtu`` bytes made of whole records, the SDP
fingerprint checked inside the handshake (a mismatch fails with a ``bad_certificate`` alert
before any key exists), RSA certificates where the caller supplies one, and an NSS key log.

Theory of operation
===================

Rule 1 - one patch point, read at call time. ``aiortc.rtcpeerconnection`` looks its globals
``RTCCertificate`` (in ``RTCPeerConnection.__init__``) and ``RTCDtlsTransport`` (when a
transport is made) up each time. :func:`install` replaces the first with
:class:`DtlsOsslCertificate` and the second with a factory.

Rule 2 - the choice is made per peer connection, when it is created. The certificate a peer
connection generates carries the configuration in force at that moment; the factory gives a
:class:`DtlsOsslTransport` to a connection holding such a certificate and aiortc's own transport
to any other. So :func:`install` and :func:`uninstall` never change a peer connection that
already exists, whichever DTLS it started with.

Rule 3 - aiortc's contract, not its code. The transport subclasses aiortc's
``RTCDtlsTransport`` and keeps everything aiortc's other parts call on it (RTP routing, the
data receiver, ``state`` and ``statechange``, ``getLocalParameters()``, ``_get_stats()``); it
replaces the DTLS half: ``start``, ``stop``, the receive loop, ``_send_data`` and
``_send_rtp``. SRTP sessions are pylibsrtp sessions keyed from our :class:`~dtls_ossl.SrtpKeys`.

Rule 4 - the internals relied on are listed once (:data:`_INTERNALS`) and checked by
:func:`check_internals`, which :func:`install` runs: a changed aiortc fails there with the
missing names, never later inside a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref

from dtls_ossl import events
from dtls_ossl._roles import Role
from dtls_ossl._util import TYPE_CHECKING
from dtls_ossl.configuration import DEFAULT_CIPHERS, DtlsConfiguration
from dtls_ossl.connection import DtlsConnection
from dtls_ossl.exceptions import ConfigurationError, DtlsError, InvalidStateError
from dtls_ossl.webrtc.sdp import Fingerprint
from dtls_ossl.webrtc.srtp import SrtpProfile

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsParameters
    from aiortc.stats import RTCStatsReport

    from dtls_ossl.configuration import KeyLogTarget
    from dtls_ossl.webrtc.certificate import Certificate

__all__ = [
    "DEFAULT_MTU",
    "AiortcVersionError",
    "check_internals",
    "install",
    "installed",
    "is_installed",
    "supported_versions",
    "uninstall",
]

logger = logging.getLogger(__name__)

_SUPPORTED_VERSIONS = ("1.16.0",)
_SUPPORTED_MAJOR = 1

DEFAULT_MTU = 1232
"""Default ``mtu`` for aiortc: the largest UDP payload IPv6 guarantees (1280 - 48 bytes).

aiortc's SCTP sends packets of up to 1189 bytes (``SCTP_MAX_PACKET_LENGTH``), each in one DTLS
record, and an AES-GCM record adds 37 bytes (13 header, 8 nonce, 16 tag): 1226 bytes. WebRTC's
usual 1200 would refuse full-size data-channel packets, so :func:`install` refuses any ``mtu``
below what aiortc's SCTP needs."""

# The worst per-record overhead of the suites we offer by default: AES-GCM (13 + 8 + 16).
_RECORD_OVERHEAD = 37


class AiortcVersionError(DtlsError):
    """The installed aiortc is not one this integration can run on (version or internals)."""


# Every aiortc private name this module relies on, by where it lives. Names set in a method are
# checked among the names that method's code stores or loads (co_names), so nothing is run.
_INTERNALS: dict[str, tuple[str, ...]] = {
    # The patch points: looked up as globals when a peer connection or transport is made.
    "aiortc.rtcpeerconnection:RTCPeerConnection.__init__": ("RTCCertificate",),
    "aiortc.rtcpeerconnection:RTCPeerConnection._RTCPeerConnection__createDtlsTransport": (
        "RTCDtlsTransport",
    ),
    # What RTCDtlsTransport.__init__ sets and the rest of aiortc reads.
    "aiortc.rtcdtlstransport:RTCDtlsTransport.__init__": (
        "encrypted",
        "_data_receiver",
        "_role",
        "_rtp_router",
        "_rx_srtp",
        "_state",
        "_task",
        "_transport",
        "_tx_srtp",
    ),
    "aiortc.rtcdtlstransport:RTCCertificate.__init__": ("_key", "_cert"),
    # The ICE transport's datagram methods (bound in __init__).
    "aiortc.rtcicetransport:RTCIceTransport.__init__": ("_recv", "_send"),
}
# Attributes that must exist on a module or class.
_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "aiortc.rtcpeerconnection": ("RTCCertificate", "RTCDtlsTransport"),
    "aiortc.rtcdtlstransport": ("SRTP_PROFILES", "State", "RTCDtlsTransport", "RTCCertificate"),
    "aiortc.rtcdtlstransport:RTCDtlsTransport": (
        "_set_state",
        "_set_role",
        "_handle_rtp_data",
        "_handle_rtcp_data",
        "getLocalParameters",
        "start",
        "stop",
        "_send_data",
        "_send_rtp",
        "_get_stats",
    ),
    "aiortc.rtcdtlstransport:State": ("NEW", "CONNECTING", "CONNECTED", "CLOSED", "FAILED"),
    "aiortc.rtcsctptransport": ("SCTP_MAX_PACKET_LENGTH",),
    "aiortc.rtp": ("is_rtcp",),
}


def supported_versions() -> tuple[str, ...]:
    """Return the aiortc versions this integration was tested with."""
    return _SUPPORTED_VERSIONS


def _resolve(path: str) -> Any:
    import importlib

    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split(".") if qualname else ():
        obj = getattr(obj, part)
    return obj


def check_internals() -> None:
    """Check that every aiortc private name this integration relies on still exists.

    :raises AiortcVersionError: listing the missing names (aiortc changed).
    :raises ImportError: aiortc is not installed.
    """
    missing: list[str] = []
    for path, names in _ATTRIBUTES.items():
        try:
            obj = _resolve(path)
        except AttributeError:
            missing.append(path)
            continue
        missing.extend(f"{path}.{n}" for n in names if not hasattr(obj, n))
    for path, names in _INTERNALS.items():
        try:
            code = _resolve(path).__code__
        except AttributeError:
            missing.append(path)
            continue
        missing.extend(f"{path} uses {n}" for n in names if n not in code.co_names)
    if missing:
        raise AiortcVersionError(
            f"aiortc {_aiortc_version()} changed what dtls_ossl.aiortc relies on: "
            + ", ".join(missing)
        )


def _aiortc_version() -> str:
    import aiortc

    version: str = getattr(aiortc, "__version__", "unknown")
    return version


def _check_version() -> None:
    version = _aiortc_version()
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) != _SUPPORTED_MAJOR:
        raise AiortcVersionError(
            f"aiortc {version} is not supported by dtls_ossl.aiortc "
            f"(tested with {', '.join(_SUPPORTED_VERSIONS)}); install 'dtls_ossl[aiortc]'"
        )


# ------------------------------------------------------------------------ install state

_installed: DtlsConfiguration | None = None
# The template's certificate was given by the caller (shared by every peer connection) rather
# than generated per peer connection.
_shared_certificate = False
_original_certificate: Any = None
_original_transport: Any = None
# Our certificates still alive: the transport factory stays in place while any is, so that a
# peer connection created before uninstall() keeps dtls_ossl for its later transports.
_live: weakref.WeakSet[Any] = weakref.WeakSet()


def is_installed() -> bool:
    """Return True if peer connections created now do their DTLS with dtls_ossl."""
    return _installed is not None


def install(
    *,
    initial_retransmit_timeout: float = 0.1,
    max_retransmit_timeout: float = 3.0,
    handshake_timeout: float | None = 30.0,
    mtu: int = DEFAULT_MTU,
    key_log: KeyLogTarget | None = None,
    certificate: Certificate | RTCCertificate | None = None,
    ciphers: str = DEFAULT_CIPHERS,
    allow_dtls_1_3: bool = False,
) -> None:
    """Make every ``RTCPeerConnection`` created from now on do its DTLS with dtls_ossl.

    Peer connections that already exist keep the DTLS they were created with. Calling it again
    replaces the options for later peer connections.

    :param initial_retransmit_timeout: first retransmission timeout in seconds (doubling).
    :param max_retransmit_timeout: cap of the doubling, in seconds.
    :param handshake_timeout: give the handshake up after this many seconds (None: never).
    :param mtu: largest datagram, in bytes (UDP payload); see :data:`DEFAULT_MTU`.
    :param key_log: NSS key-log destination (path, text stream or callable), for Wireshark;
        None honours ``SSLKEYLOGFILE``.
    :param certificate: a :class:`~dtls_ossl.Certificate` with its key (ECDSA or RSA) or an
        aiortc ``RTCCertificate``, shared by every peer connection; None generates an ECDSA
        P-256 one per peer connection, as aiortc does.
    :param ciphers: OpenSSL cipher list (DTLS 1.2).
    :param allow_dtls_1_3: negotiate DTLS 1.3 where both sides can.
    :raises ImportError: aiortc is not installed.
    :raises AiortcVersionError: an unsupported aiortc major version, or aiortc's internals
        changed.
    :raises ConfigurationError: an invalid option, or an ``mtu`` too small for aiortc's SCTP.
    """
    global _installed, _shared_certificate, _original_certificate, _original_transport

    _check_version()
    check_internals()
    from aiortc import rtcpeerconnection, rtcsctptransport

    needed = int(rtcsctptransport.SCTP_MAX_PACKET_LENGTH) + _RECORD_OVERHEAD
    if isinstance(mtu, int) and not isinstance(mtu, bool) and mtu < needed:
        raise ConfigurationError(
            f"mtu: {mtu} is too small for aiortc, whose SCTP packets need {needed} bytes "
            f"once in a DTLS record (default {DEFAULT_MTU})"
        )
    template = DtlsConfiguration(
        certificate=_as_certificate(certificate),
        srtp_profiles=_srtp_profiles(),
        mtu=mtu,
        initial_retransmit_timeout=initial_retransmit_timeout,
        max_retransmit_timeout=max_retransmit_timeout,
        handshake_timeout=handshake_timeout,
        ciphers=ciphers,
        allow_dtls_1_3=allow_dtls_1_3,
        key_log=key_log,
    )
    cert_class, transport_class = _classes()
    if _original_certificate is None:
        _original_certificate = getattr(rtcpeerconnection, "RTCCertificate")  # noqa: B009
    if _original_transport is None:
        _original_transport = getattr(rtcpeerconnection, "RTCDtlsTransport")  # noqa: B009

        def transport_factory(transport: Any, certificates: list[Any]) -> Any:
            if certificates and isinstance(certificates[0], cert_class):
                return transport_class(transport, certificates)
            return _original_transport(transport, certificates)

        setattr(rtcpeerconnection, "RTCDtlsTransport", transport_factory)  # noqa: B010
    setattr(rtcpeerconnection, "RTCCertificate", cert_class)  # noqa: B010
    _installed = template
    _shared_certificate = certificate is not None


def uninstall() -> None:
    """Let peer connections created from now on use aiortc's own DTLS again.

    Peer connections created while installed keep dtls_ossl. Does nothing if not installed.
    """
    global _installed, _original_certificate, _original_transport

    if _original_certificate is None:
        return
    from aiortc import rtcpeerconnection

    _installed = None
    setattr(rtcpeerconnection, "RTCCertificate", _original_certificate)  # noqa: B010
    _original_certificate = None
    if not _live and _original_transport is not None:
        setattr(rtcpeerconnection, "RTCDtlsTransport", _original_transport)  # noqa: B010
        _original_transport = None


@contextlib.contextmanager
def installed(**options: Any) -> Iterator[None]:
    """Install with ``options`` (as :func:`install`) for the ``with`` block only.

    On exit the previous state comes back: uninstalled, or installed with the earlier options.
    """
    global _installed, _shared_certificate

    previous, previous_shared = _installed, _shared_certificate
    install(**options)
    try:
        yield
    finally:
        if previous is None:
            uninstall()
        else:
            _installed, _shared_certificate = previous, previous_shared


def _as_certificate(certificate: object) -> Certificate | None:
    from dtls_ossl.webrtc.certificate import Certificate

    if certificate is None or isinstance(certificate, Certificate):
        return certificate
    from aiortc.rtcdtlstransport import RTCCertificate
    from cryptography.hazmat.primitives import serialization

    if isinstance(certificate, RTCCertificate):
        key_der = certificate._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Certificate(certificate._cert.public_bytes(serialization.Encoding.DER), key_der)
    raise ConfigurationError(
        f"certificate: expected a dtls_ossl Certificate or an aiortc RTCCertificate, "
        f"got {type(certificate).__name__}"
    )


def _srtp_profiles() -> tuple[SrtpProfile, ...]:
    """Return aiortc's SRTP profiles (those its libsrtp build has), in aiortc's order."""
    from aiortc.rtcdtlstransport import SRTP_PROFILES

    return tuple(SrtpProfile.from_openssl_name(p.openssl_profile.decode()) for p in SRTP_PROFILES)


def _configuration_for_new_peer() -> DtlsConfiguration:
    template = _installed
    if template is None:  # generateCertificate() called directly while not installed
        return DtlsConfiguration(
            srtp_profiles=_srtp_profiles(),
            mtu=DEFAULT_MTU,
            initial_retransmit_timeout=0.1,
            max_retransmit_timeout=3.0,
        )
    if _shared_certificate:
        return template
    from dtls_ossl.webrtc.certificate import Certificate

    return template.replace(certificate=Certificate.generate())


# -------------------------------------------------------------------- the aiortc classes

_CLASSES: tuple[type[Any], type[Any]] | None = None


def _classes() -> tuple[type[Any], type[Any]]:
    """Build the two aiortc subclasses on first use (they need aiortc imported)."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _build_classes()
    return _CLASSES


def _build_classes() -> tuple[type[Any], type[Any]]:
    import pylibsrtp
    from aiortc import clock, rtcdtlstransport
    from aiortc.rtp import is_rtcp
    from aiortc.stats import RTCStatsReport, RTCTransportStats
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    State = rtcdtlstransport.State
    Policy = pylibsrtp.Policy

    # Without aiortc installed (the optional extra) type checkers see its classes as Any.
    class DtlsOsslCertificate(rtcdtlstransport.RTCCertificate):  # type: ignore[misc, unused-ignore]
        """aiortc's ``RTCCertificate`` carrying the dtls_ossl configuration to use with it."""

        def __init__(self, configuration: DtlsConfiguration) -> None:
            cert = configuration.certificate
            assert cert is not None and cert.private_key_der is not None  # validated
            key: Any = load_der_private_key(cert.private_key_der, None)
            super().__init__(key=key, cert=cert.x509)
            self.configuration = configuration
            _live.add(self)

        @classmethod
        def generateCertificate(cls) -> DtlsOsslCertificate:
            """Make the certificate of a new peer connection, with the installed options."""
            return cls(_configuration_for_new_peer())

    class DtlsOsslTransport(rtcdtlstransport.RTCDtlsTransport):  # type: ignore[misc, unused-ignore]
        """aiortc's ``RTCDtlsTransport`` with a :class:`~dtls_ossl.DtlsConnection` inside."""

        def __init__(self, transport: Any, certificates: list[Any]) -> None:
            super().__init__(transport, certificates)
            self._dtls_configuration: DtlsConfiguration = certificates[0].configuration
            # aiortc's own declaration, repeated for type checkers that cannot see aiortc.
            self._task: asyncio.Future[None] | None = self._task
            self._dtls: DtlsConnection | None = None
            self._termination: events.ConnectionTerminated | None = None
            self._early_data: list[bytes] = []
            self._rx_bytes = 0
            self._rx_packets = 0
            self._tx_bytes = 0
            self._tx_packets = 0

        @property
        def dtls_connection(self) -> DtlsConnection | None:
            """The dtls_ossl connection, once :meth:`start` has made it."""
            return self._dtls

        @property
        def termination(self) -> events.ConnectionTerminated | None:
            """How the DTLS connection ended (its error, who ended it), once it has."""
            return self._termination

        async def start(self, remoteParameters: RTCDtlsParameters) -> None:
            """Run the handshake with the remote fingerprints checked inside it."""
            if self._state != State.NEW:
                raise InvalidStateError(f"DTLS transport is {self.state}, not new")
            if self._role == "auto":
                self._set_role("server" if self.transport.role == "controlling" else "client")
            fingerprints = []
            for f in remoteParameters.fingerprints:
                try:
                    fingerprints.append(Fingerprint.parse(f"{f.algorithm} {f.value}"))
                except ConfigurationError:
                    continue  # an algorithm we do not know: as aiortc, ignore it
            if not fingerprints:
                logger.debug("DTLS(%s) no usable remote fingerprint", self._role)
                self._set_state(State.FAILED)
                return
            role = Role.SERVER if self._role == "server" else Role.CLIENT
            dtls = DtlsConnection(
                self._dtls_configuration, role=role, remote_fingerprints=fingerprints
            )
            self._dtls = dtls
            self._set_state(State.CONNECTING)
            loop = asyncio.get_running_loop()
            if role is Role.CLIENT:
                dtls.connect(loop.time())
            if not await self._handshake(dtls, loop):
                self._set_state(State.FAILED)
                return
            keys = dtls.srtp_keys()
            self._rx_srtp = _session(keys.remote_key + keys.remote_salt, keys.profile, False)
            self._tx_srtp = _session(keys.local_key + keys.local_salt, keys.profile, True)
            self.encrypted = True
            self._set_state(State.CONNECTED)
            self._task = asyncio.ensure_future(self._run(dtls, loop))

        async def _handshake(self, dtls: DtlsConnection, loop: asyncio.AbstractEventLoop) -> bool:
            while True:
                try:
                    await self._flush(dtls, loop)
                except ConnectionError:
                    return False
                for event in dtls.events():
                    if isinstance(event, events.HandshakeCompleted):
                        if event.srtp_keys is None:
                            logger.debug("DTLS(%s) no SRTP profile negotiated", self._role)
                            return False
                    elif isinstance(event, events.DataReceived):
                        self._early_data.append(event.data)
                    elif isinstance(event, events.ConnectionTerminated):
                        self._termination = event
                        logger.debug("DTLS(%s) handshake failed: %s", self._role, event.error)
                        return False
                if dtls.handshake_info is not None:
                    return True
                try:
                    data = await self._receive(dtls, loop)
                except ConnectionError:
                    return False
                if data is not None and 19 < data[0] < 64:
                    dtls.receive_datagram(data, loop.time())

        async def _receive(
            self, dtls: DtlsConnection, loop: asyncio.AbstractEventLoop
        ) -> bytes | None:
            """Return the next datagram (counted), or None once the DTLS timer fired and ran."""
            timer = dtls.get_timer()
            try:
                if timer is None:
                    data: bytes = await self.transport._recv()
                else:
                    wait = max(0.0, timer - loop.time())
                    data = await asyncio.wait_for(self.transport._recv(), wait)
            except asyncio.TimeoutError:
                dtls.handle_timer(loop.time())
                return None
            self._rx_bytes += len(data)
            self._rx_packets += 1
            return data

        async def _flush(self, dtls: DtlsConnection, loop: asyncio.AbstractEventLoop) -> None:
            for datagram in dtls.datagrams_to_send(loop.time()):
                await self.transport._send(datagram)
                self._tx_bytes += len(datagram)
                self._tx_packets += 1

        async def _run(self, dtls: DtlsConnection, loop: asyncio.AbstractEventLoop) -> None:
            try:
                early, self._early_data = self._early_data, []
                for payload in early:
                    if self._data_receiver:
                        await self._data_receiver._handle_data(payload)
                while True:
                    data = await self._receive(dtls, loop)
                    if data is None:
                        await self._flush(dtls, loop)
                        continue
                    first = data[0]
                    if 19 < first < 64:
                        dtls.receive_datagram(data, loop.time())
                        await self._flush(dtls, loop)
                        for event in dtls.events():
                            if isinstance(event, events.DataReceived):
                                if self._data_receiver:
                                    await self._data_receiver._handle_data(event.data)
                            elif isinstance(event, events.ConnectionTerminated):
                                self._termination = event
                                logger.debug("DTLS(%s) ended: %s", self._role, event.error)
                                raise ConnectionError
                    elif 127 < first < 192:
                        await self._receive_srtp(data)
            except ConnectionError:
                for receiver in self._rtp_router.receivers:
                    receiver._handle_disconnect()
            finally:
                self._set_state(State.CLOSED)

        async def _receive_srtp(self, data: bytes) -> None:
            arrival_time_ms = clock.current_ms()
            try:
                if is_rtcp(data):
                    await self._handle_rtcp_data(self._rx_srtp.unprotect_rtcp(data))
                else:
                    plain = self._rx_srtp.unprotect(data)
                    await self._handle_rtp_data(plain, arrival_time_ms=arrival_time_ms)
            except pylibsrtp.Error as exc:
                logger.debug("DTLS(%s) SRTP unprotect failed: %s", self._role, exc)

        async def stop(self) -> None:
            """Stop the transport, sending close_notify if established."""
            if self._task is not None:
                self._task.cancel()
                self._task = None
            dtls = self._dtls
            if dtls is not None and self._state in (State.CONNECTING, State.CONNECTED):
                loop = asyncio.get_running_loop()
                dtls.close(loop.time())
                for event in dtls.events():
                    if isinstance(event, events.ConnectionTerminated):
                        self._termination = event
                with contextlib.suppress(ConnectionError):
                    await self._flush(dtls, loop)

        async def _send_data(self, data: bytes) -> None:
            dtls = self._dtls
            if self._state != State.CONNECTED or dtls is None:
                raise ConnectionError("Cannot send encrypted data, not connected")
            loop = asyncio.get_running_loop()
            dtls.send(data, loop.time())
            await self._flush(dtls, loop)

        async def _send_rtp(self, data: bytes) -> None:
            if self._state != State.CONNECTED:
                raise ConnectionError("Cannot send encrypted RTP, not connected")
            if is_rtcp(data):
                data = self._tx_srtp.protect_rtcp(data)
            else:
                data = self._tx_srtp.protect(data)
            await self.transport._send(data)
            self._tx_bytes += len(data)
            self._tx_packets += 1

        def _get_stats(self) -> RTCStatsReport:
            report = RTCStatsReport()
            report.add(
                RTCTransportStats(
                    timestamp=clock.current_datetime(),
                    type="transport",
                    id=self._stats_id,
                    packetsSent=self._tx_packets,
                    packetsReceived=self._rx_packets,
                    bytesSent=self._tx_bytes,
                    bytesReceived=self._rx_bytes,
                    iceRole=self.transport.role,
                    dtlsState=self.state,
                )
            )
            return report

    def _session(key: bytes, profile: SrtpProfile, outbound: bool) -> Any:
        policy = Policy(
            key=key,
            ssrc_type=Policy.SSRC_ANY_OUTBOUND if outbound else Policy.SSRC_ANY_INBOUND,
            srtp_profile=profile.iana_id,
        )
        # As aiortc: retransmissions (RTX, NACK answers) reuse sequence numbers.
        policy.allow_repeat_tx = True
        policy.window_size = 1024
        return pylibsrtp.Session(policy)

    return DtlsOsslCertificate, DtlsOsslTransport
