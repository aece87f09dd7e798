"""One check per network probe kind: compose DNS -> connect -> TLS -> HTTP (or NTP / IKE) into a
CheckResult whose reason names the first failing layer (SPEC section 3).

Each check takes (target, ctx, *, resolve) where resolve(host, budget) -> Resolution; the engine
binds a per-run SharedResolver so a hostname is resolved once per run.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from edgecheck.model import CheckResult, Reason, RunContext, Status, Target, Trust
from edgecheck.probes import httpget, ike, ntp, remedies
from edgecheck.probes.budget import Budget, elapsed_ms, run_parallel
from edgecheck.probes.classify import ConnectAttempt, judge_connects, plural
from edgecheck.probes.proxy import (proxy_authorization, proxy_endpoint, select_proxy, strip_credentials,
                                    with_host)
from edgecheck.probes.resolver import Resolution, outside_cidrs, resolve as resolve_uncached
from edgecheck.probes.tcp import connect_all
from edgecheck.probes.tls import (ProxyTunnelError, TlsOutcome, TrustSource, fetch_peer_certificate,
                                  handshake, open_tunnel, trust_for)

Resolve = Callable[[str, Budget], Resolution]


def _resolver_for(ctx: RunContext, resolve: Optional[Resolve]) -> Resolve:
    return resolve or (lambda host, budget: resolve_uncached(host, ctx.resolv_conf, budget))


class _Run:
    """Per-check state: the budget, the evidence being collected, and result construction."""

    def __init__(self, target: Target, ctx: RunContext) -> None:
        self.target, self.ctx = target, ctx
        self.start = time.monotonic()
        self.budget = Budget.for_probe(ctx)
        self.ev: Dict[str, Any] = {}
        self.outside: List[str] = []

    @property
    def where(self) -> str:
        t = self.target
        return f"{t.host}:{t.port}/{t.protocol or 'tcp'}"

    def result(self, status: Status, reason: Reason, message: str, remediation: str = "") -> CheckResult:
        return CheckResult.of(self.target, status, reason, message, remediation=remediation,
                              evidence=self.ev, duration_ms=elapsed_ms(self.start))

    # -- DNS layer ------------------------------------------------------------------------------
    def resolve(self, resolve: Resolve) -> Optional[CheckResult]:
        """Resolve target.host; a failure result, or None with addresses in self.addresses."""
        res = resolve(self.target.host or "", self.budget)
        self.ev.update(res.evidence())
        self.addresses = list(res.addresses)
        if not res.ok:
            reason = res.reason or Reason.DNS_ERROR
            status = Status.WARN if (reason is Reason.NXDOMAIN and self.target.optional) else Status.FAIL
            by = f" (nameserver {res.answered_by})" if res.answered_by else (
                f" (nameservers {', '.join(res.nameservers)})" if res.nameservers else "")
            msg = f"{self.target.host} does not resolve: {res.error}{by}."
            if status is Status.WARN:
                msg = f"{self.target.host} does not resolve ({res.error}); the seeds say it may be absent in this region."
            return self.result(status, reason, msg, remedies.dns(reason, self.target, self.ctx.resolv_conf))
        if self.target.expected_cidrs:
            self.ev["expected_cidrs"] = list(self.target.expected_cidrs)
            self.outside = outside_cidrs(res.addresses, self.target.expected_cidrs)
            self.ev["outside_expected"] = list(self.outside)
        return None

    def cidr_failure(self) -> CheckResult:
        t = self.target
        src = f" ({t.cidr_source})" if t.cidr_source else ""
        msg = (f"{t.host} resolves to {', '.join(self.outside)}, outside the expected blocks "
               f"{', '.join(t.expected_cidrs)}{src}, so the dedicated connection will not carry it.")
        return self.result(Status.FAIL, Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR, msg, remedies.cidr(t, self.outside))

    # -- TCP layer ------------------------------------------------------------------------------
    def connect(self, addresses: Sequence[str], port: int, keep_open: bool = False):
        attempts, socks = connect_all(addresses, port, self.budget, keep_open=keep_open)
        self.ev["connect"] = [a.evidence() for a in attempts]
        return attempts, socks

    def connect_failure(self, attempts: Sequence[ConnectAttempt]) -> Optional[CheckResult]:
        verdict = judge_connects(attempts)
        if verdict.ignored:
            self.ev["connect_ignored"] = {
                "addresses": [a.address for a in verdict.ignored],
                "why": "this host has no route for that IP family, so clients do not use it"}
        if verdict.status is Status.PASS:
            return None
        t = self.target
        proto = (t.protocol or "tcp").upper()
        bad = ", ".join(f"{a.address} ({a.error})" for a in verdict.failing)
        if verdict.working:
            good = ", ".join(f"{a.address} ({a.ms} ms)" for a in verdict.working)
            msg = (f"{proto} {t.port} to {t.host} works on {good} but not on {bad}: pulls and calls that "
                   f"pick the blocked address will fail intermittently.")
        else:
            msg = f"{proto} {t.port} to {t.host} is blocked on every address: {bad}."
        return self.result(Status.FAIL, verdict.reason, msg,
                           remedies.connect(verdict.reason, t, self.ctx, [a.address for a in verdict.failing]))


def _fastest(attempts: Sequence[ConnectAttempt]) -> ConnectAttempt:
    return min((a for a in attempts if a.ok), key=lambda a: a.ms)


def _close_all(socks: Dict[str, Any]) -> None:
    for s in socks.values():
        s.close()


# ---------------------------------------------------------------------------------------------- TCP
def check_tcp(target: Target, ctx: RunContext, *, resolve: Optional[Resolve] = None) -> CheckResult:
    run = _Run(target, ctx)
    run.ev["route"] = "direct"
    failed = run.resolve(_resolver_for(ctx, resolve))
    if failed:
        return failed
    attempts, _ = run.connect(run.addresses, int(target.port or 0))
    if run.outside:
        return run.cidr_failure()
    failed = run.connect_failure(attempts)
    if failed:
        return failed
    ok = [a for a in attempts if a.ok]
    return run.result(Status.PASS, Reason.OK,
                      f"TCP {target.port} to {target.host} connects on {plural(len(ok), 'address')} "
                      f"({', '.join(f'{a.address} {a.ms} ms' for a in ok)}), directly.")


# ------------------------------------------------------------------------------------- HTTPS / HTTP
def check_https(target: Target, ctx: RunContext, *, resolve: Optional[Resolve] = None) -> CheckResult:
    return _check_web(target, ctx, _resolver_for(ctx, resolve), "https")


def check_http(target: Target, ctx: RunContext, *, resolve: Optional[Resolve] = None) -> CheckResult:
    return _check_web(target, ctx, _resolver_for(ctx, resolve), "http")


def _tls_failure(run: _Run, out: TlsOutcome, trust: TrustSource, via: str) -> CheckResult:
    t = run.target
    if out.reason is Reason.TLS_VERIFY_FAILED:
        cert = out.peer_certificate
        who = (f" (peer certificate subject \"{cert.get('subject')}\", issuer \"{cert.get('issuer')}\", "
               f"expires {cert.get('not_after')})") if cert else ""
        msg = f"TLS to {t.host}:{t.port}{via} connects but the certificate fails verification: {out.verify_error}{who}."
        if t.trust is Trust.CLUSTER:
            rem = (f"The API server certificate does not verify against --apiserver-ca {trust.cafile}: "
                   f"check that it is this cluster's CA (certificate-authority-data) and the endpoint is right.")
        else:
            rem = remedies.tls_verify(t, trust.origin)
        return run.result(Status.FAIL, Reason.TLS_VERIFY_FAILED, msg, rem)
    msg = f"TCP to {t.host}:{t.port}{via} connects but the TLS handshake fails: {out.error}."
    return run.result(Status.FAIL, Reason.TLS_HANDSHAKE_FAILED, msg, remedies.tls_handshake(t))


def _http_failure(run: _Run, out: httpget.HttpOutcome, trust: Optional[TrustSource], proxy_url: Optional[str]) -> CheckResult:
    t = run.target
    reason = out.reason or Reason.INTERNAL_ERROR
    if reason is Reason.PROXY_ERROR and proxy_url:
        return run.result(Status.FAIL, reason, f"The proxy {proxy_url} failed the request to {out.url}: {out.error}.",
                          remedies.proxy(proxy_url, t))
    if reason is Reason.TLS_VERIFY_FAILED:
        return run.result(Status.FAIL, reason, f"The HTTPS request to {out.url} fails certificate verification: {out.error}.",
                          remedies.tls_verify(t, trust.origin if trust else "system"))
    if reason is Reason.TLS_HANDSHAKE_FAILED:
        return run.result(Status.FAIL, reason, f"The HTTPS request to {out.url} fails in the TLS handshake: {out.error}.",
                          remedies.tls_handshake(t))
    layer = "TLS works but" if t.probe.value == "https" else "TCP connects but"
    msg = f"{layer} the HTTP request to {out.url} got no response: {out.error}."
    return run.result(Status.FAIL, reason, msg,
                      remedies.connect(reason, t, run.ctx, run.addresses or [t.host or ""]))


def _pass_web(run: _Run, scheme: str, tls: Optional[TlsOutcome], http: httpget.HttpOutcome,
              trust: Optional[TrustSource], via: str) -> CheckResult:
    t = run.target
    parts = []
    if via:
        parts.append(f"through the proxy {run.ev.get('proxy')}")
    else:
        n = len([c for c in run.ev.get("connect", []) if c["ok"]])
        parts.append(f"TCP connects on {plural(n, 'address')}")
    remediation = ""
    if tls is not None:
        if tls.verified:
            parts.append(f"{tls.version} certificate verified ({trust.origin if trust else ''})")
        else:
            parts.append(f"{tls.version} handshake completes but the certificate was NOT verified (no --apiserver-ca)")
            remediation = remedies.cluster_ca()
    parts.append(f"HTTP {http.status} in {http.ms} ms")
    msg = f"{scheme.upper()} to {t.host}:{t.port} works: " + ", ".join(parts) + "."
    return run.result(Status.PASS, Reason.OK, msg, remediation)


def _check_web(target: Target, ctx: RunContext, resolve: Resolve, scheme: str) -> CheckResult:
    run = _Run(target, ctx)
    host, port = target.host or "", int(target.port or (443 if scheme == "https" else 80))
    trust = trust_for(target, ctx) if scheme == "https" else None
    if trust is not None:
        run.ev["trust"] = trust.evidence()
    proxy_url = select_proxy(scheme, host, port, ctx.environ)
    if proxy_url:
        return _web_via_proxy(run, resolve, scheme, host, port, trust, proxy_url)

    run.ev["route"] = "direct"
    failed = run.resolve(resolve)
    if failed:
        return failed
    attempts, socks = run.connect(run.addresses, port, keep_open=(scheme == "https" and not run.outside))
    if run.outside:
        _close_all(socks)
        return run.cidr_failure()
    failed = run.connect_failure(attempts)
    if failed:
        _close_all(socks)
        return failed
    chosen = _fastest(attempts)
    tls_out: Optional[TlsOutcome] = None
    if trust is not None:
        sock = socks.pop(chosen.address)
        _close_all(socks)
        tls_out = handshake(sock, host, trust, run.budget)
        tls_out.address = chosen.address
        if tls_out.reason is Reason.TLS_VERIFY_FAILED:
            _, again = connect_all([chosen.address], port, run.budget, keep_open=True)
            if chosen.address in again:
                tls_out.peer_certificate = fetch_peer_certificate(again[chosen.address], host, run.budget)
        run.ev["tls"] = tls_out.evidence()
        if not tls_out.ok:
            return _tls_failure(run, tls_out, trust, "")
    http_out = httpget.request(scheme, host, port, run.budget, address=chosen.address,
                               verify=trust.requests_verify() if trust else True)
    run.ev["http"] = http_out.evidence()
    if not http_out.ok:
        return _http_failure(run, http_out, trust, None)
    return _pass_web(run, scheme, tls_out, http_out, trust, "")


def _web_via_proxy(run: _Run, resolve: Resolve, scheme: str, host: str, port: int,
                   trust: Optional[TrustSource], proxy_url: str) -> CheckResult:
    t = run.target
    shown = strip_credentials(proxy_url)
    run.ev.update({"route": "proxy", "proxy": shown,
                   "dns": f"not resolved locally: the proxy resolves {host}, as the node's components do"})
    pscheme, phost, pport = proxy_endpoint(proxy_url)

    def proxy_error(detail: str) -> CheckResult:
        return run.result(Status.FAIL, Reason.PROXY_ERROR,
                          f"The proxy {shown} for {scheme.upper()} to {host}:{port} failed: {detail}.",
                          remedies.proxy(shown, t))

    if pscheme not in ("http", "https"):
        return proxy_error(f"proxy scheme {pscheme!r} is not supported by this probe (use an http:// proxy URL)")
    pres = resolve(phost, run.budget)
    run.ev["proxy_addresses"] = list(pres.addresses)
    if not pres.ok:
        return proxy_error(f"the proxy host {phost} does not resolve ({pres.error})")
    attempts, socks = connect_all(pres.addresses, pport, run.budget, keep_open=True)
    run.ev["proxy_connect"] = [a.evidence() for a in attempts]
    working = [a for a in attempts if a.ok]
    if not working:
        _close_all(socks)
        return proxy_error("cannot connect to it: " + "; ".join(f"{a.address}:{pport} {a.error}" for a in attempts))
    chosen = min(working, key=lambda a: a.ms)
    sock = socks.pop(chosen.address)
    _close_all(socks)
    pinned = with_host(proxy_url, chosen.address)
    auth = proxy_authorization(proxy_url)

    tls_out: Optional[TlsOutcome] = None
    if trust is not None and pscheme == "http":
        # Verify through the CONNECT tunnel, exactly as requests will.
        try:
            tunnel = open_tunnel(sock, host, port, auth, run.budget)
        except ProxyTunnelError as exc:
            return proxy_error(str(exc))
        tls_out = handshake(tunnel, host, trust, run.budget)
        tls_out.address = f"via {shown}"
        if tls_out.reason is Reason.TLS_VERIFY_FAILED:
            _, again = connect_all([chosen.address], pport, run.budget, keep_open=True)
            if chosen.address in again:
                try:
                    tunnel = open_tunnel(again[chosen.address], host, port, auth, run.budget)
                    tls_out.peer_certificate = fetch_peer_certificate(tunnel, host, run.budget)
                except ProxyTunnelError:
                    pass
        run.ev["tls"] = tls_out.evidence()
        if not tls_out.ok:
            return _tls_failure(run, tls_out, trust, f" through the proxy {shown}")
    else:
        sock.close()
    http_out = httpget.request(scheme, host, port, run.budget, proxy_url=pinned,
                               verify=trust.requests_verify() if trust else True)
    run.ev["http"] = http_out.evidence()
    if not http_out.ok:
        return _http_failure(run, http_out, trust, shown)
    if scheme == "http" and http_out.status in (502, 503, 504):
        # Plain HTTP through a proxy: a gateway error is the proxy saying it could not reach the host.
        return proxy_error(f"it answered HTTP {http_out.status} for {http_out.url}, i.e. it could not reach {host}")
    return _pass_web(run, scheme, tls_out, http_out, trust, shown)


# ---------------------------------------------------------------------------------------------- NTP
def check_ntp(target: Target, ctx: RunContext, *, resolve: Optional[Resolve] = None) -> CheckResult:
    exchanged = _udp_exchange(target, ctx, resolve, ntp.NTP_PORT, ntp.query,
                              lambda a: ntp.NtpOutcome(a, False, reason=Reason.TIMEOUT, error="no answer in time"))
    if isinstance(exchanged, CheckResult):
        return exchanged
    run, port, outcomes = exchanged
    verdict = ntp.judge_ntp(outcomes)
    run.ev["ntp"] = verdict.best.evidence() if verdict.best else None
    run.ev["ntp_all"] = [o.evidence() for o in outcomes]
    if run.outside:
        return run.cidr_failure()
    host = target.host
    silent = ", ".join(f"{o.address} ({o.error})" for o in verdict.silent)
    if not verdict.answered:
        if verdict.reason is Reason.TIMEOUT:
            msg = f"NTP (UDP {port}) to {host} got no answer from {silent}."
        else:
            msg = f"NTP (UDP {port}) to {host} fails: {silent}."
        return run.result(Status.FAIL, verdict.reason, msg,
                          remedies.connect(verdict.reason, target, ctx, [o.address for o in verdict.silent]))
    best = verdict.best
    assert best is not None
    summary = (f"offset {best.offset_s:+.3f} s, stratum {best.stratum}, round trip "
               f"{(best.delay_s or 0) * 1000:.0f} ms from {best.address}")
    if verdict.reason is Reason.CLOCK_OFFSET:
        limit = ntp.CLOCK_OFFSET_FAIL_S if verdict.status is Status.FAIL else ntp.CLOCK_OFFSET_WARN_S
        msg = f"This host's clock differs from {host} by {best.offset_s:+.3f} s (more than {limit:g} s): {summary}."
        return run.result(verdict.status, verdict.reason, msg, remedies.ntp(verdict.reason, target))
    if verdict.reason is Reason.CLOCK_UNSYNCHRONISED:
        bad = verdict.unsynchronised[0]
        msg = (f"{host} ({bad.address}) answers but reports itself unsynchronised "
               f"(stratum {bad.stratum}, leap indicator {bad.leap}), so its time cannot be trusted.")
        return run.result(Status.WARN, verdict.reason, msg, remedies.ntp(verdict.reason, target))
    if verdict.silent:
        msg = (f"NTP to {host} answers from {', '.join(o.address for o in verdict.answered)} ({summary}) "
               f"but not from {silent}.")
        return run.result(Status.WARN, verdict.reason, msg,
                          remedies.connect(verdict.reason, target, ctx, [o.address for o in verdict.silent]))
    return run.result(Status.PASS, Reason.OK, f"NTP (UDP {port}) to {host} answers: {summary}.")


# ---------------------------------------------------------------------------------------------- IKE
def check_ike(target: Target, ctx: RunContext, *, resolve: Optional[Resolve] = None) -> CheckResult:
    exchanged = _udp_exchange(target, ctx, resolve, ike.IKE_NATT_PORT, ike.probe,
                              lambda a: ike.IkeOutcome(a, False, reason=Reason.NO_RESPONSE, error="no answer in time"))
    if isinstance(exchanged, CheckResult):
        return exchanged
    run, port, outcomes = exchanged
    verdict = ike.judge_ike(outcomes)
    shown = verdict.answered[0] if verdict.answered else (verdict.failing[0] if verdict.failing else None)
    run.ev["ike"] = shown.evidence() if shown else None
    run.ev["ike_all"] = [o.evidence() for o in outcomes]
    if run.outside:
        return run.cidr_failure()
    host = target.host
    if verdict.status is Status.PASS:
        notes = ", ".join(sorted({n for o in verdict.answered for n in (o.reply.notify if o.reply else [])}))
        detail = f" (IKE reply, notify {notes})" if notes else ""
        return run.result(Status.PASS, Reason.OK,
                          f"UDP {port} (IPsec NAT-T) to {host} answers an IKE_SA_INIT{detail}.")
    failing = ", ".join(f"{o.address} ({o.error})" for o in verdict.failing)
    if verdict.status is Status.WARN:
        return run.result(Status.WARN, Reason.NO_RESPONSE,
                          f"UDP {port} to {host} got no answer to an IKE_SA_INIT from {failing}; "
                          f"UDP cannot be confirmed without an answer.", remedies.ike_no_response(target))
    return run.result(Status.FAIL, verdict.reason, f"UDP {port} (IPsec NAT-T) to {host} fails: {failing}.",
                      remedies.connect(verdict.reason, target, ctx, [o.address for o in verdict.failing]))


def _udp_exchange(target: Target, ctx: RunContext, resolve: Optional[Resolve], default_port: int,
                  query: Callable[[str, Budget, int], Any], missing: Callable[[str], Any]
                  ) -> Union[CheckResult, Tuple[_Run, int, List[Any]]]:
    """Resolve, then query(address, budget, port) every address at once (UDP probes go direct).

    A CheckResult when the name does not resolve, else (run, port, outcomes in address order).
    """
    run = _Run(target, ctx)
    run.ev["route"] = "direct"
    failed = run.resolve(_resolver_for(ctx, resolve))
    if failed:
        return failed
    port = int(target.port or default_port)
    return run, port, _gather(run.addresses, lambda a: query(a, run.budget, port), run.budget, missing)


def _gather(addresses: Sequence[str], fn: Callable[[str], Any], budget: Budget,
            missing: Callable[[str], Any]) -> List[Any]:
    """fn(address) for every address concurrently; a call that did not finish becomes missing(address)."""
    outcomes = run_parallel([lambda a=a: fn(a) for a in addresses], budget)
    out = []
    for addr, outcome in zip(addresses, outcomes):
        if outcome is None:
            out.append(missing(addr))
        elif outcome[0] == "error":
            raise outcome[1]
        else:
            out.append(outcome[1])
    return out
