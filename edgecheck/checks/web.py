"""https and http: DNS, TCP connect, TLS with verification (https), one HTTP request.

Any HTTP status proves reachability. When the environment names a proxy for the URL (as it would
for the node's components), the request goes through it: see webproxy.py.
"""

from __future__ import annotations

import os
import socket
from typing import Optional

from edgecheck.checks.base import Probing, close_all
from edgecheck.checks.tlshttp import http_failure, tls_failure, verified_handshake, web_passed
from edgecheck.checks.webproxy import web_via_proxy
from edgecheck.evidence import DirectRoute, TlsResult, TrustSource
from edgecheck.model import CheckResult, Target, Trust
from edgecheck.probes import httpget
from edgecheck.probes.proxy import select_proxy
from edgecheck.probes.tcp import connect_all
from edgecheck.probes.tls import requests_verify, system_trust
from edgecheck.runcontext import RunContext


def check_https(target: Target, ctx: RunContext) -> CheckResult:
    return check_web(target, ctx, "https")


def check_http(target: Target, ctx: RunContext) -> CheckResult:
    return check_web(target, ctx, "http")


def check_web(target: Target, ctx: RunContext, scheme: str) -> CheckResult:
    probing = Probing(target, ctx)
    port = int(target.port or (443 if scheme == "https" else 80))
    trust = trust_for(target, ctx) if scheme == "https" else None
    probing.add(trust)
    proxy_url = select_proxy(scheme, target.host or "", port, ctx.environ)
    if proxy_url:
        return web_via_proxy(probing, scheme, port, trust, proxy_url)
    return _web_direct(probing, scheme, port, trust)


def _web_direct(probing: Probing, scheme: str, port: int, trust: Optional[TrustSource]) -> CheckResult:
    host = probing.target.host or ""
    probing.add(DirectRoute())
    failed = probing.resolve()
    if failed:
        return failed
    attempts, socks = probing.connect(probing.addresses, port, keep_open=(trust is not None and not probing.outside))
    if probing.outside:
        close_all(socks)
        return probing.cidr_failure()
    failed = probing.connect_failure(attempts)
    if failed:
        close_all(socks)
        return failed
    chosen = min((a for a in attempts if a.ok), key=lambda a: a.ms)
    tls: Optional[TlsResult] = None
    if trust is not None:
        sock = socks.pop(chosen.address)
        close_all(socks)

        def reconnect() -> Optional[socket.socket]:
            _, again = connect_all([chosen.address], port, probing.budget, keep_open=True)
            return again.get(chosen.address)

        tls = verified_handshake(sock, host, trust, probing.budget, reconnect)
        tls.address = chosen.address
        probing.add(tls)
        if not tls.ok:
            return tls_failure(probing, tls, "")
    http = httpget.request(scheme, host, port, probing.budget, address=chosen.address,
                           verify=requests_verify(trust) if trust else True)
    probing.add(http)
    if not http.ok:
        return http_failure(probing, http, None)
    return web_passed(probing, scheme, tls, http, trust, "")


def trust_for(target: Target, ctx: RunContext) -> TrustSource:
    if target.trust is Trust.CLUSTER:
        if ctx.apiserver_ca:
            return TrustSource(True, cafile=ctx.apiserver_ca, origin="--apiserver-ca")
        return TrustSource(False, origin="none: no --apiserver-ca given")
    if ctx.ca_bundle:
        if os.path.isdir(ctx.ca_bundle):
            return TrustSource(True, capath=ctx.ca_bundle, origin=ctx.ca_origin)
        return TrustSource(True, cafile=ctx.ca_bundle, origin=ctx.ca_origin)
    return system_trust()
