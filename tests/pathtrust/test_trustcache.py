"""One SSLContext per trust source per run."""

from __future__ import annotations

from edgecheck.evidence import TrustSource
from edgecheck.probes.trustcache import ContextCache


def test_one_context_per_trust_source(pki):
    cache = ContextCache()
    a = cache.get(TrustSource(True, cafile=pki["root"].cert, origin="--ca-bundle"))
    b = cache.get(TrustSource(True, cafile=pki["root"].cert, origin="--ca-bundle"))
    c = cache.get(TrustSource(True, cafile=pki["corp_root"].cert, origin="--ca-bundle"))
    assert a is b and a is not c
    assert ContextCache().get(TrustSource(True, cafile=pki["root"].cert)) is not a  # a new run, a new context
    first = cache.public()
    assert first is not None and cache.public() is first  # certifi's roots parsed once per run
