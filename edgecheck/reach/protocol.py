"""The `listen` / `reach` wire protocol: one token-proven challenge and response, TCP or UDP.

Pure: bytes in, bytes or typed values out; the clock and the randomness are parameters.

Threat model and what each part is for
--------------------------------------
`edgecheck listen` opens the node's inbound ports on purpose, before anything else holds them;
`edgecheck reach` on the other side must learn (1) that its packets arrive at *that* listener and
not at a middlebox that completes TCP handshakes or answers UDP, and (2) which source address and
port the node saw, so NAT on the path shows. An on-path observer must not learn the token, and
the listener must never be usable as a reflector or amplifier.

Key
    Both sides share a token (printed by `listen`, typed into `reach`). It never travels; both
    derive K = HMAC-SHA256(key=b"edgecheck/reach/v1 key", msg=token as UTF-8) and only MACs
    made with K cross the wire. A wrong token therefore fails MAC verification on both sides.

Messages (fixed sizes, big-endian, no options)
    Every message starts with an 8-byte header: MAGIC (4 bytes, first byte 0x8E so no text
    protocol, TLS record (0x14-0x17) or HTTP method ever starts with it), VERSION (1), TYPE (1),
    two zero bytes. Anything that does not start with the header is recognised as noise by its
    first bytes, before any MAC is computed.

    PROBE (prober -> listener), REQUEST_SIZE = 128 bytes:
        0   header, TYPE_PROBE
        8   u64 prober wall clock, milliseconds since the Unix epoch
        16  16-byte random nonce (fresh for every datagram / connection)
        32  u16 port the prober aimed at, u8 IP protocol (6 TCP, 17 UDP), u8 zero
        36  zero padding up to byte 96: makes the request larger than any reply
        96  HMAC-SHA256(K, b"edgecheck/reach/v1 probe" || bytes 0..95)

    REPLY (listener -> prober), REPLY_SIZE = 112 bytes (< REQUEST_SIZE: never an amplifier):
        0   header, TYPE_REPLY (accepted) or TYPE_STALE (MAC valid, timestamp outside the window)
        8   u64 listener wall clock, ms since the epoch (lets `reach` name a clock difference)
        16  the probe's nonce, echoed
        32  source the listener saw: u8 IP version (4|6), u8 zero, u16 port, 16-byte address
            (IPv4 in the first 4 bytes, rest zero)
        52  destination the listener was reached at (same layout): shows DNAT / port forwarding
        72  u8 IP protocol the probe arrived over, 3 zero bytes
        76  4 zero bytes
        80  HMAC-SHA256(K, b"edgecheck/reach/v1 reply" || probe MAC || bytes 0..79)

    The reply MAC covers the probe's MAC, so a reply answers exactly one probe: it cannot be
    recorded and replayed to another prober, nor forged without K. A middlebox that completes
    the TCP handshake (or echoes datagrams) cannot produce it, so it cannot pass as the listener.

Listener rules (see listener.py)
    * Wrong size, wrong magic / version / type: noise, no answer.
    * MAC invalid (wrong token, corrupted): no answer at all — not even a close reason.
    * IP protocol byte differs from the socket it arrived on: noise, no answer.
    * Timestamp outside +-REPLAY_WINDOW_S of the listener's clock: a STALE reply (authenticated,
      112 bytes, rate-limited) so `reach` can say "the clocks differ" instead of "timeout".
    * Nonce already seen within the window: a replay, no answer.
    * Otherwise: REPLY. At most one reply per request, REPLY_SIZE <= REQUEST_SIZE, UDP replies
      only to unicast sources and from the address the probe was sent to.

Prober rules (see prober.py)
    A reply counts only if it has the exact size, header, a nonce this prober sent, and a MAC
    over the matching probe. Anything else that comes back is "answered without proof".
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import string
import struct
from collections import OrderedDict
from typing import Callable, Optional, Union

from edgecheck.netloc import host_port
from edgecheck.records import record

MAGIC = b"\x8eECR"  # 0x8E: not ASCII, not a TLS record type, not an HTTP method
VERSION = 1
TYPE_PROBE = 0x01
TYPE_REPLY = 0x02
TYPE_STALE = 0x03

HEADER = struct.Struct("!4sBBH")  # magic, version, type, zero
HEADER_SIZE = HEADER.size  # 8
MAC_SIZE = 32
REQUEST_SIZE = 128
REPLY_SIZE = 112
assert REPLY_SIZE <= REQUEST_SIZE  # the no-amplification invariant, by construction

_PROBE_BODY = struct.Struct("!Q16sHBB")  # ts_ms, nonce, aimed port, ip proto, zero  (28 bytes)
_PROBE_SIGNED = REQUEST_SIZE - MAC_SIZE  # 96
_ENDPOINT = struct.Struct("!BBH16s")  # ip version, zero, port, address (20 bytes)
_REPLY_BODY = struct.Struct("!Q16s20s20sB3x4x")  # ts_ms, nonce, seen src, seen dst, ip proto (72 bytes)
_REPLY_SIGNED = REPLY_SIZE - MAC_SIZE  # 80
assert HEADER_SIZE + _PROBE_BODY.size <= _PROBE_SIGNED
assert HEADER_SIZE + _REPLY_BODY.size == _REPLY_SIGNED

KEY_LABEL = b"edgecheck/reach/v1 key"
PROBE_LABEL = b"edgecheck/reach/v1 probe"
REPLY_LABEL = b"edgecheck/reach/v1 reply"

IPPROTO = {"tcp": 6, "udp": 17}
PROTO_NAME = {6: "tcp", 17: "udp"}

REPLAY_WINDOW_S = 300.0  # Kerberos' default skew; edge clocks are often off by seconds, rarely minutes
NONCE_SIZE = 16

TOKEN_MIN_LENGTH = 12
TOKEN_MAX_LENGTH = 128
_TOKEN_ALPHABET = frozenset(string.ascii_letters + string.digits + "-_.~+/=")


# --- token -------------------------------------------------------------------------------------

def new_token(randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """A fresh session token: 128 random bits, URL-safe base64 (22 characters, shell-safe)."""
    import base64
    return base64.urlsafe_b64encode(randbytes(16)).rstrip(b"=").decode("ascii")


def token_problem(token: str) -> Optional[str]:
    """Why a user-supplied token is unusable, or None. Shell-safe characters only, since `listen`
    prints it inside a command line for the other side to paste."""
    if len(token) < TOKEN_MIN_LENGTH:
        return f"the token must be at least {TOKEN_MIN_LENGTH} characters long"
    if len(token) > TOKEN_MAX_LENGTH:
        return f"the token must be at most {TOKEN_MAX_LENGTH} characters long"
    bad = sorted(set(token) - _TOKEN_ALPHABET)
    if bad:
        return "the token may only contain letters, digits and - _ . ~ + / = (found " + \
            " ".join(repr(c) for c in bad[:5]) + ")"
    return None


def derive_key(token: str) -> bytes:
    return hmac.new(KEY_LABEL, token.encode("utf-8"), hashlib.sha256).digest()


def key_fingerprint(key: bytes) -> str:
    """8 hex digits that let two people compare tokens without saying them (not reversible)."""
    return hashlib.sha256(b"edgecheck/reach/v1 fingerprint" + key).hexdigest()[:8]


# --- endpoints ---------------------------------------------------------------------------------

@record(frozen=True)
class Endpoint:
    """An IP address and port as one side saw them."""

    address: str
    port: int

    def __str__(self) -> str:
        return host_port(self.address, self.port)

    def to_json(self) -> dict:
        return {"address": self.address, "port": self.port}


def normalise_address(address: str) -> str:
    """One spelling per address; IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes a.b.c.d."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped if mapped is not None else ip)


def _pack_endpoint(ep: Endpoint) -> bytes:
    ip = ipaddress.ip_address(normalise_address(ep.address))
    raw = ip.packed.ljust(16, b"\0")
    return _ENDPOINT.pack(ip.version, 0, ep.port & 0xFFFF, raw)


def _unpack_endpoint(raw: bytes) -> Optional[Endpoint]:
    version, _zero, port, addr = _ENDPOINT.unpack(raw)
    if version == 4:
        return Endpoint(str(ipaddress.IPv4Address(addr[:4])), port)
    if version == 6:
        return Endpoint(str(ipaddress.IPv6Address(addr)), port)
    return None


# --- messages ----------------------------------------------------------------------------------

def _mac(key: bytes, label: bytes, *parts: bytes) -> bytes:
    h = hmac.new(key, label, hashlib.sha256)
    for p in parts:
        h.update(p)
    return h.digest()


@record(frozen=True)
class Probe:
    """A built PROBE: the bytes to send and what the prober must remember to check the reply."""

    wire: bytes
    nonce: bytes
    mac: bytes
    sent_ms: int


def build_probe(key: bytes, aimed_port: int, protocol: str, now_ms: int,
                randbytes: Callable[[int], bytes] = os.urandom) -> Probe:
    nonce = randbytes(NONCE_SIZE)
    head = HEADER.pack(MAGIC, VERSION, TYPE_PROBE, 0)
    body = _PROBE_BODY.pack(now_ms, nonce, aimed_port, IPPROTO[protocol], 0)
    signed = (head + body).ljust(_PROBE_SIGNED, b"\0")
    mac = _mac(key, PROBE_LABEL, signed)
    wire = signed + mac
    assert len(wire) == REQUEST_SIZE
    return Probe(wire, nonce, mac, now_ms)


class Verdict:
    """What the listener makes of one request (string constants: they appear in logs and JSON)."""

    VALID = "valid"  # answered with REPLY
    STALE = "stale"  # MAC valid, timestamp outside the window: answered with STALE
    REPLAY = "replay"  # MAC valid, nonce seen before: no answer
    BAD_TOKEN = "invalid-token"  # well-formed, MAC does not verify: no answer
    TRUNCATED = "truncated"  # shorter than a request (or the connection ended / timed out first)
    OVERSIZED = "oversized"  # a datagram longer than a request
    GARBAGE = "garbage"  # does not start with the magic
    BAD_VERSION = "unsupported-version"
    BAD_TYPE = "unexpected-type"
    WRONG_PROTOCOL = "wrong-protocol"  # authentic probe for TCP arriving over UDP or vice versa

    ANSWERED = (VALID, STALE)


@record(frozen=True)
class ParsedProbe:
    """A request whose MAC verified (only these carry fields worth trusting)."""

    sent_ms: int
    nonce: bytes
    aimed_port: int
    protocol: Optional[str]
    mac: bytes


def header_problem(prefix: bytes) -> Optional[str]:
    """Cheap check on the first bytes of a request (TCP: as soon as they arrive)."""
    n = min(len(prefix), HEADER_SIZE)
    expected = HEADER.pack(MAGIC, VERSION, TYPE_PROBE, 0)
    if prefix[:min(n, 4)] != MAGIC[:min(n, 4)]:
        return Verdict.GARBAGE
    if n > 4 and prefix[4] != VERSION:
        return Verdict.BAD_VERSION
    if n > 5 and prefix[5] != TYPE_PROBE:
        return Verdict.BAD_TYPE
    if n > 6 and prefix[6:n] != expected[6:n]:
        return Verdict.GARBAGE
    return None


def parse_probe(key: bytes, data: bytes) -> Union[ParsedProbe, str]:
    """A verified probe, or the Verdict constant saying why not. MAC checked in constant time."""
    problem = header_problem(data[:HEADER_SIZE])
    if problem:
        return problem
    if len(data) < REQUEST_SIZE:
        return Verdict.TRUNCATED
    if len(data) > REQUEST_SIZE:
        return Verdict.OVERSIZED
    signed, mac = data[:_PROBE_SIGNED], data[_PROBE_SIGNED:]
    if not hmac.compare_digest(_mac(key, PROBE_LABEL, signed), mac):
        return Verdict.BAD_TOKEN
    sent_ms, nonce, aimed_port, ipproto, _zero = _PROBE_BODY.unpack_from(signed, HEADER_SIZE)
    return ParsedProbe(sent_ms, nonce, aimed_port, PROTO_NAME.get(ipproto), mac)


class ReplayGuard:
    """Nonces seen within the window, bounded: the oldest are forgotten first when full.

    Only probes whose MAC verified are recorded, so nobody without the token can fill it.
    """

    def __init__(self, window_s: float = REPLAY_WINDOW_S, max_entries: int = 65536) -> None:
        self.window_ms = int(window_s * 1000)
        self.max_entries = max_entries
        self._seen: "OrderedDict[bytes, int]" = OrderedDict()  # nonce -> forget after (ms)

    def __len__(self) -> int:
        return len(self._seen)

    def judge(self, probe: ParsedProbe, now_ms: int) -> str:
        """VALID (and remembered), STALE or REPLAY."""
        if abs(now_ms - probe.sent_ms) > self.window_ms:
            return Verdict.STALE
        while self._seen:  # expire from the front (insertion order ~ time order)
            nonce, until = next(iter(self._seen.items()))
            if until >= now_ms:
                break
            del self._seen[nonce]
        if probe.nonce in self._seen:
            return Verdict.REPLAY
        # A replay is accepted only while its timestamp is within the window: remember it so long.
        self._seen[probe.nonce] = probe.sent_ms + self.window_ms
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return Verdict.VALID


def build_reply(key: bytes, probe: ParsedProbe, seen_source: Endpoint, seen_destination: Endpoint,
                protocol: str, now_ms: int, stale: bool = False) -> bytes:
    head = HEADER.pack(MAGIC, VERSION, TYPE_STALE if stale else TYPE_REPLY, 0)
    body = _REPLY_BODY.pack(now_ms, probe.nonce, _pack_endpoint(seen_source),
                            _pack_endpoint(seen_destination), IPPROTO[protocol])
    signed = head + body
    wire = signed + _mac(key, REPLY_LABEL, probe.mac, signed)
    assert len(wire) == REPLY_SIZE
    return wire


@record(frozen=True)
class ParsedReply:
    """A reply proven to come from a holder of the token, answering one of our probes."""

    stale: bool
    listener_ms: int
    nonce: bytes
    seen_source: Optional[Endpoint]
    seen_destination: Optional[Endpoint]
    protocol: Optional[str]


def parse_reply(key: bytes, data: bytes, sent: Callable[[bytes], Optional[Probe]]) -> Union[ParsedReply, str]:
    """A verified reply, or a short reason why these bytes are no proof.

    `sent(nonce)` returns the probe this prober sent with that nonce (or None).
    """
    if len(data) < HEADER_SIZE or data[:4] != MAGIC:
        return "not an edgecheck listener's reply"
    magic, version, mtype, _zero = HEADER.unpack_from(data, 0)
    if version != VERSION:
        return f"reply in protocol version {version}, this edgecheck speaks {VERSION}"
    if mtype not in (TYPE_REPLY, TYPE_STALE):
        return f"unexpected message type {mtype} in reply"
    if len(data) != REPLY_SIZE:
        return f"reply of {len(data)} bytes, expected {REPLY_SIZE}"
    signed, mac = data[:_REPLY_SIGNED], data[_REPLY_SIGNED:]
    listener_ms, nonce, src, dst, ipproto = _REPLY_BODY.unpack_from(signed, HEADER_SIZE)
    probe = sent(nonce)
    if probe is None:
        return "reply to a probe this run did not send"
    if not hmac.compare_digest(_mac(key, REPLY_LABEL, probe.mac, signed), mac):
        return "reply proof does not verify (the listener uses another token)"
    return ParsedReply(mtype == TYPE_STALE, listener_ms, nonce, _unpack_endpoint(src), _unpack_endpoint(dst),
                       PROTO_NAME.get(ipproto))


def clock_offset_s(sent_ms: int, received_ms: int, listener_ms: int) -> float:
    """Listener clock minus ours, assuming the listener stamped the reply mid-way (NTP's estimate)."""
    return round((listener_ms - (sent_ms + received_ms) / 2.0) / 1000.0, 3)


def nat_kind(local: Optional[Endpoint], seen: Optional[Endpoint]) -> Optional[str]:
    """How the path changed our source: None (unknown), "none", "port" (port only), "address".

    `local` is this prober's own socket address, `seen` what the listener saw.
    """
    if local is None or seen is None:
        return None
    if normalise_address(local.address) != normalise_address(seen.address):
        return "address"
    if local.port != seen.port:
        return "port"
    return "none"


def destination_kind(aimed: Endpoint, seen_destination: Optional[Endpoint]) -> Optional[str]:
    """Did the path rewrite the destination (DNAT / port forwarding)? None, "none", "port", "address"."""
    return nat_kind(aimed, seen_destination)

