"""Path-MTU black holes against a real routed path with a narrow link (topology.py).

The TLS servers send a long certificate chain (root -> 4 intermediates -> leaf, RSA: ~5.4 kB of
handshake flight), so their first segments exceed the 1280-byte link in the middle. On the
black-holed addresses the router's ICMP "fragmentation needed" is dropped; on the healthy ones it
gets through and PMTUD repairs the path by itself.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from edgecheck.diagnosis.advice import path_mtu_remedy
from edgecheck.evidence import PathMtu
from edgecheck.probes import pmtu, pmtu_measure
from edgecheck.probes.budget import Budget

TIMEOUT = 2.5


def _handshake_with_watch(address: str, context: ssl.SSLContext, http: bool = False, delay=None):
    """What a TLS layer does, with the watch around it: connect, arm, handshake, finish."""
    start = time.monotonic()
    budget = Budget(start + TIMEOUT)
    sock = socket.socket(pmtu.family_of(address))
    sock.settimeout(budget.left())
    sock.connect((address, 443))
    watch = pmtu.StallWatch(address, 443, "big.test", context, budget, sock=sock, http=http, delay=delay)
    stalled = False
    try:
        sock.settimeout(budget.left())
        with context.wrap_socket(sock, server_hostname="big.test"):
            pass
    except (socket.timeout, TimeoutError):
        stalled = True
    retry = watch.finish(stalled)
    return stalled, watch, retry, time.monotonic() - start


@pytest.mark.parametrize("family", ["hole4", "hole6"])
def test_black_hole_stalls_and_small_mss_retry_works(path_lab, family):
    lab, address = path_lab["lab"], path_lab[family]
    lab.forget_pmtu()
    stalled, watch, retry, wall = lab.node.run(_handshake_with_watch, address, path_lab["context"], True)
    assert stalled, "the normal handshake should stall behind the black hole"
    assert watch.fired and retry is not None
    # The retry runs inside the same budget: the probe ends with its timeout, not later.
    assert wall < TIMEOUT + 0.6, wall
    verdict = pmtu.judge_retry(retry)
    assert verdict.black_hole, verdict
    small = pmtu.SMALL_MSS_V6 if ":" in address else pmtu.SMALL_MSS_V4
    by_mss = {a.mss: a for a in retry.attempts}
    assert by_mss[small].ok and by_mss[small].stage == "done"
    assert by_mss[small].http_status_line.startswith("HTTP/1.1 204")
    assert by_mss[None].stalled and not by_mss[None].ok  # the full-size control stalls too
    # Evidence has the sizes: 1280-byte packets pass the narrow link, 1400 do not.
    assert verdict.largest_working == 1280 and verdict.smallest_failing == 1400
    ev = retry.evidence()
    assert ev["original_connection"]["bytes_received"] == 0  # nothing in order arrived...
    assert ev["original_connection"]["out_of_order_packets"] >= 1  # ...but the flight's small tail did
    assert by_mss[small].progress.bytes_received > 4000  # the whole chain came through small
    msg, rem = pmtu.message(verdict, "big.test", 443), path_mtu_remedy(verdict.largest_working, None, "big.test")
    assert "1280" in msg and "1400" in msg and "black hole" in msg
    assert "TCPMSS" in rem and "mtu 1280" in rem and "type 3 code 4" in rem


@pytest.mark.parametrize("scheme,port", [("http", 80), ("https", 8443)])
def test_http_response_stall_behind_the_black_hole(path_lab, scheme, port):
    """The TLS handshake fits (small certificate) or there is none; the response does not. The
    original request goes through the existing HTTP layer (requests), as a check would."""
    from edgecheck.model import Reason
    from edgecheck.probes import httpget

    lab, address = path_lab["lab"], path_lab["hole4"]
    lab.forget_pmtu()
    ctx = path_lab["context"] if scheme == "https" else None

    def run():
        start = time.monotonic()
        budget = Budget(start + TIMEOUT)
        watch = pmtu.StallWatch(address, port, "good.test", ctx, budget, http=True)
        out = httpget.request(scheme, "good.test", port, budget, address=address, verify=path_lab["cafile"])
        retry = watch.finish(stalled=out.reason is Reason.TIMEOUT)
        return out, retry, time.monotonic() - start

    out, retry, wall = lab.node.run(run)
    assert out.reason is Reason.TIMEOUT
    assert wall < TIMEOUT + 0.6
    verdict = pmtu.judge_retry(retry)
    assert verdict.black_hole and verdict.largest_working == 1280
    small = next(a for a in retry.attempts if a.mss == pmtu.SMALL_MSS_V4)
    assert small.stage == "done" and small.http_status_line == "HTTP/1.1 200 OK"
    assert (small.tls_version is not None) == (scheme == "https")
    ev = PathMtu("http", verdict.black_hole, verdict.why, verdict.working_sizes, verdict.failing_sizes,
                 retry.evidence()).to_json()["path_mtu"]
    assert ev["stage"] == "http" and ev["largest_working"] == 1280 and ev["retry"]["attempts"]
    msg = pmtu.message(verdict, "good.test", port, stage="http")
    assert "the HTTP response stalls" in msg


def test_icmp_allowed_path_heals_by_itself_and_costs_nothing(path_lab):
    lab = path_lab["lab"]
    stalled, watch, retry, wall = lab.node.run(_handshake_with_watch, path_lab["ok4"], path_lab["context"])
    assert not stalled and retry is None
    assert not watch.fired  # a healthy handshake never starts the retry
    assert wall < 1.0


def test_slow_but_healthy_handshake_is_not_a_black_hole(path_lab):
    # The server waits 0.8 s before its handshake; the watch fires at 0.3 s, then the original
    # completes: the retry is aborted and nothing is judged.
    lab = path_lab["lab"]
    ctx_any = ssl.create_default_context(cafile=None)
    ctx_any.check_hostname = False
    ctx_any.verify_mode = ssl.CERT_NONE

    def run():
        budget = Budget(time.monotonic() + TIMEOUT)
        sock = socket.create_connection((path_lab["slow4"], 443), timeout=TIMEOUT)
        watch = pmtu.StallWatch(path_lab["slow4"], 443, "good.test", ctx_any, budget, sock=sock, delay=0.3)
        with ctx_any.wrap_socket(sock, server_hostname="good.test"):
            pass
        return watch.fired, watch.finish(stalled=False)

    fired, retry = lab.node.run(run)
    assert fired and retry is None


def test_retry_that_also_stalls_is_not_called_path_mtu(path_lab):
    # Everything dropped after connect (not about size): nothing works, so no path-mtu verdict.
    lab = path_lab["lab"]
    rule = ["OUTPUT", "-p", "tcp", "--sport", "443", "-s", path_lab["ok4"], "--tcp-flags", "SYN", "NONE", "-j", "DROP"]
    lab.server.exec("iptables", "-w", "5", "-I", *rule)
    try:
        stalled, _watch, retry, wall = lab.node.run(_handshake_with_watch, path_lab["ok4"], path_lab["context"])
    finally:
        lab.server.exec("iptables", "-w", "5", "-D", *rule)
    assert stalled and retry is not None
    verdict = pmtu.judge_retry(retry)
    assert not verdict.black_hole and "whatever the size" in verdict.why
    assert wall < TIMEOUT + 0.6


def test_egress_route_sends_nothing_and_reads_the_interface(path_lab):
    lab = path_lab["lab"]
    e = lab.node.run(pmtu_measure.egress_route, "10.81.0.99")
    assert e.source == "10.81.1.2" and e.interface_mtu == 1500 and e.path_mtu == 1500
    assert e.error == ""
