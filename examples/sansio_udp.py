"""Two sans-IO DTLS-SRTP peers over real UDP sockets, driven by one ``selectors`` loop.

What it shows, in the order a WebRTC stack does it:

1. Signalling: each peer formats its ``a=fingerprint`` and ``a=setup`` lines; the other parses
   them (RFC 8122) and derives its DTLS role with ``setup_role`` (RFC 8842): the offerer says
   ``actpass``, the answerer ``active`` and becomes the DTLS client.
2. The sans-IO loop: what arrives on the socket goes into ``receive_datagram``; after every
   input, ``datagrams_to_send`` goes out and the events are drained; ``get_timer()`` is the
   select timeout and ``handle_timer()`` retransmits when it is due.
3. ``HandshakeCompleted`` carries the DTLS-SRTP keys (RFC 5764 §4.2), already split into
   local and remote; they key two pylibsrtp sessions. One RTP packet is protected and sent
   each way over the same socket (RFC 7983: the first byte tells DTLS from RTP) and
   unprotected by the other side, which checks the payload.
4. The client sends close_notify; ``ConnectionTerminated`` is the last event on both sides.

Run it from a checkout (pylibsrtp comes with the ``srtp`` extra)::

    pip install '.[srtp]'
    python examples/sansio_udp.py

Exit status 0 when every step checked out, 1 otherwise.
"""

from __future__ import annotations

import selectors
import socket
import struct
import sys
import time

import pylibsrtp

from dtls_ossl import (
    Certificate,
    DtlsConfiguration,
    DtlsConnection,
    Fingerprint,
    Role,
    SrtpProfile,
    classify,
    events,
    setup_role,
)

DEADLINE = 10.0
"Seconds the whole exchange may take before the example gives up."

Address = tuple[str, int]


def media_from(name: str) -> bytes:
    """Return the payload ``name`` sends in its RTP packet."""
    return f"hello from {name}".encode()


def rtp_packet(ssrc: int, payload: bytes) -> bytes:
    """Return an RTP packet (RFC 3550): version 2, payload type 96, sequence number 1."""
    return struct.pack("!BBHII", 0x80, 96, 1, 0, ssrc) + payload


def local_description(certificate: Certificate, setup: str) -> str:
    """Return the SDP lines DTLS needs from this side: a=fingerprint and a=setup."""
    return f"{certificate.fingerprint().sdp_attribute()}\r\na=setup:{setup}\r\n"


class Peer:
    """One side of the call: a UDP socket, a DtlsConnection, and SRTP once keyed."""

    def __init__(self, name: str, certificate: Certificate, setup: str, remote_sdp: str) -> None:
        """Make the socket, and the connection from our a=setup and the peer's description."""
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.remote: Address = ("127.0.0.1", 0)  # the peer's address: ICE's job, set by main()
        self.expected_media = b""  # what the peer's RTP packet must carry, set by main()
        lines = remote_sdp.splitlines()
        fingerprints = [Fingerprint.parse(x) for x in lines if x.startswith("a=fingerprint:")]
        (remote_setup,) = [x for x in lines if x.startswith("a=setup:")]
        self.role = setup_role(local=setup, remote=remote_setup)  # RFC 8842: active = client
        profiles = [SrtpProfile.AES128_CM_SHA1_80]
        config = DtlsConfiguration(certificate=certificate, srtp_profiles=profiles)
        self.conn = DtlsConnection(config, role=self.role, remote_fingerprints=fingerprints)
        self.srtp: tuple[pylibsrtp.Session, pylibsrtp.Session] | None = None  # (tx, rx)
        self.early_srtp: list[bytes] = []
        self.media_ok = self.ended = False
        self.failure: str | None = None
        print(f"{name}: a=setup:{setup}, peer {remote_setup} -> DTLS {self.role.value}")

    def datagram_received(self, data: bytes, now: float) -> None:
        """Route one datagram by its first byte (RFC 7983): DTLS or SRTP."""
        kind = classify(data)
        if kind == "dtls":
            self.conn.receive_datagram(data, now)  # never raises for what the network sent
            self.pump(now)
        elif kind == "rtp" and self.srtp is None:
            self.early_srtp.append(data)  # SRTP can overtake the last handshake flight
        elif kind == "rtp":
            self.srtp_received(data)

    def pump(self, now: float) -> None:
        """After every input: send what the connection queued, then drain its events."""
        for datagram in self.conn.datagrams_to_send(now):
            self.sock.sendto(datagram, self.remote)
        while (event := self.conn.next_event()) is not None:
            if isinstance(event, events.HandshakeCompleted):
                self.handshake_completed(event)
            elif isinstance(event, events.ConnectionTerminated):
                # Always the last event: the connection takes no more input. Drop the SRTP
                # keys with it; talking again needs a new DtlsConnection and handshake.
                self.ended, self.srtp = True, None
                if event.error is not None:  # e.g. FingerprintMismatchError, a timeout
                    self.fail(f"connection failed: {type(event.error).__name__}: {event.error}")
                else:
                    print(f"{self.name}: closed cleanly by {'peer' if event.by_peer else 'us'}")

    def handshake_completed(self, event: events.HandshakeCompleted) -> None:
        """Key SRTP from the handshake and send one protected RTP packet."""
        keys = event.srtp_keys  # RFC 5764 §4.2, already split into local and remote
        if keys is None:  # no SRTP profile in common: the peer can only do data channels
            self.fail("no SRTP profile was negotiated")
            return
        profile = keys.profile.iana_id  # libsrtp's srtp_profile_t value
        outbound, inbound = pylibsrtp.Policy.SSRC_ANY_OUTBOUND, pylibsrtp.Policy.SSRC_ANY_INBOUND
        tx = pylibsrtp.Policy(key=keys.local_master_key, ssrc_type=outbound, srtp_profile=profile)
        rx = pylibsrtp.Policy(key=keys.remote_master_key, ssrc_type=inbound, srtp_profile=profile)
        self.srtp = (pylibsrtp.Session(tx), pylibsrtp.Session(rx))
        print(
            f"{self.name}: handshake complete: {event.protocol_version} {event.cipher}, "
            f"SRTP {keys.profile.name}, peer {event.peer_fingerprint}"
        )
        packet = rtp_packet(0x1234 if self.role is Role.CLIENT else 0x5678, media_from(self.name))
        self.sock.sendto(self.srtp[0].protect(packet), self.remote)
        for early in self.early_srtp:
            self.srtp_received(early)
        self.early_srtp.clear()

    def srtp_received(self, data: bytes) -> None:
        """Unprotect an SRTP packet and check its payload."""
        if self.srtp is None:
            return
        try:
            payload = self.srtp[1].unprotect(data)[12:]  # after the 12-byte RTP header
        except pylibsrtp.Error as exc:
            self.fail(f"SRTP unprotect failed: {exc}")
            return
        print(f"{self.name}: SRTP packet unprotected, payload {payload!r}")
        self.media_ok = payload == self.expected_media
        if not self.media_ok:
            self.fail(f"expected {self.expected_media!r}")

    def fail(self, why: str) -> None:
        """Record the first failure and say it."""
        self.failure = self.failure or why
        print(f"{self.name}: FAILED: {why}", file=sys.stderr)


def run(peers: list[Peer], selector: selectors.BaseSelector) -> None:
    """Drive the peers with one selectors loop until both connections ended, or DEADLINE."""
    for peer in peers:
        selector.register(peer.sock, selectors.EVENT_READ, peer)
    client = next(p for p in peers if p.role is Role.CLIENT)
    start = time.monotonic()
    client.conn.connect(start)
    client.pump(start)
    while not all(p.ended for p in peers):
        now = time.monotonic()
        if now > start + DEADLINE:
            client.fail(f"not done after {DEADLINE:g} s")
            return
        if all(p.media_ok for p in peers) and not client.ended:
            client.conn.close(now)  # the call is over: close_notify
            client.pump(now)
            continue
        timers = [t for p in peers if (t := p.conn.get_timer()) is not None]
        for key, _ in selector.select(max(0.0, min([*timers, start + DEADLINE]) - now)):
            receiver: Peer = key.data
            receiver.datagram_received(receiver.sock.recv(2048), time.monotonic())
        now = time.monotonic()
        for peer in peers:
            timer = peer.conn.get_timer()
            if timer is not None and timer <= now:
                peer.conn.handle_timer(now)  # retransmits a lost flight, or times out
                peer.pump(now)


def main() -> int:
    """Exchange descriptions, run the call, and report; return the exit status."""
    alice_cert, bob_cert = Certificate.generate(), Certificate.generate()
    offer = local_description(alice_cert, "actpass")  # alice offers
    answer = local_description(bob_cert, "active")  # bob answers: he will be the DTLS client
    alice = Peer("alice", alice_cert, "actpass", remote_sdp=answer)
    bob = Peer("bob", bob_cert, "active", remote_sdp=offer)
    alice.remote, bob.remote = bob.sock.getsockname(), alice.sock.getsockname()
    alice.expected_media, bob.expected_media = media_from("bob"), media_from("alice")
    with selectors.DefaultSelector() as selector, alice.sock, bob.sock:
        run([alice, bob], selector)
    if alice.failure or bob.failure or not (alice.media_ok and bob.media_ok):
        print("FAILED", file=sys.stderr)
        return 1
    print("OK: handshake, SRTP both ways, close_notify")
    return 0


if __name__ == "__main__":
    sys.exit(main())
