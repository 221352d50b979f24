"""Every parser of peer bytes: DTLS records, handshake fragment headers, the ClientHello.

Theory of operation. Everything here reads bytes that a stranger chose, so every function that
parses them carries the ``_untrusted`` suffix and cannot fail: malformed input gives ``None``,
or (for the splitters) the items that were well formed plus the offset where parsing stopped.
No exception escapes on any input; a hypothesis test (``tests/test_records.py``) holds every
function here to that. Bounds are checked before a field is read, and a length that points past
what was received ends the parse rather than being clipped, so a caller never acts on a field
that was not really sent.

The wire layouts (RFC 6347):

- record header, 13 bytes (§4.1): type(1) version(2) epoch(2) sequence_number(6) length(2);
- handshake header, 12 bytes (§4.2.2): msg_type(1) length(3) message_seq(2)
  fragment_offset(3) fragment_length(3);
- ClientHello body (§4.2.1): client_version(2) random(32) session_id<0..32> cookie<0..255>
  cipher_suites<2..2^16-2> compression_methods<1..2^8-1> extensions<0..2^16-1>.

Users: :mod:`dtls_ossl.connection` (which first flight it may feed), :mod:`dtls_ossl.cookies`
and the asyncio admission gate (the first ClientHello fragment), the demo's record printer and
the conformance harness (a whole ClientHello reassembled from its fragments).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple, TypeVar

from dtls_ossl._util import final

__all__ = [
    "ALERT",
    "APPLICATION_DATA",
    "CHANGE_CIPHER_SPEC",
    "CLIENT_HELLO",
    "HANDSHAKE",
    "HANDSHAKE_HEADER",
    "HANDSHAKE_TYPES",
    "HELLO_VERIFY_REQUEST",
    "RECORD_HEADER",
    "ClientHelloInfo",
    "HandshakeFragment",
    "Record",
    "first_handshake_type_untrusted",
    "is_client_hello_untrusted",
    "may_feed_untrusted",
    "parse_client_hello_untrusted",
    "parse_handshake_fragment_untrusted",
    "parse_record_untrusted",
    "reassemble_client_hello_untrusted",
    "split_handshake_untrusted",
    "split_records_untrusted",
]

RECORD_HEADER = 13
"Bytes of a DTLS 1.0/1.2 record header."
HANDSHAKE_HEADER = 12
"Bytes of a DTLS handshake message (fragment) header."

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23

CLIENT_HELLO = 1
HELLO_VERIFY_REQUEST = 3

_SUPPORTED_GROUPS = 10
_SUPPORTED_VERSIONS = 43
_KEY_SHARE = 51

# A ClientHello declaring more than this is not reassembled: real ones stay under 16 KiB
# (a post-quantum key share is about 1.2 KB), and the declared length sizes the buffer.
_MAX_HELLO = 1 << 17

_VERSION_NAMES = {0xFEFC: "DTLSv1.3", 0xFEFD: "DTLSv1.2", 0xFEFF: "DTLSv1.0"}
_GROUP_NAMES = {
    0x0017: "P-256",
    0x0018: "P-384",
    0x0019: "P-521",
    0x001D: "X25519",
    0x001E: "X448",
    0x0100: "ffdhe2048",
    0x11EC: "X25519MLKEM768",
    0x6399: "X25519Kyber768Draft00",
}


# The names of the DTLS 1.2 handshake message types, for people reading a trace.
HANDSHAKE_TYPES: dict[int, str] = {
    0: "HelloRequest",
    1: "ClientHello",
    2: "ServerHello",
    3: "HelloVerifyRequest",
    4: "NewSessionTicket",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    20: "Finished",
}


# ---------------------------------------------------------------------------------- records


class Record(NamedTuple):
    """One DTLS record that lay whole in a datagram."""

    offset: int
    "Where its header starts in the datagram."
    content_type: int
    version: int
    "The record-layer version, e.g. 0xfefd (DTLS 1.2)."
    epoch: int
    sequence: int
    "The 48-bit sequence_number."
    fragment: bytes
    "The record's payload (``length`` bytes after the header)."

    @property
    def end(self) -> int:
        """Offset just past this record in the datagram."""
        return self.offset + RECORD_HEADER + len(self.fragment)


def parse_record_untrusted(datagram: bytes, offset: int = 0) -> Record | None:
    """Parse the record at ``offset``, or return None if its header or payload is cut short."""
    d = datagram
    if offset < 0 or len(d) - offset < RECORD_HEADER:
        return None
    start = offset + RECORD_HEADER
    end = start + ((d[offset + 11] << 8) | d[offset + 12])
    if end > len(d):
        return None
    return Record(
        offset,
        d[offset],
        (d[offset + 1] << 8) | d[offset + 2],
        (d[offset + 3] << 8) | d[offset + 4],
        int.from_bytes(d[offset + 5 : offset + 11], "big"),
        bytes(d[start:end]),
    )


def split_records_untrusted(datagram: bytes) -> tuple[list[Record], int]:
    """Return the whole records lying end to end from the start, and where parsing stopped.

    The offset equals ``len(datagram)`` when every byte belonged to a record; otherwise the
    bytes from it on are a cut-short header or a record whose length runs past the datagram.
    """
    return _split_untrusted(datagram, parse_record_untrusted, RECORD_HEADER)


_Item = TypeVar("_Item", Record, "HandshakeFragment")


def _split_untrusted(
    data: bytes, parse: Callable[[bytes, int], _Item | None], header: int
) -> tuple[list[_Item], int]:
    """Parse items lying end to end (each a ``header`` and its last field) until one fails."""
    items: list[_Item] = []
    at = 0
    while at < len(data):
        item = parse(data, at)
        if item is None:
            break
        items.append(item)
        at += header + len(item[-1])
    return items, at


# ------------------------------------------------------------------------ handshake headers


class HandshakeFragment(NamedTuple):
    """One handshake message (or a fragment of one) in an epoch-0 record."""

    msg_type: int
    length: int
    "Length of the whole message body, without its header."
    message_seq: int
    fragment_offset: int
    body: bytes
    "The ``fragment_length`` bytes of this fragment."


def _handshake_header_untrusted(d: bytes, at: int, end: int) -> tuple[int, int, int] | None:
    """Return (length, fragment_offset, body end) of the header at ``at`` in ``d[:end]``."""
    if at < 0 or end - at < HANDSHAKE_HEADER:
        return None
    length = (d[at + 1] << 16) | (d[at + 2] << 8) | d[at + 3]
    frag_off = (d[at + 6] << 16) | (d[at + 7] << 8) | d[at + 8]
    frag_len = (d[at + 9] << 16) | (d[at + 10] << 8) | d[at + 11]
    body_end = at + HANDSHAKE_HEADER + frag_len
    if body_end > end or frag_off + frag_len > length:
        return None
    return length, frag_off, body_end


def parse_handshake_fragment_untrusted(data: bytes, offset: int = 0) -> HandshakeFragment | None:
    """Parse the handshake fragment at ``offset`` of a record payload, or return None.

    None when the header is cut short, the fragment runs past the payload, or it reaches past
    the message's declared length (fragment_offset + fragment_length > length).
    """
    d = data
    header = _handshake_header_untrusted(d, offset, len(d))
    if header is None:
        return None
    length, frag_off, body_end = header
    return HandshakeFragment(
        d[offset],
        length,
        (d[offset + 4] << 8) | d[offset + 5],
        frag_off,
        bytes(d[offset + HANDSHAKE_HEADER : body_end]),
    )


def split_handshake_untrusted(payload: bytes) -> tuple[list[HandshakeFragment], int]:
    """Return the well-formed handshake fragments of a record payload, and where parsing stopped.

    The offset equals ``len(payload)`` when every byte belonged to a fragment.
    """
    return _split_untrusted(payload, parse_handshake_fragment_untrusted, HANDSHAKE_HEADER)


def first_handshake_type_untrusted(datagram: bytes) -> int:
    """Return the handshake type of an epoch-0 handshake first record, else -1.

    A cheap screen on the first record's header only (the connection's own C screen checks the
    rest before OpenSSL sees the datagram).
    """
    d = datagram
    if len(d) > RECORD_HEADER + HANDSHAKE_HEADER and d[0] == HANDSHAKE and d[3] == 0 and d[4] == 0:
        return d[RECORD_HEADER]
    return -1


def is_client_hello_untrusted(datagram: bytes) -> bool:
    """Tell whether the first record is an epoch-0 handshake record with a ClientHello."""
    return first_handshake_type_untrusted(datagram) == CLIENT_HELLO


def may_feed_untrusted(datagram: bytes) -> bool:
    """Tell whether a datagram may go to OpenSSL before the peer's fingerprint is known.

    Only a ClientHello or HelloVerifyRequest in epoch 0: neither carries a certificate, so
    feeding them lets the handshake progress up to the peer's Certificate, which is then held
    until ``set_remote_fingerprints``.
    """
    return first_handshake_type_untrusted(datagram) in (CLIENT_HELLO, HELLO_VERIFY_REQUEST)


# ------------------------------------------------------------------------------ ClientHello


@final
class ClientHelloInfo:
    """What a peer's ClientHello carried, as far as it was received and well formed.

    :func:`parse_client_hello_untrusted` fills the fields up to ``cookie`` from the first
    fragment of one datagram (what the cookie exchange needs); :func:`
    reassemble_client_hello_untrusted` also fills the arrival counts and, once every byte was
    seen, the offered versions, key shares and groups.
    """

    __slots__ = (
        "complete",
        "cookie",
        "datagrams",
        "extensions",
        "fragment_offset",
        "fragments",
        "groups",
        "key_shares",
        "length",
        "message_seq",
        "random",
        "record_seq",
        "version",
        "versions",
    )

    def __init__(
        self,
        *,
        record_seq: bytes,
        message_seq: int,
        fragment_offset: int,
        version: bytes,
        random: bytes,
        cookie: bytes,
        length: int = 0,
        complete: bool = False,
        fragments: int = 0,
        datagrams: int = 0,
        extensions: list[int] | None = None,
        versions: list[int] | None = None,
        key_shares: list[int] | None = None,
        groups: list[int] | None = None,
    ) -> None:
        """Hold the parsed fields (see the class docstring)."""
        self.record_seq = record_seq
        "The 6-byte record sequence_number (a HelloVerifyRequest echoes it)."
        self.message_seq = message_seq
        self.fragment_offset = fragment_offset
        "Non-zero for a later fragment: then version, random and cookie are empty."
        self.version = version
        "client_version, 2 bytes (b'\\xfe\\xfd' for DTLS 1.2)."
        self.random = random
        self.cookie = cookie
        self.length = length
        "Length of the ClientHello body (the handshake message, without its 12-byte header)."
        self.complete = complete
        "All its bytes were seen (and the extension fields below read)."
        self.fragments = fragments
        "Distinct fragments it arrived in (retransmissions not counted)."
        self.datagrams = datagrams
        "Datagrams that carried those fragments."
        self.extensions: list[int] = [] if extensions is None else extensions
        "Extension types, in the client's order."
        self.versions: list[int] = [] if versions is None else versions
        "supported_versions, in the client's order (empty if the extension is absent)."
        self.key_shares: list[int] = [] if key_shares is None else key_shares
        "Groups of the key_share entries."
        self.groups: list[int] = [] if groups is None else groups
        "supported_groups, in the client's order."

    def __repr__(self) -> str:
        """Show the fields that identify the hello."""
        return (
            f"ClientHelloInfo(message_seq={self.message_seq}, fragment_offset="
            f"{self.fragment_offset}, length={self.length}, cookie={self.cookie.hex()!r}, "
            f"complete={self.complete})"
        )

    @property
    def legacy_version(self) -> int:
        """client_version as a number (0 when not read)."""
        return int.from_bytes(self.version, "big")

    @property
    def offers_dtls13(self) -> bool:
        """Whether supported_versions lists DTLS 1.3 (0xfefc)."""
        return 0xFEFC in self.versions

    def describe(self) -> str:
        """One line, e.g. ``ClientHello 1432 B in 2 fragments / 2 datagrams; versions ...``."""
        versions = ", ".join(f"{_VERSION_NAMES.get(v, hex(v))} ({v:04x})" for v in self.versions)
        shares = ", ".join(_GROUP_NAMES.get(g, hex(g)) for g in self.key_shares)
        text = (
            f"ClientHello {self.length} B in {self.fragments} fragment"
            f"{'s' if self.fragments != 1 else ''} / {self.datagrams} datagram"
            f"{'s' if self.datagrams != 1 else ''}; supported_versions "
            f"[{versions or 'absent'}]"
        )
        if shares:
            text += f"; key_share [{shares}]"
        if not self.complete:
            text += " (incomplete)"
        return text


def _hello_prefix_untrusted(d: bytes, at: int, end: int) -> tuple[bytes, bytes, bytes, int] | None:
    """Read client_version, random and cookie of the body at ``d[at:end]``.

    Return them and the offset after the cookie, or None if they do not fit.
    """
    if end - at < 35:
        return None
    sid_len = d[at + 34]
    pos = at + 35 + sid_len
    if sid_len > 32 or pos >= end:
        return None
    cookie_len = d[pos]
    pos += 1
    if pos + cookie_len > end:
        return None
    return (
        bytes(d[at : at + 2]),
        bytes(d[at + 2 : at + 34]),
        bytes(d[pos : pos + cookie_len]),
        pos + cookie_len,
    )


def parse_client_hello_untrusted(datagram: bytes) -> ClientHelloInfo | None:
    """Parse the ClientHello (fragment) in the first record of a datagram, or return None.

    None also for a record longer than the datagram or an inconsistent fragment header. Only
    the fields up to the cookie are read; they all sit in the first fragment. A fragment with
    a non-zero offset is returned with empty ``random`` and ``cookie``. Cannot fail.
    """
    d = datagram
    # The cheap screen first (an epoch-0 DTLS handshake record starting with a ClientHello):
    # most stray datagrams stop here without a copy.
    if (
        len(d) < RECORD_HEADER + HANDSHAKE_HEADER
        or d[0] != HANDSHAKE
        or d[1] != 0xFE
        or d[3] != 0
        or d[4] != 0
        or d[RECORD_HEADER] != CLIENT_HELLO
    ):
        return None
    # Bounds only, no copies: this runs for every datagram from an unknown address.
    record_end = RECORD_HEADER + ((d[11] << 8) | d[12])
    if record_end > len(d):
        return None
    header = _handshake_header_untrusted(d, RECORD_HEADER, record_end)
    if header is None:
        return None
    length, frag_off, body_end = header
    message_seq = (d[17] << 8) | d[18]
    record_seq = bytes(d[5:11])
    if frag_off:
        return ClientHelloInfo(
            record_seq=record_seq,
            message_seq=message_seq,
            fragment_offset=frag_off,
            version=b"",
            random=b"",
            cookie=b"",
            length=length,
        )
    prefix = _hello_prefix_untrusted(d, RECORD_HEADER + HANDSHAKE_HEADER, body_end)
    if prefix is None:
        return None
    version, random, cookie, _ = prefix
    return ClientHelloInfo(
        record_seq=record_seq,
        message_seq=message_seq,
        fragment_offset=0,
        version=version,
        random=random,
        cookie=cookie,
        length=length,
    )


def reassemble_client_hello_untrusted(datagrams: Iterable[bytes]) -> ClientHelloInfo | None:
    """Reassemble the first ClientHello found in ``datagrams`` and describe it (None if none).

    The first ClientHello fragment seen fixes ``message_seq`` and ``length``; fragments of any
    other message are ignored, as are repeated offsets. ``complete`` tells whether every byte
    from 0 to ``length`` arrived; only then are the body's fields read, as far as they are well
    formed. A hello declaring more than 128 KiB is not reassembled.
    """
    info: ClientHelloInfo | None = None
    body = bytearray()
    have: dict[int, int] = {}  # fragment offset -> length
    for datagram in datagrams:
        carried = False
        for record in split_records_untrusted(datagram)[0]:
            if record.content_type != HANDSHAKE or record.epoch != 0:
                continue
            for hs in split_handshake_untrusted(record.fragment)[0]:
                if hs.msg_type != CLIENT_HELLO or hs.length > _MAX_HELLO:
                    continue
                if info is None:
                    info = ClientHelloInfo(
                        record_seq=b"",
                        message_seq=hs.message_seq,
                        fragment_offset=0,
                        version=b"",
                        random=b"",
                        cookie=b"",
                        length=hs.length,
                    )
                    body = bytearray(hs.length)
                if (
                    hs.message_seq != info.message_seq
                    or hs.length != info.length
                    or hs.fragment_offset in have
                ):
                    continue
                if hs.fragment_offset == 0:
                    info.record_seq = record.sequence.to_bytes(6, "big")
                have[hs.fragment_offset] = len(hs.body)
                body[hs.fragment_offset : hs.fragment_offset + len(hs.body)] = hs.body
                info.fragments += 1
                carried = True
        if carried and info is not None:
            info.datagrams += 1
    if info is None:
        return None
    end = 0
    for off, flen in sorted(have.items()):
        if off > end:
            break
        end = max(end, off + flen)
    info.complete = end >= info.length
    if info.complete:
        _read_hello_body_untrusted(info, bytes(body))
    return info


def _read_hello_body_untrusted(info: ClientHelloInfo, body: bytes) -> None:
    """Fill ``info`` from a whole ClientHello body, stopping at the first malformed field."""
    prefix = _hello_prefix_untrusted(body, 0, len(body))
    if prefix is None:
        return
    info.version, info.random, info.cookie, at = prefix
    if at + 2 > len(body):
        return
    at += 2 + ((body[at] << 8) | body[at + 1])  # cipher_suites
    if at >= len(body):
        return
    at += 1 + body[at]  # compression_methods
    if at + 2 > len(body):
        return  # no extensions block (allowed) or cut short
    end = at + 2 + ((body[at] << 8) | body[at + 1])
    if end > len(body):
        return
    at += 2
    while at + 4 <= end:
        etype = (body[at] << 8) | body[at + 1]
        data_end = at + 4 + ((body[at + 2] << 8) | body[at + 3])
        if data_end > end:
            return
        data = body[at + 4 : data_end]
        at = data_end
        info.extensions.append(etype)
        if etype == _SUPPORTED_VERSIONS and data:
            info.versions = _u16_list(data[1 : 1 + data[0]])
        elif etype == _SUPPORTED_GROUPS and len(data) >= 2:
            info.groups = _u16_list(data[2 : 2 + ((data[0] << 8) | data[1])])
        elif etype == _KEY_SHARE and len(data) >= 2:
            shares = data[2 : 2 + ((data[0] << 8) | data[1])]
            i = 0
            while i + 4 <= len(shares):
                info.key_shares.append((shares[i] << 8) | shares[i + 1])
                i += 4 + ((shares[i + 2] << 8) | shares[i + 3])


def _u16_list(data: bytes) -> list[int]:
    """Read the big-endian 16-bit values of ``data`` (a trailing odd byte is ignored)."""
    return [(data[i] << 8) | data[i + 1] for i in range(0, len(data) - 1, 2)]
