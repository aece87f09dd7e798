"""UDP 4500 (Raven IPsec NAT-T): a real IKEv2 IKE_SA_INIT behind the non-ESP marker.

UDP has no handshake: only an answer proves the path. A real IKE_SA_INIT (RFC 7296) makes an IKE
responder answer (with its own SA, or a notify such as NO_PROPOSAL_CHOSEN — either proves the
path); the 4 zero bytes of the non-ESP marker (RFC 3948) tell a NAT-T port it is IKE, not ESP.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import struct
from dataclasses import field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edgecheck.model import Reason, Status
from edgecheck.probes.budget import Budget
from edgecheck.probes.udp import exchange
from edgecheck.records import record

IKE_NATT_PORT = 4500
NON_ESP_MARKER = b"\x00\x00\x00\x00"

# RFC 7296 numbers.
EXCHANGE_IKE_SA_INIT = 34
FLAG_INITIATOR = 0x08
FLAG_RESPONSE = 0x20
PAYLOAD_NONE, PAYLOAD_SA, PAYLOAD_KE, PAYLOAD_NONCE, PAYLOAD_NOTIFY = 0, 33, 34, 40, 41
TRANSFORM_ENCR, TRANSFORM_PRF, TRANSFORM_INTEG, TRANSFORM_DH = 1, 2, 3, 4
ENCR_AES_CBC = 12
PRF_HMAC_SHA1, PRF_HMAC_SHA2_256 = 2, 5
AUTH_HMAC_SHA1_96, AUTH_HMAC_SHA2_256_128 = 2, 12
DH_MODP_2048 = 14
ATTR_KEY_LENGTH = 14
NOTIFY_NAT_DETECTION_SOURCE_IP = 16388
NOTIFY_NAT_DETECTION_DESTINATION_IP = 16389

NOTIFY_NAMES = {
    4: "INVALID_IKE_SPI", 5: "INVALID_MAJOR_VERSION", 7: "INVALID_SYNTAX", 9: "INVALID_MESSAGE_ID",
    14: "NO_PROPOSAL_CHOSEN", 17: "INVALID_KE_PAYLOAD", 24: "AUTHENTICATION_FAILED",
    16388: "NAT_DETECTION_SOURCE_IP", 16389: "NAT_DETECTION_DESTINATION_IP", 16390: "COOKIE",
    16404: "MULTIPLE_AUTH_SUPPORTED", 16430: "SIGNATURE_HASH_ALGORITHMS",
    16406: "IKEV2_FRAGMENTATION_SUPPORTED", 16418: "CHILDLESS_IKEV2_SUPPORTED",
}

# Group 14 (RFC 3526, 2048-bit MODP), generator 2: the group every IKEv2 responder supports.
MODP_2048_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
MODP_GENERATOR = 2


def _payload(next_payload: int, body: bytes) -> bytes:
    return struct.pack("!BBH", next_payload, 0, 4 + len(body)) + body


def _transform(last: bool, ttype: int, tid: int, key_length: Optional[int] = None) -> bytes:
    attrs = struct.pack("!HH", 0x8000 | ATTR_KEY_LENGTH, key_length) if key_length else b""
    return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), ttype, 0, tid) + attrs


def _proposal() -> bytes:
    specs: List[Tuple[int, int, Optional[int]]] = [
        (TRANSFORM_ENCR, ENCR_AES_CBC, 128), (TRANSFORM_ENCR, ENCR_AES_CBC, 256),
        (TRANSFORM_PRF, PRF_HMAC_SHA2_256, None), (TRANSFORM_PRF, PRF_HMAC_SHA1, None),
        (TRANSFORM_INTEG, AUTH_HMAC_SHA2_256_128, None), (TRANSFORM_INTEG, AUTH_HMAC_SHA1_96, None),
        (TRANSFORM_DH, DH_MODP_2048, None),
    ]
    transforms = b"".join(_transform(i == len(specs) - 1, t, tid, kl) for i, (t, tid, kl) in enumerate(specs))
    # last proposal, proposal #1, protocol IKE (1), no SPI in IKE_SA_INIT
    return struct.pack("!BBHBBBB", 0, 0, 8 + len(transforms), 1, 1, 0, len(specs)) + transforms


def _nat_hash(spi_i: bytes, address: str, port: int) -> bytes:
    packed = ipaddress.ip_address(address).packed
    return hashlib.sha1(spi_i + b"\x00" * 8 + packed + struct.pack("!H", port)).digest()


def build_ike_sa_init(spi_i: bytes, local: Optional[Tuple[str, int]], remote: Tuple[str, int],
                      private_exponent: Optional[int] = None, nonce: Optional[bytes] = None) -> bytes:
    """IKE_SA_INIT request (header, SA, KE, Nonce, NAT detection notifies), without the marker."""
    x = private_exponent or int.from_bytes(os.urandom(32), "big") | 1
    ke_data = pow(MODP_GENERATOR, x, MODP_2048_PRIME).to_bytes(256, "big")
    nonce = nonce or os.urandom(32)
    notifies: List[Tuple[int, bytes]] = []
    if local is not None:
        notifies.append((NOTIFY_NAT_DETECTION_SOURCE_IP, _nat_hash(spi_i, local[0], local[1])))
    notifies.append((NOTIFY_NAT_DETECTION_DESTINATION_IP, _nat_hash(spi_i, remote[0], remote[1])))

    chain: List[Tuple[int, bytes]] = [
        (PAYLOAD_SA, _proposal()),
        (PAYLOAD_KE, struct.pack("!HH", DH_MODP_2048, 0) + ke_data),
        (PAYLOAD_NONCE, nonce),
    ] + [(PAYLOAD_NOTIFY, struct.pack("!BBH", 0, 0, ntype) + data) for ntype, data in notifies]
    body = b""
    for i, (ptype, pbody) in enumerate(chain):
        nxt = chain[i + 1][0] if i + 1 < len(chain) else PAYLOAD_NONE
        body += _payload(nxt, pbody)
    header = spi_i + b"\x00" * 8 + struct.pack("!BBBBII", PAYLOAD_SA, 0x20, EXCHANGE_IKE_SA_INIT,
                                                  FLAG_INITIATOR, 0, 28 + len(body))
    return header + body


@record
class IkeReply:
    """What a reply says, as far as it parses (any reply proves the path, parsed or not)."""

    is_ike: bool
    responder_spi: Optional[str] = None
    exchange: Optional[int] = None
    response: bool = False
    payloads: List[int] = field(default_factory=list)
    notify: List[str] = field(default_factory=list)


def parse_reply(data: bytes, spi_i: bytes) -> IkeReply:
    if data[:4] == NON_ESP_MARKER:
        data = data[4:]
    if len(data) < 28 or data[:8] != spi_i:
        return IkeReply(is_ike=False)
    next_payload, version, exch, flags = data[16], data[17], data[18], data[19]
    reply = IkeReply(is_ike=version >> 4 == 2, responder_spi=data[8:16].hex(), exchange=exch,
                     response=bool(flags & FLAG_RESPONSE))
    pos = 28
    while next_payload != PAYLOAD_NONE and pos + 4 <= len(data):
        nxt, _, length = struct.unpack("!BBH", data[pos:pos + 4])
        if length < 4:
            break
        reply.payloads.append(next_payload)
        if next_payload == PAYLOAD_NOTIFY and length >= 8:
            ntype = struct.unpack("!H", data[pos + 6:pos + 8])[0]
            reply.notify.append(NOTIFY_NAMES.get(ntype, str(ntype)))
        pos += length
        next_payload = nxt
    return reply


@record
class IkeOutcome:
    address: str
    answered: bool
    reason: Optional[Reason] = None
    error: str = ""
    reply_bytes: int = 0
    reply: Optional[IkeReply] = None
    sends: int = 0
    ms: int = 0

    def to_json(self) -> Dict[str, Any]:
        ev: Dict[str, Any] = {"address": self.address, "port": IKE_NATT_PORT, "answered": self.answered,
                              "reply_bytes": self.reply_bytes, "datagrams_sent": self.sends, "ms": self.ms}
        if self.reply is not None:
            ev.update({"ike_reply": self.reply.is_ike, "responder_spi": self.reply.responder_spi,
                       "notify": list(self.reply.notify)})
        if self.error:
            ev["error"] = self.error
            ev["reason"] = self.reason.value if self.reason else None
        return ev


def probe(address: str, budget: Budget, port: int = IKE_NATT_PORT) -> IkeOutcome:
    spi_i = os.urandom(8)
    holder: Dict[str, Any] = {}

    def make_request(local: Optional[Tuple[str, int]]) -> bytes:
        # The same message on every resend (RFC 7296 retransmissions are identical).
        if "msg" not in holder:
            holder["msg"] = NON_ESP_MARKER + build_ike_sa_init(spi_i, local, (address, port))
        return holder["msg"]

    ex = exchange(address, port, make_request, budget)
    out = IkeOutcome(address=address, answered=ex.reply is not None, sends=ex.sends, ms=ex.ms)
    if ex.reply is not None:
        out.reply_bytes = len(ex.reply)
        out.reply = parse_reply(ex.reply, spi_i)
    else:
        out.reason, out.error = ex.reason, ex.error
    return out


@record(frozen=True)
class IkeEvidence:
    """The exchange a verdict rests on (the first answer, else the first failure) and all."""

    shown: Optional[IkeOutcome]
    exchanges: Tuple[IkeOutcome, ...]

    def to_json(self) -> Dict[str, Any]:
        return {"ike": self.shown.to_json() if self.shown else None,
                "ike_all": [o.to_json() for o in self.exchanges]}


@record
class IkeVerdict:
    status: Status
    reason: Reason
    answered: List[IkeOutcome]
    failing: List[IkeOutcome]


def judge_ike(outcomes: Sequence[IkeOutcome]) -> IkeVerdict:
    answered = [o for o in outcomes if o.answered]
    failing = [o for o in outcomes if not o.answered]
    for reason in (Reason.HOST_FIREWALL, Reason.REFUSED, Reason.UNREACHABLE):
        if any(o.reason is reason for o in failing):
            return IkeVerdict(Status.FAIL, reason, answered, failing)
    if failing:
        return IkeVerdict(Status.WARN, Reason.NO_RESPONSE, answered, failing)
    return IkeVerdict(Status.PASS, Reason.OK, answered, failing)
