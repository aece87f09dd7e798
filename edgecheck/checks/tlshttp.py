"""The TLS and HTTP layers of the web checks, shared by the direct and the proxied path."""

from __future__ import annotations

import socket
from typing import Callable, Optional

from edgecheck.checks.base import Probing
from edgecheck.evidence import Connects, HttpResult, TlsResult, TrustSource
from edgecheck.model import CheckResult, Reason, Status
from edgecheck.netloc import host_port
from edgecheck.probes.budget import Budget
from edgecheck.probes.classify import plural
from edgecheck.probes.tls import fetch_peer_certificate, handshake


def verified_handshake(sock: socket.socket, host: str, trust: TrustSource, budget: Budget,
                       reconnect: Callable[[], Optional[socket.socket]]) -> TlsResult:
    """The handshake; when verification fails, the certificate is fetched again unverified over
    a new connection (the stdlib hides a rejected certificate) so the report can name it."""
    tls = handshake(sock, host, trust, budget)
    if tls.reason is Reason.TLS_VERIFY_FAILED:
        again = reconnect()
        if again is not None:
            tls.peer_certificate = fetch_peer_certificate(again, host, budget)
    return tls


def tls_failure(probing: Probing, tls: TlsResult, via: str) -> CheckResult:
    t = probing.target
    if tls.reason is Reason.TLS_VERIFY_FAILED:
        cert = tls.peer_certificate
        who = (f" (peer certificate subject \"{cert.subject}\", issuer \"{cert.issuer}\", "
               f"expires {cert.not_after})") if cert else ""
        return probing.result(Status.FAIL, Reason.TLS_VERIFY_FAILED,
                              f"TLS to {host_port(t.host or '', t.port)}{via} connects but the certificate fails "
                              f"verification: {tls.verify_error}{who}.")
    return probing.result(Status.FAIL, Reason.TLS_HANDSHAKE_FAILED,
                          f"TCP to {host_port(t.host or '', t.port)}{via} connects but the TLS handshake fails: {tls.error}.")


def http_failure(probing: Probing, http: HttpResult, proxy_url: Optional[str]) -> CheckResult:
    reason = http.reason or Reason.INTERNAL_ERROR
    if reason is Reason.PROXY_ERROR and proxy_url:
        msg = f"The proxy {proxy_url} failed the request to {http.url}: {http.error}."
    elif reason is Reason.TLS_VERIFY_FAILED:
        msg = f"The HTTPS request to {http.url} fails certificate verification: {http.error}."
    elif reason is Reason.TLS_HANDSHAKE_FAILED:
        msg = f"The HTTPS request to {http.url} fails in the TLS handshake: {http.error}."
    else:
        layer = "TLS works but" if probing.target.probe == "https" else "TCP connects but"
        msg = f"{layer} the HTTP request to {http.url} got no response: {http.error}."
    return probing.result(Status.FAIL, reason, msg)


def web_passed(probing: Probing, scheme: str, tls: Optional[TlsResult], http: HttpResult,
               trust: Optional[TrustSource], proxy: str) -> CheckResult:
    t = probing.target
    if proxy:
        parts = [f"through the proxy {proxy}"]
    else:
        connects = probing.evidence.find(Connects)
        n = sum(1 for a in connects.attempts if a.ok) if connects else 0
        parts = [f"TCP connects on {plural(n, 'address')}"]
    if tls is not None:
        if tls.verified:
            parts.append(f"{tls.version} certificate verified ({trust.origin if trust else ''})")
        else:  # only the cluster's own CA can be missing (Trust.CLUSTER without --apiserver-ca)
            parts.append(f"{tls.version} handshake completes but the certificate was NOT verified (no --apiserver-ca)")
    parts.append(f"HTTP {http.status} in {http.ms} ms")
    return probing.result(Status.PASS, Reason.OK, f"{scheme.upper()} to {host_port(t.host or '', t.port)} works: " + ", ".join(parts) + ".")
