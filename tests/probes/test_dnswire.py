"""The DNS wire format of probes/dnswire.py, checked against dnspython (a test dependency only)."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from edgecheck.probes import dnswire


def test_query_is_what_dnspython_reads():
    wire = dnswire.build_query("registry-cn-hangzhou.ack.aliyuncs.com", dnswire.TYPE_AAAA, 0x1234)
    q = dns.message.from_wire(wire)
    assert q.id == 0x1234 and q.flags & dns.flags.RD and q.edns == -1
    assert q.question[0].name.to_text() == "registry-cn-hangzhou.ack.aliyuncs.com."
    assert q.question[0].rdtype == 28
    with_edns = dns.message.from_wire(dnswire.build_query("a.test.", dnswire.TYPE_A, 7, edns=True))
    assert with_edns.edns == 0 and with_edns.payload == dnswire.EDNS_PAYLOAD


def _reply(qname: str, rdtype: str, records, rcode=dns.rcode.NOERROR) -> bytes:
    query = dns.message.make_query(qname, rdtype)
    query.id = 99
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    for owner, rtype, values in records:
        response.answer.append(dns.rrset.from_text_list(owner, 60, "IN", rtype, values))
    return response.to_wire()  # dnspython compresses names: the parser must follow pointers


def test_reply_with_a_cname_chain_and_compression():
    wire = _reply("www.example.test", "A", [("www.example.test.", "CNAME", ["edge.example.test."]),
                                            ("edge.example.test.", "CNAME", ["cdn.example.net."]),
                                            ("cdn.example.net.", "A", ["192.0.2.1", "192.0.2.2"])])
    reply = dnswire.parse_reply(wire)
    assert (reply.qid, reply.rcode, reply.truncated) == (99, 0, False)
    addresses, chain = dnswire.addresses_and_chain(reply, "www.example.test", dnswire.TYPE_A)
    assert sorted(addresses) == ["192.0.2.1", "192.0.2.2"] and chain == ["edge.example.test", "cdn.example.net"]


def test_aaaa_rcodes_and_empty_answers():
    reply = dnswire.parse_reply(_reply("v6.test", "AAAA", [("v6.test.", "AAAA", ["2001:db8::1"])]))
    assert dnswire.addresses_and_chain(reply, "v6.test.", dnswire.TYPE_AAAA)[0] == ["2001:db8::1"]
    servfail = dnswire.parse_reply(_reply("x.test", "A", [], dns.rcode.SERVFAIL))
    assert servfail.rcode_text == "SERVFAIL" and not servfail.answers
    assert dnswire.rcode_text(5) == "REFUSED" and dnswire.rcode_text(15) == "RCODE15"


def test_truncated_reply_is_read_as_far_as_it_goes():
    wire = bytearray(_reply("big.test", "A", [("big.test.", "A", [f"198.51.100.{i}" for i in range(1, 61)])]))
    wire[2] |= 0x02  # TC
    reply = dnswire.parse_reply(bytes(wire[:300]))
    assert reply.truncated and 0 < len(reply.answers) < 60


@pytest.mark.parametrize("junk", [b"", b"\x00" * 11, b"\x00\x01\x01\x00" + b"\x00" * 8])
def test_malformed_or_not_a_reply(junk):
    with pytest.raises(dnswire.MalformedReply):
        dnswire.parse_reply(junk)


def test_compression_loops_are_refused():
    wire = b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c"  # points at itself
    with pytest.raises(dnswire.MalformedReply):
        dnswire.parse_reply(wire)
