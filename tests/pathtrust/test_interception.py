"""TLS interception: a "corporate" inspection CA in a system-like store, absent from certifi."""

from __future__ import annotations

import os
import socket
import ssl
import time

import certifi
import pytest

from edgecheck.diagnosis.advice import interception_remedy
from edgecheck.evidence import TrustSource
from edgecheck.probes import interception
from edgecheck.probes.budget import Budget


@pytest.fixture(scope="module")
def stores(pki):
    d = pki["dir"]
    with open(certifi.where()) as fh:
        public_pem = fh.read()
    # What /etc/ssl/certs/ca-certificates.crt looks like after an admin adds the inspection CA
    # (update-ca-certificates): the public roots plus the corporate one.
    system_like = os.path.join(d, "system-like-bundle.pem")
    with open(system_like, "w") as fh:
        fh.write(public_pem + pki["corp_root"].pem() + pki["public_root"].pem())
    fake_public = os.path.join(d, "fake-public-bundle.pem")
    reissued = pki["pki"].root("fake-public-root", key_from=pki["public_root"])
    with open(fake_public, "w") as fh:
        fh.write(reissued.pem())  # same subject and key as the served chain's root, other serial
    return {"system": system_like, "fake_public": fake_public}


def _handshake_and_check(address: str, host: str, cafile: str, public) -> tuple:
    ctx = ssl.create_default_context(cafile=cafile)  # built once per trust source in real use
    with socket.create_connection((address, 443), timeout=3) as sock:
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            return interception.check_chain(tls, public), interception.verified_chain(tls)


def test_corporate_ca_verifies_on_the_system_store_but_not_on_certifi(tls_lab, pki, stores):
    public = interception.public_roots()  # certifi, as requests brings it
    assert public is not None and public.count > 50
    verdict, chain = tls_lab["node"].run(_handshake_and_check, tls_lab["addresses"]["intercepted"],
                                         "registry.test", stores["system"], public)
    assert len(chain) == 3  # leaf, corp intermediate, corp root (the anchor from the system store)
    assert verdict.intercepted is True and verdict.method == "chain"
    assert "Corp TLS Inspection Issuing CA" in verdict.issuer
    assert "corp-inspection-root" in verdict.anchor
    msg = interception.message(verdict, "registry.test", 443)
    assert "re-signed by" in msg and "Corp TLS Inspection Issuing CA" in msg and "containerd" in msg
    rem = interception_remedy([verdict.anchor])
    assert "containerd" in rem and "kubelet" in rem and "corp-inspection-root" in rem


def test_a_public_chain_is_not_interception_even_with_a_reissued_root(tls_lab, pki, stores):
    public = interception.PublicRoots(stores["fake_public"])
    verdict, _ = tls_lab["node"].run(_handshake_and_check, tls_lab["addresses"]["public"], "registry.test",
                                     stores["system"], public)
    assert verdict.intercepted is False and "public root" in verdict.detail


def test_the_public_roots_are_built_once_per_bundle():
    a = interception.public_roots()
    b = interception.public_roots()
    assert a is b  # one SSLContext per run, shared by every probe


def test_fallback_handshake_against_the_public_roots(tls_lab, pki, stores):
    """CPython 3.9 cannot read the verified chain: one more handshake verified against certifi."""
    public = interception.public_roots()

    def run(name):
        sock = socket.create_connection((tls_lab["addresses"][name], 443), timeout=3)
        return interception.verify_with_public(sock, "registry.test", public, Budget(time.monotonic() + 3))

    intercepted = tls_lab["node"].run(run, "intercepted")
    assert intercepted.intercepted is True and intercepted.method == "handshake"
    assert "unable to get local issuer" in intercepted.detail
    fake = interception.PublicRoots(stores["fake_public"])

    def run_fake():
        sock = socket.create_connection((tls_lab["addresses"]["public"], 443), timeout=3)
        return interception.verify_with_public(sock, "registry.test", fake, Budget(time.monotonic() + 3))

    assert tls_lab["node"].run(run_fake).intercepted is False


def test_no_readable_chain_or_no_public_roots_gives_no_verdict():
    class NoChain:  # what an SSLSocket looks like on CPython 3.9 for this purpose
        pass

    v = interception.check_chain(NoChain(), interception.public_roots())
    assert v.intercepted is None and v.method == "unavailable" and "verify_with_public" in v.detail
    assert interception.check_chain(NoChain(), None).intercepted is None


def test_applies_only_to_the_system_store():
    assert TrustSource(True, origin="system").system_store
    assert TrustSource(True, origin="system (OpenSSL defaults)").system_store
    assert not TrustSource(False, origin="system").system_store
    for origin in ("--ca-bundle", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "--apiserver-ca", "none"):
        assert not TrustSource(True, origin=origin).system_store


def test_subject_and_key_match_across_reissue(pki, stores):
    import ssl as _ssl
    orig = _ssl.PEM_cert_to_DER_cert(pki["public_root"].pem())
    with open(stores["fake_public"]) as fh:
        again = _ssl.PEM_cert_to_DER_cert(fh.read())
    assert orig != again
    assert interception.subject_and_key(orig) == interception.subject_and_key(again)
    other = _ssl.PEM_cert_to_DER_cert(pki["corp_root"].pem())
    assert interception.subject_and_key(other) != interception.subject_and_key(orig)
    assert interception.subject_and_key(b"\x30\x03\x02\x01") is None
