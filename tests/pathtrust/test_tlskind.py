"""TLS failure kinds from real handshakes with real certificates (openssl ca dates), and the
clock explanation of date failures."""

from __future__ import annotations

import datetime
import socket
import ssl

import pytest

from edgecheck.diagnosis.advice import tls_verify_remedy
from edgecheck.evidence import Certificate, TrustSource
from edgecheck.probes import tlskind
from edgecheck.probes.budget import Budget
from edgecheck.probes.ntp import CLOCK_OFFSET_FAIL_S, CLOCK_OFFSET_WARN_S
from edgecheck.probes.tls import handshake_open
from edgecheck.probes.x509 import describe_certificate

LIMITS = {"warn_s": CLOCK_OFFSET_WARN_S, "fail_s": CLOCK_OFFSET_FAIL_S}

CASES = {
    "good": ("good.test", None),
    "expired": ("expired.test", tlskind.EXPIRED),
    "future": ("future.test", tlskind.NOT_YET_VALID),
    "wrongname": ("wrongname.test", tlskind.HOSTNAME_MISMATCH),  # cert is for somebody-else.test
    "selfsigned": ("selfsigned.test", tlskind.SELF_SIGNED),
    "stranger": ("stranger.test", tlskind.UNKNOWN_ISSUER),  # issued by a CA not in the bundle
}


def _connect_and_verify(address: str, host: str, cafile: str):
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection((address, 443), timeout=3) as sock:
        try:
            with ctx.wrap_socket(sock, server_hostname=host):
                return None
        except ssl.SSLCertVerificationError as exc:
            return exc


def _fetch_leaf(address: str, host: str) -> Certificate:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((address, 443), timeout=3) as sock:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            return describe_certificate(tls.getpeercert(binary_form=True))


@pytest.mark.parametrize("name", sorted(CASES))
def test_verify_kind_of_a_real_handshake(tls_lab, pki, name):
    host, expected = CASES[name]
    exc = tls_lab["node"].run(_connect_and_verify, tls_lab["addresses"][name], host, pki["root"].cert)
    if expected is None:
        assert exc is None
        return
    assert isinstance(exc, ssl.SSLCertVerificationError)
    kind = tlskind.classify(exc)
    assert kind.kind == expected, (exc.verify_code, exc.verify_message)
    assert kind.code == exc.verify_code and kind.detail
    assert kind.evidence()["verify_kind"] == expected
    # The text alone (what tls.TlsOutcome keeps today) classifies the same way.
    assert tlskind.classify_message(exc.verify_message).kind == expected


def test_verify_kind_through_the_existing_tls_layer(tls_lab, pki):
    """tls.handshake_open keeps verify_error text; classify_message gives the kind from it."""
    def run():
        sock = socket.create_connection((tls_lab["addresses"]["wrongname"], 443), timeout=3)
        trust = TrustSource(True, cafile=pki["root"].cert, origin="--ca-bundle")
        import time
        out, tls = handshake_open(sock, "wrongname.test", trust, Budget(time.monotonic() + 3))
        if tls is not None:
            tls.close()
        return out

    out = tls_lab["node"].run(run)
    assert tlskind.classify_message(out.verify_error).kind == tlskind.HOSTNAME_MISMATCH


def test_ip_address_mismatch_is_hostname_mismatch(tls_lab, pki):
    # Connecting by IP literal to a certificate without that IP SAN: X509_V_ERR_IP_ADDRESS_MISMATCH.
    address = tls_lab["addresses"]["good"]
    exc = tls_lab["node"].run(_connect_and_verify, address, address, pki["root"].cert)
    assert exc.verify_code == tlskind.X509_V_ERR_IP_ADDRESS_MISMATCH
    assert tlskind.classify(exc).kind == tlskind.HOSTNAME_MISMATCH


def test_chain_with_an_untrusted_root_sent_along_is_unknown_issuer(tls_lab, pki):
    # The intercepted server sends its intermediate; without the corp root in the bundle the
    # failure is "unable to get local issuer" -> unknown-issuer.
    exc = tls_lab["node"].run(_connect_and_verify, tls_lab["addresses"]["intercepted"], "registry.test",
                              pki["root"].cert)
    assert tlskind.classify(exc).kind == tlskind.UNKNOWN_ISSUER


@pytest.mark.parametrize("code,kind", [(2, "unknown-issuer"), (19, "unknown-issuer"), (20, "unknown-issuer"),
                                       (21, "unknown-issuer"), (18, "self-signed"), (62, "hostname-mismatch"),
                                       (64, "hostname-mismatch"), (10, "expired"), (9, "not-yet-valid"),
                                       (7, "other"), (None, "other")])
def test_kind_for_code(code, kind):
    assert tlskind.kind_for_code(code) == kind


def test_every_kind_has_words():
    for k in tlskind.KINDS:
        assert tlskind._WORDS[k]


# ------------------------------------------------------------------------------ the clock
NOW = datetime.datetime(2026, 6, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def test_not_yet_valid_on_a_clock_that_is_behind_is_the_clocks_fault():
    # cert valid from NOW+2d; this host is 3 days behind (offset +3d): at true time it is valid.
    e = tlskind.explain_by_clock(tlskind.NOT_YET_VALID, "2026-06-03T12:00:00Z", "2026-07-01T12:00:00Z",
                                 3 * 86400.0, NOW, **LIMITS)
    assert e.explained is True and e.clock_status == "fail"
    assert "behind" in e.words and "fix the clock" in e.words
    assert e.true_time == "2026-06-04T12:00:00Z"


def test_expired_on_a_clock_that_is_ahead_is_the_clocks_fault():
    e = tlskind.explain_by_clock(tlskind.EXPIRED, "2026-05-01T00:00:00Z", "2026-05-31T00:00:00Z",
                                 -2 * 86400.0, NOW, **LIMITS)
    assert e.explained is True and "ahead" in e.words


def test_expired_with_a_good_clock_is_the_servers_certificate():
    e = tlskind.explain_by_clock(tlskind.EXPIRED, "2026-05-01T00:00:00Z", "2026-05-31T00:00:00Z", 0.02, NOW, **LIMITS)
    assert e.explained is False and e.clock_status == "ok" and "clock is right" in e.words


def test_clock_off_but_certificate_bad_anyway():
    e = tlskind.explain_by_clock(tlskind.EXPIRED, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", 120.0, NOW, **LIMITS)
    assert e.explained is False and e.clock_status == "fail" and "even at the correct time" in e.words


def test_thresholds_and_unknowns():
    # 0.3 s off is within the warn threshold: never blamed on the clock.
    e = tlskind.explain_by_clock(tlskind.NOT_YET_VALID, "2026-06-01T12:00:00Z", "2026-07-01T00:00:00Z", 0.3,
                                 NOW - datetime.timedelta(seconds=0.2), **LIMITS)
    assert e.explained is False and e.clock_status == "ok"
    e = tlskind.explain_by_clock(tlskind.NOT_YET_VALID, "2026-06-01T12:00:01Z", "2026-07-01T00:00:00Z", 5.0, NOW, **LIMITS)
    assert e.explained is True and e.clock_status == "warn"
    assert tlskind.explain_by_clock(tlskind.EXPIRED, None, None, 5.0, NOW, **LIMITS).explained is None
    assert tlskind.explain_by_clock(tlskind.EXPIRED, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", None, NOW, **LIMITS).explained is None
    assert tlskind.explain_by_clock(tlskind.HOSTNAME_MISMATCH, None, None, 500.0, NOW, **LIMITS).explained is False
    assert tlskind.parse_time("Jun  1 12:00:00 2026 GMT") == NOW


def test_clock_explanation_with_the_real_not_yet_valid_certificate(tls_lab):
    leaf = tls_lab["node"].run(_fetch_leaf, tls_lab["addresses"]["future"], "future.test")
    # The lab certificate starts in two days: a host three days behind would see it valid.
    behind = tlskind.explain_by_clock(tlskind.NOT_YET_VALID, leaf.not_before, leaf.not_after, 3 * 86400.0, **LIMITS)
    assert behind.explained is True
    right = tlskind.explain_by_clock(tlskind.NOT_YET_VALID, leaf.not_before, leaf.not_after, 0.01, **LIMITS)
    assert right.explained is False


def test_message_in_words_and_remedy_under_the_clock():
    cert = Certificate("CN=future.test", "CN=lab-root", "2026-06-03T12:00:00Z", "2026-07-01T12:00:00Z")
    kind = tlskind.NOT_YET_VALID
    clock = tlskind.explain_by_clock(kind, cert.not_before, cert.not_after, 3 * 86400.0, NOW, **LIMITS)
    msg = tlskind.message("future.test", 443, kind, cert)
    assert "it is not valid yet" in msg and "CN=lab-root" in msg
    rem = tls_verify_remedy(kind, clock)
    assert rem.startswith("The cause is this host's clock") and "Fix the clock first" in rem
    good_clock = tlskind.explain_by_clock(kind, cert.not_before, cert.not_after, 0.0, NOW, **LIMITS)
    rem = tls_verify_remedy(kind, good_clock)
    assert rem.startswith("Not the clock") and "renew" in rem
    for k in tlskind.KINDS:
        assert tlskind.words(k) in tlskind.message("h", 443, k) and tls_verify_remedy(k)
