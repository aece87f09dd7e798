"""Pure helpers: classification, proxy selection, certificate naming, IKE packet format."""

from __future__ import annotations

import errno
import os
import struct
import subprocess

import pytest

from edgecheck.model import Reason, Status
from edgecheck.probes import ike, ntp
from edgecheck.evidence import ConnectAttempt
from edgecheck.probes.classify import judge_connects, reason_for_errno
from edgecheck.probes.proxy import bypasses_proxy, environ_proxies, select_proxy, strip_credentials, with_host
from edgecheck.probes.resolver import Failure, describe_failure, ip_literal, outside_cidrs
from edgecheck.probes.x509 import describe_certificate
from tests.probes.servers import make_ca


def _a(addr, ok=True, code=None):
    return ConnectAttempt(addr, 443, ok, 5, None if ok else reason_for_errno(code), "" if ok else "x", code)


def test_errno_classification():
    assert reason_for_errno(errno.ECONNREFUSED) is Reason.REFUSED
    assert reason_for_errno(errno.ETIMEDOUT) is Reason.TIMEOUT
    for code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        assert reason_for_errno(code) is Reason.UNREACHABLE
    # EPERM: this host's own filter refused the packet as it was sent (SPEC 7.2).
    assert reason_for_errno(errno.EPERM) is Reason.HOST_FIREWALL


def test_judge_connects():
    assert judge_connects([_a("192.0.2.1"), _a("192.0.2.2")]).status is Status.PASS
    v = judge_connects([_a("192.0.2.1"), _a("192.0.2.2", False, errno.ECONNREFUSED)])
    assert (v.status, v.reason) == (Status.FAIL, Reason.REFUSED)
    assert [a.address for a in v.working] == ["192.0.2.1"]
    # No IPv6 route at all on this host: IPv6 addresses are not used by clients, so not a failure.
    v = judge_connects([_a("192.0.2.1"), _a("2001:db8::1", False, errno.ENETUNREACH)])
    assert v.status is Status.PASS and [a.address for a in v.ignored] == ["2001:db8::1"]
    # ...but an IPv6 address that is *filtered* (timeout) still fails.
    v = judge_connects([_a("192.0.2.1"), _a("2001:db8::1", False, errno.ETIMEDOUT)])
    assert (v.status, v.reason) == (Status.FAIL, Reason.TIMEOUT)
    assert judge_connects([_a("192.0.2.1", False, errno.ENETUNREACH)]).reason is Reason.UNREACHABLE


def test_proxy_environment_semantics():
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "HTTP_PROXY": "proxy:3128"}
    assert environ_proxies(env)["https"] == "http://lower:2"
    assert select_proxy("http", "a.example", 80, env) == "http://proxy:3128"
    assert "https" not in environ_proxies({"HTTPS_PROXY": "http://upper:1", "https_proxy": ""})
    assert select_proxy("https", "x.example", 443, {"ALL_PROXY": "http://all:1"}) == "http://all:1"
    assert "http" not in environ_proxies({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"})


def test_no_proxy_matching():
    assert bypasses_proxy("cs-anony.aliyuncs.com", 443, {"NO_PROXY": ".aliyuncs.com"})
    assert bypasses_proxy("cs-anony.aliyuncs.com", 443, {"no_proxy": "aliyuncs.com"})
    assert bypasses_proxy("anything", 443, {"NO_PROXY": "*"})
    assert bypasses_proxy("10.1.2.3", 6443, {"NO_PROXY": "10.0.0.0/8"})
    assert not bypasses_proxy("host.example", 443, {"NO_PROXY": "10.0.0.0/8"})
    assert not bypasses_proxy("10.1.2.3", 6443, {"NO_PROXY": "192.168.0.0/16"})
    assert not bypasses_proxy("a.example", 443, {"no_proxy": "", "NO_PROXY": "b.example"})  # lowercase empty
    assert bypasses_proxy("a.example", 443, {"no_proxy": "", "NO_PROXY": "a.example"})  # requests: `or`


def test_proxy_url_helpers():
    assert strip_credentials("http://u:p@proxy:3128") == "http://proxy:3128"
    assert strip_credentials("http://proxy:3128") == "http://proxy:3128"
    assert with_host("http://u:p@proxy.example:3128", "192.0.2.9") == "http://u:p@192.0.2.9:3128"
    assert with_host("http://proxy.example", "2001:db8::9") == "http://[2001:db8::9]:80"


def test_dns_error_classification_and_cidrs():
    assert describe_failure(Failure("nxdomain"))[0] is Reason.NXDOMAIN
    assert describe_failure(Failure("timeout"))[0] is Reason.DNS_TIMEOUT
    assert describe_failure(Failure("config", detail="x"))[0] is Reason.DNS_ERROR
    assert ip_literal("[2001:db8::1]") == "2001:db8::1" and ip_literal("a.example") is None
    assert outside_cidrs(["100.103.9.188", "47.1.2.3", "2001:db8::1"], ["100.103.9.188/32"]) == ["47.1.2.3", "2001:db8::1"]


@pytest.mark.parametrize("outcomes,expected", [
    ([ntp.NtpOutcome("a", True, 0.01, 0.02, 2, 0)], (Status.PASS, Reason.OK)),
    ([ntp.NtpOutcome("a", True, 0.6, 0.02, 2, 0)], (Status.WARN, Reason.CLOCK_OFFSET)),
    ([ntp.NtpOutcome("a", True, -61.0, 0.02, 2, 0)], (Status.FAIL, Reason.CLOCK_OFFSET)),
    ([ntp.NtpOutcome("a", True, 0.0, 0.02, 16, 0)], (Status.WARN, Reason.CLOCK_UNSYNCHRONISED)),
    ([ntp.NtpOutcome("a", False, reason=Reason.TIMEOUT)], (Status.FAIL, Reason.TIMEOUT)),
    ([ntp.NtpOutcome("a", False, reason=Reason.REFUSED)], (Status.FAIL, Reason.REFUSED)),
])
def test_judge_ntp(outcomes, expected):
    v = ntp.judge_ntp(outcomes)
    assert (v.status, v.reason) == expected


def test_judge_ike():
    assert ike.judge_ike([ike.IkeOutcome("a", True)]).status is Status.PASS
    assert ike.judge_ike([ike.IkeOutcome("a", False, Reason.NO_RESPONSE)]).reason is Reason.NO_RESPONSE
    v = ike.judge_ike([ike.IkeOutcome("a", True), ike.IkeOutcome("b", False, Reason.REFUSED)])
    assert (v.status, v.reason) == (Status.FAIL, Reason.REFUSED)


def _pi_modp_2048() -> int:
    """RFC 3526: p = 2^2048 - 2^1984 - 1 + 2^64 * ( [2^1918 pi] + 124476 ), computed from Machin's formula."""
    def arctan_inv(x, one):
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            sign, n = -sign, n + 1
        return total
    guard = 64
    one = 1 << (1918 + guard)
    pi = 4 * (4 * arctan_inv(5, one) - arctan_inv(239, one))
    return 2 ** 2048 - 2 ** 1984 - 1 + 2 ** 64 * ((pi >> guard) + 124476)


def test_modp_group_14_prime():
    assert ike.MODP_2048_PRIME == _pi_modp_2048()


def test_ike_sa_init_layout():
    spi = bytes(range(8))
    msg = ike.build_ike_sa_init(spi, ("192.0.2.1", 4500), ("198.51.100.1", 4500))
    assert msg[:8] == spi and msg[8:16] == b"\0" * 8
    next_payload, version, exchange, flags, msg_id, length = struct.unpack("!BBBBII", msg[16:28])
    assert (next_payload, version, exchange, flags, msg_id, length) == (33, 0x20, 34, 0x08, 0, len(msg))
    parsed = ike.parse_reply(ike.NON_ESP_MARKER + msg, spi)
    assert parsed.payloads == [33, 34, 40, 41, 41]
    assert parsed.notify == ["NAT_DETECTION_SOURCE_IP", "NAT_DETECTION_DESTINATION_IP"]
    # KE payload: group 14, 256-byte public value
    ke_at = 28 + struct.unpack("!H", msg[30:32])[0]
    assert struct.unpack("!HH", msg[ke_at + 4:ke_at + 8]) == (14, 0)
    assert struct.unpack("!H", msg[ke_at + 2:ke_at + 4])[0] == 8 + 256
    assert ike.parse_reply(b"junk", spi).is_ike is False


def test_certificate_description_matches_openssl(tmp_path):
    ca = make_ca(str(tmp_path), "naming-ca")
    der = subprocess.run(["openssl", "x509", "-in", ca["cert"], "-outform", "DER"], check=True,
                         capture_output=True).stdout
    desc = describe_certificate(der)
    assert desc is not None and desc.subject == "CN=naming-ca, O=edgecheck-test" == desc.issuer
    end = subprocess.run(["openssl", "x509", "-in", ca["cert"], "-noout", "-enddate", "-dateopt", "iso_8601"],
                         check=True, capture_output=True, text=True).stdout.strip().split("=", 1)[1]
    assert desc.not_after == end.replace(" ", "T")
    assert describe_certificate(os.urandom(3)) is None
