"""DNS messages on the wire, just what a stub resolver needs: an A/AAAA query, and the parts of a
reply it reads (id, TC, rcode, the answer section's A, AAAA and CNAME records). Pure functions.

RFC 1035 section 4 (header, question, resource records, name compression 4.1.4), RFC 3596
(AAAA), RFC 6891 (the EDNS0 OPT record a query may carry to allow larger UDP answers).

Why not dnspython: importing it costs about 100 ms per run (its resolver pulls in DDR, async
backends and importlib.metadata), more than everything else a healthy run does (issue 17), and
a probe needs a tenth of one percent of it.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import field
from typing import List, Optional, Tuple

from edgecheck.records import record

TYPE_A, TYPE_CNAME, TYPE_AAAA, TYPE_OPT = 1, 5, 28, 41
TYPE_NAMES = {TYPE_A: "A", TYPE_AAAA: "AAAA", TYPE_CNAME: "CNAME"}
CLASS_IN = 1
FLAG_QR, FLAG_TC, FLAG_RD = 0x8000, 0x0200, 0x0100
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
          7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADVERS"}
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
UDP_PLAIN_MAX = 512  # RFC 1035 2.3.4: a UDP answer without EDNS0
EDNS_PAYLOAD = 1232  # what glibc (options edns0) and most resolvers offer (DNS flag day 2020)


class MalformedReply(ValueError):
    """The bytes are not a DNS reply this query can use."""


def rcode_text(rcode: int) -> str:
    return RCODES.get(rcode, f"RCODE{rcode}")


def encode_name(name: str) -> bytes:
    labels = [label for label in name.rstrip(".").split(".") if label] if name not in ("", ".") else []
    out = b""
    for label in labels:
        raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
        if len(raw) > 63:
            raise ValueError(f"label too long in {name!r}")
        out += bytes([len(raw)]) + raw
    if len(out) + 1 > 255:
        raise ValueError(f"name too long: {name!r}")
    return out + b"\x00"


def build_query(qname: str, qtype: int, qid: int, *, edns: bool = False, recursion: bool = True) -> bytes:
    """One question, recursion desired; with edns an OPT record offering EDNS_PAYLOAD bytes."""
    header = struct.pack("!HHHHHH", qid & 0xFFFF, FLAG_RD if recursion else 0, 1, 0, 0, 1 if edns else 0)
    question = encode_name(qname) + struct.pack("!HH", qtype, CLASS_IN)
    opt = b"\x00" + struct.pack("!HHIH", TYPE_OPT, EDNS_PAYLOAD, 0, 0) if edns else b""
    return header + question + opt


def decode_name(wire: bytes, offset: int) -> Tuple[str, int]:
    """(name, offset after it) with compression pointers followed (at most 64 jumps)."""
    labels: List[str] = []
    end: Optional[int] = None
    jumps = 0
    while True:
        if offset >= len(wire):
            raise MalformedReply("name runs past the end of the message")
        length = wire[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(wire) or jumps > 64:
                raise MalformedReply("bad compression pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | wire[offset + 1]
            jumps += 1
            continue
        if length & 0xC0:
            raise MalformedReply("unknown label type")
        if length == 0:
            return ".".join(labels) + ".", (end if end is not None else offset + 1)
        labels.append(wire[offset + 1:offset + 1 + length].decode("ascii", errors="replace"))
        offset += 1 + length


@record(frozen=True)
class Record:
    name: str  # absolute, with the final dot
    rtype: int
    ttl: int
    value: str  # A/AAAA: the address; CNAME: the target name; else the rdata in hex


@record
class Reply:
    qid: int
    rcode: int
    truncated: bool
    answers: List[Record] = field(default_factory=list)

    @property
    def rcode_text(self) -> str:
        return rcode_text(self.rcode)


def _rdata(rtype: int, wire: bytes, start: int, length: int) -> str:
    raw = wire[start:start + length]
    if rtype == TYPE_A and length == 4:
        return str(ipaddress.IPv4Address(raw))
    if rtype == TYPE_AAAA and length == 16:
        return str(ipaddress.IPv6Address(raw))
    if rtype == TYPE_CNAME:
        return decode_name(wire, start)[0]
    return raw.hex()


def parse_reply(wire: bytes) -> Reply:
    """The header and the answer section of a reply (the authority and additional sections are
    not needed by a stub resolver)."""
    if len(wire) < 12:
        raise MalformedReply("shorter than a DNS header")
    qid, flags, qdcount, ancount = struct.unpack_from("!HHHH", wire, 0)
    if not flags & FLAG_QR:
        raise MalformedReply("not a reply")
    reply = Reply(qid, flags & 0x000F, bool(flags & FLAG_TC))
    offset = 12
    try:
        for _ in range(qdcount):
            offset = decode_name(wire, offset)[1] + 4
        for _ in range(ancount):
            name, offset = decode_name(wire, offset)
            rtype, _rclass, ttl, length = struct.unpack_from("!HHIH", wire, offset)
            offset += 10
            if offset + length > len(wire):
                raise MalformedReply("record runs past the end of the message")
            reply.answers.append(Record(name, rtype, ttl, _rdata(rtype, wire, offset, length)))
            offset += length
    except struct.error:
        if not reply.truncated:  # a truncated UDP answer may stop anywhere
            raise MalformedReply("message ends inside a record") from None
    return reply


def addresses_and_chain(reply: Reply, qname: str, qtype: int) -> Tuple[List[str], List[str]]:
    """The addresses of qname (following its CNAME chain in the answer) and that chain."""
    owner = qname.rstrip(".").lower() + "."
    chain: List[str] = []
    for _ in range(16):  # a CNAME chain longer than this is a loop
        target = next((r.value for r in reply.answers if r.rtype == TYPE_CNAME and r.name.lower() == owner), None)
        if target is None:
            break
        chain.append(target.rstrip("."))
        owner = target.lower()
    addresses = [r.value for r in reply.answers if r.rtype == qtype and r.name.lower() == owner]
    return addresses, chain
