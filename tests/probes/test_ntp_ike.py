"""NTP against chronyd (own config, -x: never touches the clock) and a faithful NTP responder;
UDP 4500 against strongSwan's charon (own strongswan.conf, own /run) and silent/closed ports."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from edgecheck.diagnosis import remediation
from edgecheck.diagnosis.scene import Scene
from edgecheck.model import Reason, Status
from edgecheck.probes import ike
from edgecheck.checks.ike import check_ike
from edgecheck.checks.ntp import check_ntp
from tests.probes.conftest import DROPPED, HOST_UNREACHABLE, target
from tests.probes.servers import NtpResponder, UdpResponder

CHRONY, FAKE_NTP, CLOSED, CHARON = "10.77.0.4", "10.77.0.2", "10.77.0.5", "10.77.0.6"
CHARON_BIN = "/usr/lib/ipsec/charon"


def _wait_file_text(path: str, text: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path) and text in open(path, errors="replace").read():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{text!r} never appeared in {path}")


def _wait_udp_bound(ns, port: int, timeout: float = 10.0) -> None:
    """Poll until something in the namespace has UDP `port` bound (a daemon's log line that it
    started comes before its sockets are open)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["ip", "netns", "exec", ns.name, "ss", "-Hnlu", f"sport = :{port}"],
                             capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing bound UDP {port} in {ns.name} within {timeout} s")


@pytest.fixture(scope="module")
def chronyd(peer, tmp_path_factory):
    if not shutil.which("chronyd"):
        pytest.fail("chronyd is required (Debian package chrony)")
    d = tmp_path_factory.mktemp("chrony")
    conf = d / "chrony.conf"
    # Own config only: no server/pool lines (never the distro config that points at real pools).
    conf.write_text(f"local stratum 8\nallow all\nbindaddress {CHRONY}\ncmdport 0\npidfile {d}/chronyd.pid\n")
    log = open(d / "chronyd.log", "w")
    peer.spawn(["chronyd", "-x", "-d", "-u", "root", "-f", str(conf)], stdout=log, stderr=log)
    _wait_file_text(str(d / "chronyd.log"), "Disabled control of system clock")
    _wait_udp_bound(peer, 123)
    yield CHRONY


@pytest.fixture(scope="module")
def fake_ntp(peer):
    servers = {
        "skewed-warn": peer.run(NtpResponder, FAKE_NTP, 1123, offset=5.0),
        "skewed-fail": peer.run(NtpResponder, FAKE_NTP, 2123, offset=-300.0),
        "leap3": peer.run(NtpResponder, FAKE_NTP, 3123, stratum=2, leap=3),
        "stratum0": peer.run(NtpResponder, FAKE_NTP, 4123, stratum=0, leap=0),
    }
    yield {"skewed-warn": 1123, "skewed-fail": 2123, "leap3": 3123, "stratum0": 4123}
    for s in servers.values():
        s.close()


def test_ntp_pass_against_chronyd(ns, zone, ctx, chronyd):
    zone["ntp1.test"] = {"A": [chronyd]}
    r = ns.run(check_ntp, target("ntp", "ntp1.test", 123, "udp"), ctx)
    assert (r.status, r.reason) == (Status.PASS, Reason.OK), r.message
    assert r.evidence.to_json()["ntp"]["stratum"] == 8 and r.evidence.to_json()["ntp"]["address"] == chronyd
    assert abs(r.evidence.to_json()["ntp"]["offset_s"]) < 0.5 and r.evidence.to_json()["ntp"]["leap"] == 0
    assert r.evidence.to_json()["route"] == "direct"


def test_ntp_queries_every_address(ns, zone, ctx, chronyd):
    zone["ntp2.test"] = {"A": [chronyd, DROPPED]}
    r = ns.run(check_ntp, target("ntp", "ntp2.test", 123, "udp"), ctx)
    assert (r.status, r.reason) == (Status.WARN, Reason.TIMEOUT), r.message
    assert {e["address"] for e in r.evidence.to_json()["ntp_all"]} == {chronyd, DROPPED}
    assert DROPPED in r.message


@pytest.mark.parametrize("name,status,reason", [
    ("skewed-warn", Status.WARN, Reason.CLOCK_OFFSET),
    ("skewed-fail", Status.FAIL, Reason.CLOCK_OFFSET),
    ("leap3", Status.WARN, Reason.CLOCK_UNSYNCHRONISED),
    ("stratum0", Status.WARN, Reason.CLOCK_UNSYNCHRONISED),
])
def test_ntp_offsets_and_unsynchronised_servers(ns, zone, ctx, fake_ntp, name, status, reason):
    r = ns.run(check_ntp, target("ntp", FAKE_NTP, fake_ntp[name], "udp"), ctx)
    assert (r.status, r.reason) == (status, reason), r.message
    if reason is Reason.CLOCK_UNSYNCHRONISED:
        assert "unsynchronised" in r.message


def test_ntp_silence_closed_port_and_unreachable(ns, zone, ctx):
    cases = [(DROPPED, Reason.TIMEOUT), (CLOSED, Reason.REFUSED), (HOST_UNREACHABLE, Reason.UNREACHABLE)]
    for address, reason in cases:
        t0 = time.monotonic()
        r = ns.run(check_ntp, target("ntp", address, 123, "udp"), ctx)
        assert (r.status, r.reason) == (Status.FAIL, reason), (address, r.message)
        assert time.monotonic() - t0 < 1.6 * ctx.timeout  # one budget, not a retry (2x) on top


# ---------------------------------------------------------------------------------------- UDP 4500
@pytest.fixture(scope="module")
def charon(peer, tmp_path_factory):
    if not os.path.exists(CHARON_BIN):
        pytest.fail("strongSwan's charon is required (Debian package charon-systemd or strongswan-charon)")
    d = tmp_path_factory.mktemp("strongswan")
    conf = d / "strongswan.conf"
    conf.write_text(
        "charon {\n  load = random nonce aes sha1 sha2 hmac gmp kernel-netlink socket-default\n"
        "  install_routes = no\n  filelog {\n    stderr {\n      path = /dev/stderr\n      flush_line = yes\n      default = 1\n"
        "      ike = 2\n      enc = 1\n    }\n  }\n}\n")
    log_path = d / "charon.log"
    log = open(log_path, "w")
    env = dict(os.environ, STRONGSWAN_CONF=str(conf))
    # A private /run (ip netns exec gives us a private mount namespace) for charon.pid and sockets,
    # so this charon never meets the host's or another test's.
    peer.spawn(["sh", "-c", f"mount -t tmpfs ecp-run /run && exec {CHARON_BIN}"], env=env, stdout=log, stderr=log)
    _wait_file_text(str(log_path), "spawning")
    _wait_udp_bound(peer, 4500)
    yield {"address": CHARON, "log": str(log_path)}


def test_ike_sa_init_answered_by_strongswan(ns, zone, ctx, charon):
    zone["raven.test"] = {"A": [charon["address"]]}
    r = ns.run(check_ike, target("ike", "raven.test", 4500, "udp"), ctx)
    assert (r.status, r.reason) == (Status.PASS, Reason.OK), r.message
    assert r.evidence.to_json()["ike"]["ike_reply"] is True and r.evidence.to_json()["ike"]["reply_bytes"] > 0
    assert r.evidence.to_json()["route"] == "direct"
    # strongSwan parsed a well-formed IKE_SA_INIT with every payload we sent
    _wait_file_text(charon["log"], "parsed IKE_SA_INIT request 0 [ SA KE No N(NATD_S_IP) N(NATD_D_IP) ]", 2)


def test_ike_silence_is_warn_no_response(ns, zone, ctx):
    r = ns.run(check_ike, target("ike", DROPPED, 4500, "udp"), ctx)
    assert (r.status, r.reason) == (Status.WARN, Reason.NO_RESPONSE)
    assert "cannot be confirmed" in r.message and "UDP 4500" in remediation(r, Scene())
    assert r.evidence.to_json()["ike"]["datagrams_sent"] >= 1


def test_ike_closed_port_is_refused_and_unreachable(ns, zone, ctx):
    # charon listens on every address's 4500 in the peer namespace, so "closed" uses another port.
    r = ns.run(check_ike, target("ike", CLOSED, 4501, "udp"), ctx)
    assert (r.status, r.reason) == (Status.FAIL, Reason.REFUSED)
    r = ns.run(check_ike, target("ike", HOST_UNREACHABLE, 4500, "udp"), ctx)
    assert (r.status, r.reason) == (Status.FAIL, Reason.UNREACHABLE)


def test_any_udp_reply_counts(ns, peer, ctx):
    responder = peer.run(UdpResponder, "10.77.0.1", 4502)  # 4500 is charon's
    try:
        r = ns.run(check_ike, target("ike", "10.77.0.1", 4502, "udp"), ctx)
    finally:
        responder.close()
    assert (r.status, r.reason) == (Status.PASS, Reason.OK)
    assert responder.received[0][:4] == ike.NON_ESP_MARKER
