"""https and http through the HTTP(S) proxy the environment names, as the node's components use it.

The name is not resolved locally (the proxy resolves it); the proxy's own address is. For https
the certificate is verified through a CONNECT tunnel exactly as requests will, then the request
goes through the proxy with the environment's proxy rules.
"""

from __future__ import annotations

import socket
from typing import Optional

from edgecheck.checks.base import Probing, close_all
from edgecheck.checks.tlshttp import http_failure, note_interception, open_tls, tls_failure, web_passed
from edgecheck.evidence import ProxyRoute, TlsResult, TrustSource
from edgecheck.model import CheckResult, Reason, Status
from edgecheck.netloc import host_port
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
                              f"The proxy {shown} for {scheme.upper()} to {host_port(host, port)} failed: {detail}.")

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
        try:
            tls = _tls_through_tunnel(probing, sock, chosen.address, pport, port, auth, trust)
        except ProxyTunnelError as exc:
            return proxy_error(str(exc))
        tls.address = f"via {shown}"
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


def _tls_through_tunnel(probing: Probing, sock: socket.socket, proxy_address: str, proxy_port: int, port: int,
                        auth: Optional[str], trust: TrustSource) -> TlsResult:
    """CONNECT through the proxy, then the verified handshake in the tunnel (and the interception
    verdict: an inspecting proxy re-signs in exactly this tunnel). Raises ProxyTunnelError."""
    host = probing.target.host or ""

    def tunnel_again() -> Optional[socket.socket]:
        _, again = connect_all([proxy_address], proxy_port, probing.budget, keep_open=True)
        if proxy_address not in again:
            return None
        try:
            return open_tunnel(again[proxy_address], host, port, auth, probing.budget)
        except ProxyTunnelError:
            return None

    tunnel = open_tunnel(sock, host, port, auth, probing.budget)
    tls, stream = open_tls(probing, tunnel, trust, tunnel_again)
    probing.add(tls)
    if stream is not None:
        try:
            note_interception(probing, stream, trust, tunnel_again)
        finally:
            stream.close()
    return tls
