"""https and http through the HTTP(S) proxy the environment names, as the node's components use it.

The name is not resolved locally (the proxy resolves it); the proxy's own address is. For https
the certificate is verified through a CONNECT tunnel exactly as requests will, then the request
goes through the proxy with the environment's proxy rules.
"""

from __future__ import annotations

import socket
from typing import Optional

from edgecheck.checks.base import Probing, close_all
from edgecheck.checks.tlshttp import http_failure, tls_failure, verified_handshake, web_passed
from edgecheck.evidence import ProxyRoute, TlsResult, TrustSource
from edgecheck.model import CheckResult, Reason, Status
from edgecheck.probes import httpget
from edgecheck.probes.proxy import proxy_authorization, proxy_endpoint, strip_credentials, with_host
from edgecheck.probes.tcp import connect_all
from edgecheck.probes.tls import ProxyTunnelError, open_tunnel, requests_verify


def web_via_proxy(probing: Probing, scheme: str, port: int, trust: Optional[TrustSource],
                  proxy_url: str) -> CheckResult:
    host = probing.target.host or ""
    shown = strip_credentials(proxy_url)
    pscheme, phost, pport = proxy_endpoint(proxy_url)

    def proxy_error(detail: str) -> CheckResult:
        return probing.result(Status.FAIL, Reason.PROXY_ERROR,
                              f"The proxy {shown} for {scheme.upper()} to {host}:{port} failed: {detail}.")

    probing.add(ProxyRoute(shown))
    if pscheme not in ("http", "https"):
        return proxy_error(f"proxy scheme {pscheme!r} is not supported by this probe (use an http:// proxy URL)")
    pres = probing.ctx.facts.resolver().resolve(phost, probing.budget)
    if not pres.ok:
        return proxy_error(f"the proxy host {phost} does not resolve ({pres.error})")
    attempts, socks = connect_all(pres.addresses, pport, probing.budget, keep_open=True)
    probing.add(ProxyRoute(shown, tuple(pres.addresses), tuple(attempts)))
    working = [a for a in attempts if a.ok]
    if not working:
        close_all(socks)
        return proxy_error("cannot connect to it: " + "; ".join(f"{a.address}:{pport} {a.error}" for a in attempts))
    chosen = min(working, key=lambda a: a.ms)
    sock = socks.pop(chosen.address)
    close_all(socks)
    auth = proxy_authorization(proxy_url)

    tls: Optional[TlsResult] = None
    if trust is not None and pscheme == "http":
        def tunnel_again() -> Optional[socket.socket]:
            _, again = connect_all([chosen.address], pport, probing.budget, keep_open=True)
            if chosen.address not in again:
                return None
            try:
                return open_tunnel(again[chosen.address], host, port, auth, probing.budget)
            except ProxyTunnelError:
                return None

        try:
            tunnel = open_tunnel(sock, host, port, auth, probing.budget)
        except ProxyTunnelError as exc:
            return proxy_error(str(exc))
        tls = verified_handshake(tunnel, host, trust, probing.budget, tunnel_again)
        tls.address = f"via {shown}"
        probing.add(tls)
        if not tls.ok:
            return tls_failure(probing, tls, f" through the proxy {shown}")
    else:
        sock.close()
    http = httpget.request(scheme, host, port, probing.budget, proxy_url=with_host(proxy_url, chosen.address),
                           verify=requests_verify(trust) if trust else True)
    probing.add(http)
    if not http.ok:
        return http_failure(probing, http, shown)
    if scheme == "http" and http.status in (502, 503, 504):
        # Plain HTTP through a proxy: a gateway error is the proxy saying it could not reach the host.
        return proxy_error(f"it answered HTTP {http.status} for {http.url}, i.e. it could not reach {host}")
    return web_passed(probing, scheme, tls, http, trust, shown)
