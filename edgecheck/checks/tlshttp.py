"""The TLS and HTTP layers of the web checks, shared by the direct and the proxied path."""

from __future__ import annotations

import socket
import ssl
from typing import Callable, Optional, Tuple

from edgecheck.checks.base import Probing
from edgecheck.evidence import Connects, HttpResult, TlsInterception, TlsResult, TrustSource
from edgecheck.model import CheckResult, Reason, Status, Trust
from edgecheck.netloc import host_port
from edgecheck.probes import tlskind
from edgecheck.probes.classify import plural
from edgecheck.probes.tls import fetch_peer_certificate, handshake_open

Reconnect = Callable[[], Optional[socket.socket]]


def open_tls(probing: Probing, sock: socket.socket, trust: TrustSource,
             reconnect: Reconnect) -> Tuple[TlsResult, Optional[ssl.SSLSocket]]:
    """The handshake with the run's context for this trust source; the open TLS socket on success.
    When verification fails, the certificate is fetched again unverified over a new connection
    (the stdlib hides a rejected certificate) so the report can name it."""
    host = probing.target.host or ""
    context = probing.ctx.facts.tls_context(trust)
    tls, stream = handshake_open(sock, host, trust, probing.budget, context)
    if tls.reason is Reason.TLS_VERIFY_FAILED:
        again = reconnect()
        if again is not None:
            tls.peer_certificate = fetch_peer_certificate(again, host, probing.budget)
    return tls, stream


def note_interception(probing: Probing, stream: ssl.SSLSocket, trust: TrustSource, reconnect: Reconnect) -> None:
    """With the system store as trust source, compare the chain that verified with the public
    roots; the verdict goes into the evidence (web_passed turns an interception into a warning).
    With --ca-bundle, REQUESTS_CA_BUNDLE or SSL_CERT_FILE the user chose the trust: nothing to say."""
    if not (trust.system_store and probing.target.trust is Trust.PUBLIC):
        return
    from edgecheck.probes import interception  # its DER walker and public roots: for the system store only

    public = probing.ctx.facts.public_roots()
    verdict = interception.check_chain(stream, public)
    if verdict.intercepted is None and public is not None and verdict.method == "unavailable":
        again = reconnect()  # CPython 3.9 cannot read the verified chain: one more handshake
        if again is not None:
            verdict = interception.verify_with_public(again, probing.target.host or "", public, probing.budget)
    probing.add(TlsInterception(verdict.intercepted, verdict.method, verdict.issuer, verdict.anchor,
                                verdict.public_roots, verdict.detail))


def tls_failure(probing: Probing, tls: TlsResult, via: str) -> CheckResult:
    t = probing.target
    if tls.reason is Reason.TLS_VERIFY_FAILED:
        kind = tls.verify_kind or tlskind.classify_message(tls.verify_error or "").kind
        return probing.result(Status.FAIL, Reason.TLS_VERIFY_FAILED,
                              tlskind.message(t.host or "", int(t.port or 443), kind, tls.peer_certificate, via))
    return probing.result(Status.FAIL, Reason.TLS_HANDSHAKE_FAILED,
                          f"TCP to {host_port(t.host or '', t.port)}{via} connects but the TLS handshake fails: {tls.error}.")


def http_failure(probing: Probing, http: HttpResult, proxy_url: Optional[str]) -> CheckResult:
    reason = http.reason or Reason.INTERNAL_ERROR
    if reason is Reason.PROXY_ERROR and proxy_url:
        msg = f"The proxy {proxy_url} failed the request to {http.url}: {http.error}."
    elif reason is Reason.TLS_VERIFY_FAILED:
        kind = tlskind.classify_message(http.error)
        msg = f"The HTTPS request to {http.url} fails certificate verification: {kind.words} ({http.error})."
    elif reason is Reason.TLS_HANDSHAKE_FAILED:
        msg = f"The HTTPS request to {http.url} fails in the TLS handshake: {http.error}."
    else:
        layer = "TLS works but" if probing.target.probe == "https" else "TCP connects but"
        msg = f"{layer} the HTTP request to {http.url} got no response: {http.error}."
    return probing.result(Status.FAIL, reason, msg)


def web_passed(probing: Probing, scheme: str, tls: Optional[TlsResult], http: HttpResult,
               trust: Optional[TrustSource], proxy: str) -> CheckResult:
    t = probing.target
    intercepted = probing.evidence.find(TlsInterception)
    if intercepted is not None and intercepted.intercepted:
        from edgecheck.probes import interception

        return probing.result(Status.WARN, Reason.TLS_INTERCEPTED, interception.message(
            interception.InterceptionVerdict(True, intercepted.method, intercepted.anchor, intercepted.issuer),
            t.host or "", int(t.port or 443)))
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
