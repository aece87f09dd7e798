"""https and http: DNS, TCP connect, TLS with verification (https), one HTTP request.

Any HTTP status proves reachability. On the direct path the request goes over the connection
that was just connected (and verified): one TCP and TLS handshake per check. A stalled handshake
or response is retried with a smaller TCP MSS inside the probe budget (pathmtu.py). When the
environment names a proxy for the URL (as it would for the node's components), the request goes
through it: see webproxy.py.
"""

from __future__ import annotations

import encodings.idna
import os
import socket
import ssl
from typing import Optional, Sequence, Tuple

from edgecheck.checks import pathmtu
from edgecheck.checks.base import Probing, close_all
from edgecheck.checks.tlshttp import http_failure, note_interception, open_tls, tls_failure, web_passed
from edgecheck.evidence import DirectRoute, HttpResult, TlsResult, TrustSource
from edgecheck.model import CheckResult, Reason, Target, Trust
from edgecheck.probes import http11, pmtu
from edgecheck.probes.proxy import select_proxy
from edgecheck.probes.tcp import connect_all
from edgecheck.probes.tls import system_trust
from edgecheck.runcontext import RunContext

# ssl encodes server_hostname with the idna codec: imported with this module (before the checks
# start) rather than inside the run's first handshake, with every other check waiting on the import.
IDNA = encodings.idna.Codec


def warm(targets: Sequence[Target], ctx: RunContext) -> None:
    """Build the run's SSLContexts (one per trust source) on a background thread from the moment
    the plan is known: loading a system CA bundle costs tens of ms, once per run, and the first
    handshakes would otherwise wait for it. The resolver's configuration is read now too (a small
    file): otherwise every check's first lookup queues on the lock of the one reading it."""
    ctx.facts.resolver().conf()
    pmtu.start_alarms()
    trusts = list(dict.fromkeys(trust_for(t, ctx) for t in targets if t.probe == "https" and t.skip is None))

    def build() -> None:
        for trust in trusts:
            ctx.facts.tls_context(trust)

    if trusts:
        ctx.facts.prefetch("tls-contexts", build)


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
        from edgecheck.checks.webproxy import web_via_proxy  # requests: only the proxy path needs it

        return web_via_proxy(probing, scheme, port, trust, proxy_url)
    return _web_direct(probing, scheme, port, trust)


def _web_direct(probing: Probing, scheme: str, port: int, trust: Optional[TrustSource]) -> CheckResult:
    probing.add(DirectRoute())
    failed = probing.resolve()
    if failed:
        return failed
    attempts, socks = probing.connect(probing.addresses, port, keep_open=not probing.outside)
    if probing.outside:
        close_all(socks)
        return probing.cidr_failure()
    failed = probing.connect_failure(attempts)
    if failed:
        close_all(socks)
        return failed
    address = min((a for a in attempts if a.ok), key=lambda a: a.ms).address
    stream: socket.socket = socks.pop(address)
    close_all(socks)
    tls: Optional[TlsResult] = None
    if trust is not None:
        tls, opened, failed = _direct_tls(probing, stream, address, port, trust)
        if failed or opened is None:
            return failed or tls_failure(probing, tls, "")
        stream = opened
    try:
        http, failed = _direct_http(probing, stream, scheme, address, port)
    finally:
        stream.close()
    return failed or web_passed(probing, scheme, tls, http, trust, "")


def _direct_tls(probing: Probing, sock: socket.socket, address: str, port: int, trust: TrustSource
                ) -> Tuple[TlsResult, Optional[ssl.SSLSocket], Optional[CheckResult]]:
    """Handshake with a stall watch next to it; on success the interception verdict is taken on
    the open connection. Returns (tls, open TLS socket or None, failure or None)."""

    def reconnect() -> Optional[socket.socket]:
        _, again = connect_all([address], port, probing.budget, keep_open=True)
        return again.get(address)

    watch = pathmtu.watch(probing, address, port, probing.ctx.facts.tls_context(trust), sock=sock)
    tls, stream = open_tls(probing, sock, trust, reconnect)
    tls.address = address
    probing.add(tls)
    failed = pathmtu.judge(probing, watch, tls.timed_out, "tls")
    if failed is not None or stream is None:
        if stream is not None:
            stream.close()
        return tls, None, failed or tls_failure(probing, tls, "")
    note_interception(probing, stream, trust, reconnect)
    return tls, stream, None


def _direct_http(probing: Probing, stream: socket.socket, scheme: str, address: str, port: int
                 ) -> Tuple[HttpResult, Optional[CheckResult]]:
    tls = isinstance(stream, ssl.SSLSocket)
    context = stream.context if isinstance(stream, ssl.SSLSocket) else None
    watch = pathmtu.watch(probing, address, port, context, sock=None if tls else stream, http=True)
    http = http11.get(stream, scheme, probing.target.host or address, port, probing.budget)
    probing.add(http)
    failed = pathmtu.judge(probing, watch, http.reason is Reason.TIMEOUT, "http")
    if failed is None and not http.ok:
        failed = http_failure(probing, http, None)
    return http, failed


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
