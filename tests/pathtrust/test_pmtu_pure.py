"""Pure parts of the path-MTU module and the Raven IPsec arithmetic."""

from __future__ import annotations

import socket
import struct

import pytest

from edgecheck.diagnosis.advice import path_mtu_remedy
from edgecheck.probes import pmtu, pmtu_measure, raven_mtu
from edgecheck.probes.pmtu import MssRetry, SizeAttempt, TcpProgress


def _tcp_info(**over) -> bytes:
    raw = bytearray(232)
    raw[0], raw[2] = over.get("state", 1), over.get("retransmits", 0)
    for off, key in ((16, "snd_mss"), (20, "rcv_mss"), (60, "pmtu"), (84, "advmss"), (100, "total_retrans"),
                     (140, "segs_in"), (152, "data_segs_in"), (224, "ooo")):
        struct.pack_into("=I", raw, off, over.get(key, 0))
    struct.pack_into("=Q", raw, 128, over.get("bytes_received", 0))
    return bytes(raw)


def test_parse_tcp_info_reads_the_fields_by_offset():
    p = pmtu.parse_tcp_info(_tcp_info(snd_mss=1448, advmss=1460, pmtu=1500, bytes_received=0, ooo=2,
                                      retransmits=1, total_retrans=3))
    assert (p.snd_mss, p.advmss, p.pmtu, p.bytes_received, p.out_of_order) == (1448, 1460, 1500, 0, 2)
    assert (p.retransmits, p.total_retrans) == (1, 3)


def test_parse_tcp_info_of_an_old_kernel_leaves_new_fields_unknown():
    p = pmtu.parse_tcp_info(_tcp_info(advmss=1460)[:104])  # a 3.x kernel: no bytes_received
    assert p.advmss == 1460 and p.bytes_received is None and p.out_of_order is None
    assert pmtu.parse_tcp_info(b"\x00" * 50) is None


def test_small_mss_and_packet_sizes():
    assert pmtu.packet_size(pmtu.SMALL_MSS_V4, socket.AF_INET) == 576
    assert pmtu.packet_size(pmtu.SMALL_MSS_V6, socket.AF_INET6) == 1280
    assert [pmtu.packet_size(m, socket.AF_INET) for m in pmtu.LADDER_V4] == [576, 1280, 1400]
    assert [pmtu.packet_size(m, socket.AF_INET6) for m in pmtu.LADDER_V6] == [1280, 1400]


@pytest.mark.parametrize("left,delay", [(3.0, 1.0), (0.3, 0.2), (10.0, 1.5), (1.5, 0.5)])
def test_stall_delay_is_a_third_of_the_budget_clamped(left, delay):
    assert pmtu.stall_delay(left) == pytest.approx(delay)


def _attempt(mss, ok=False, stalled=False, stage="tls", family=socket.AF_INET, advmss=1460):
    return SizeAttempt(mss=mss, family=family, ok=ok, stalled=stalled, stage="done" if ok else stage,
                       progress=TcpProgress(1, 0, 0, advmss, 0, 0, 0))


def test_judge_black_hole_needs_the_control_to_stall_and_a_small_size_to_work():
    retry = MssRetry("192.0.2.1", 443, [_attempt(536, ok=True), _attempt(1240, ok=True),
                                         _attempt(1360, stalled=True), _attempt(None, stalled=True)])
    v = pmtu.judge_retry(retry)
    assert v.black_hole
    assert v.working_sizes == (576, 1280) and v.failing_sizes == (1400, 1500)
    assert (v.largest_working, v.smallest_failing) == (1280, 1400)
    assert v.evidence()["largest_working"] == 1280


def test_judge_control_that_works_means_not_about_size():
    retry = MssRetry("192.0.2.1", 443, [_attempt(536, ok=True), _attempt(None, ok=True)])
    v = pmtu.judge_retry(retry)
    assert not v.black_hole and "not caused by packet size" in v.why


def test_judge_everything_stalls_is_not_path_mtu():
    retry = MssRetry("192.0.2.1", 443, [_attempt(536, stalled=True), _attempt(None, stalled=True)])
    assert not pmtu.judge_retry(retry).black_hole


def test_judge_control_cannot_connect():
    retry = MssRetry("192.0.2.1", 443, [_attempt(536, stage="connect"), _attempt(None, stage="connect")])
    v = pmtu.judge_retry(retry)
    assert not v.black_hole and "could not be made" in v.why


def test_message_and_remedy_name_sizes_and_the_three_fixes():
    v = pmtu.PathMtuVerdict(True, "x", (576, 1280), (1400, 1500))
    msg = pmtu.message(v, "registry.example", 443, stage="http")
    rem = path_mtu_remedy(v.largest_working, "eth0", "registry.example")
    assert "the HTTP response stalls" in msg and "1280" in msg and "1400" in msg
    assert "--set-mss 1240" in rem and "ip link set dev eth0 mtu 1280" in rem and "type 3 code 4" in rem


def test_parse_route_get():
    r = pmtu_measure.parse_route_get({"dst": "10.0.0.1", "gateway": "192.168.1.1", "dev": "eth0", "prefsrc": "192.168.1.5",
                              "metrics": [{"mtu": 1400}], "cache": ["expires"]})
    assert r == {"interface": "eth0", "source": "192.168.1.5", "gateway": "192.168.1.1", "cached_pmtu": 1400}
    assert pmtu_measure.parse_route_get({"dev": "eth0"})["cached_pmtu"] is None


# ------------------------------------------------------------------------------ Raven IPsec
def test_esp_in_udp_overheads_per_rfc():
    # AES-GCM (RFC 4106): 20 IP + 8 UDP + 8 ESP + 8 IV + 2 trailer + 16 ICV = 62, plus 0-3 padding
    assert raven_mtu.overhead_range("aes-gcm-16") == (62, 65)
    assert raven_mtu.overhead_range("aes-cbc-sha256") == (70, 85)
    assert raven_mtu.overhead_range("aes-cbc-sha1") == (66, 81)
    assert raven_mtu.overhead_range("aes-gcm-16", outer_ipv6=True) == (82, 85)


@pytest.mark.parametrize("path,suite,inner", [
    (1500, "aes-gcm-16", 1438), (1492, "aes-gcm-16", 1430), (1400, "aes-gcm-16", 1338),
    (1500, "aes-cbc-sha256", 1422), (1500, "aes-cbc-sha1", 1422), (1280, "aes-gcm-16", 1218),
])
def test_max_inner_packet(path, suite, inner):
    got = raven_mtu.max_inner_packet(path, suite)
    assert got == inner
    # and one byte more really does not fit: the ESP packet grows past the path MTU
    s = raven_mtu.SUITES[suite]

    def esp_size(n: int) -> int:
        body = n + 2
        body += (-body) % s.block
        return 20 + 8 + 8 + s.iv + body + s.icv

    assert esp_size(got) <= path < esp_size(got + s.block)


def test_raven_note_on_a_pppoe_path_names_the_lossy_sizes():
    note = raven_mtu.raven_note(1492, interface_mtu=1500)
    assert note.inner_max == 1430 and note.raven_mtu == 1436
    assert note.lossy_range == (1431, 1436)
    assert "1431-1436" in note.message and "MTU to 1492" in note.fix and "MSS" in note.fix


def test_raven_note_when_it_fits():
    note = raven_mtu.raven_note(1500, interface_mtu=1500)
    assert note.lossy_range is None and "fits" in note.message
    assert raven_mtu.raven_note(1400).raven_mtu is None
