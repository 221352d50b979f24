"""Headless Firefox ESR (NSS) as the second WebRTC browser, in a private network namespace.

Same page-posts-results cell as Chromium (:mod:`._browser_cell`), with a fresh profile whose
prefs allow loopback ICE candidates and fake media and turn telemetry and updates off,
``MOZ_DISABLE_NONLOCAL_CONNECTIONS=1``, and a default route over ``lo`` in the namespace.
Firefox 153's ``getStats()`` has transport stats (dtlsState, tlsVersion, dtlsCipher, srtpCipher,
dtlsRole) but no certificate stats, so "the peer saw our certificate" is not applicable; the
keys are proven by decrypting its audio with our ``srtp_keys()``. Its ClientHello offers DTLS
1.3 with an X25519MLKEM768 key share, ~1.46 KB in two fragments.
"""

from __future__ import annotations

from dtls_ossl.webrtc.srtp import SrtpProfile
from dtls_ossl_conformance._names import install_command
from dtls_ossl_conformance.peer_chromium import BrowserPeer

__all__ = ["FirefoxPeer"]


class FirefoxPeer(BrowserPeer):
    """Firefox ESR through an RTCPeerConnection page, in a lo-only network namespace."""

    name = "firefox"
    program = "firefox-esr"
    profiles = tuple(SrtpProfile)
    install = install_command("firefox")
