"""Resolve hostnames through the host's resolver configuration, once per run per name.

dnspython reads ctx.resolv_conf (not the machine's /etc/resolv.conf when a test points it
elsewhere), so the answer and the nameserver that gave it are what this host's components get.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

import dns.exception
import dns.inet
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rdatatype
import dns.resolver

from edgecheck.evidence import Resolution
from edgecheck.model import Reason
from edgecheck.probes.budget import Budget, elapsed_ms, run_parallel


def ip_literal(host: str) -> Optional[str]:
    """The canonical address if host is an IPv4/IPv6 literal (brackets allowed), else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def outside_cidrs(addresses: Sequence[str], cidrs: Sequence[str]) -> List[str]:
    """Addresses not inside any of the expected blocks (dedicated mode routes)."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    out = []
    for a in addresses:
        ip = ipaddress.ip_address(a)
        if not any(ip.version == n.version and ip in n for n in nets):
            out.append(a)
    return out


class ConnectedUdpNameserver(dns.nameserver.Do53Nameserver):
    """Queries over a connected UDP socket.

    dnspython sends from an unconnected socket, which never sees the ICMP port unreachable a host
    returns when no DNS service listens there: a stopped forwarder would look exactly like a
    firewall dropping DNS (dns-timeout). A connected socket gets ECONNREFUSED at once, which the
    resolver records per nameserver and which classifies as dns-error.

    Hosts rate-limit ICMP errors (a burst of about six, then one a second), so when many names
    are resolved at once only the first queries see the refusal; `refused` collects the
    nameservers that refused during this run so the silent rest can be classified the same way.
    """

    def __init__(self, address: str, port: int, refused: Optional[Set[str]] = None) -> None:
        super().__init__(address, port)
        self.refused = refused

    def query(
        self,
        request: dns.message.QueryMessage,
        timeout: float,
        source: Optional[str],
        source_port: int,
        max_size: bool,
        one_rr_per_rrset: bool = False,
        ignore_trailing: bool = False,
    ) -> dns.message.Message:
        if max_size:  # TCP retry after truncation: connected by nature
            return super().query(request, timeout, source, source_port, max_size, one_rr_per_rrset, ignore_trailing)
        with socket.socket(dns.inet.af_for_address(self.address), socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect((self.address, self.port))
            try:
                return self._udp(sock, request, timeout, one_rr_per_rrset, ignore_trailing)
            except ConnectionRefusedError:
                if self.refused is not None:
                    self.refused.add(self.address)
                raise

    def _udp(self, sock: socket.socket, request: dns.message.QueryMessage, timeout: float,
             one_rr_per_rrset: bool, ignore_trailing: bool) -> dns.message.Message:
        return dns.query.udp(
            request,
            self.address,
            timeout=timeout,
            port=self.port,
            sock=sock,
            raise_on_truncation=True,
            one_rr_per_rrset=one_rr_per_rrset,
            ignore_trailing=ignore_trailing,
            ignore_errors=True,
            ignore_unexpected=True,
        )


def _address(nameserver: Any) -> str:
    """The IP of a nameserver, whether dnspython gives an object or its "Do53:IP@port" text."""
    address = getattr(nameserver, "address", None)
    if address:
        return address
    text = str(nameserver)
    if text.startswith("Do53:"):
        return text[len("Do53:"):].rsplit("@", 1)[0]
    return text


def _load_resolver(resolv_conf: str, budget: Budget, refused: Optional[Set[str]] = None) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver(filename=resolv_conf, configure=True)
    r.nameservers = [
        ConnectedUdpNameserver(_address(ns), r.nameserver_ports.get(_address(ns), r.port), refused)
        for ns in r.nameservers
    ]
    left = budget.left()
    # dnspython's per-try timeout (resolv.conf `options timeout:`) bounded by what the probe has left;
    # lifetime caps retries across all nameservers.
    r.timeout = max(0.05, min(float(r.timeout), left))
    r.lifetime = max(0.05, left)
    r.cache = None
    return r


def _query(resolv_conf: str, host: str, rdtype: str, budget: Budget, refused: Optional[Set[str]]) -> dns.resolver.Answer:
    resolver = _load_resolver(resolv_conf, budget, refused)
    # Absolute name, no search list: plan hostnames are fully qualified, as glibc treats names
    # with enough dots.
    qname = dns.name.from_text(host)
    return resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)


def _cname_chain(answer: dns.resolver.Answer) -> List[str]:
    chain: List[str] = []
    for rrset in answer.response.answer:
        if rrset.rdtype == dns.rdatatype.CNAME:
            for rd in rrset:
                chain.append(rd.target.to_text(omit_final_dot=True))
    return chain


_RCODE_MEANING = {
    "SERVFAIL": "the nameserver could not get an answer (its upstream or the domain's own nameservers "
                "failed or did not answer, or DNSSEC validation failed)",
    "REFUSED": "the nameserver refuses to answer this host (an access list, or it does not resolve "
               "names for this client)",
    "NOTIMP": "the nameserver does not implement this kind of query",
    "FORMERR": "the nameserver could not parse the query",
    "NXDOMAIN": "the name does not exist",
}
_RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET",
           "NOTAUTH", "NOTZONE", "BADVERS")


def rcode_meaning(rcode: str) -> str:
    return _RCODE_MEANING.get(rcode.upper(), "the nameserver answered with an error code")


def describe_rcodes(errors: Mapping[str, str]) -> str:
    """Pure: the DNS response code of each nameserver that gave one (SPEC 7.1: `dns-error` names
    it), e.g. "nameserver 10.0.0.1 answered SERVFAIL (the nameserver could not ...)".

    errors: nameserver -> rcode name ("SERVFAIL") or another failure text."""
    rcodes = {ns: e.upper() for ns, e in errors.items() if e.upper() in _RCODES}
    if rcodes and len(set(rcodes.values())) == 1 and len(rcodes) == len(errors):
        code = next(iter(rcodes.values()))
        return (f"nameserver{'s' if len(rcodes) > 1 else ''} {', '.join(rcodes)} answered {code} "
                f"({rcode_meaning(code)})")
    return "; ".join(f"{ns} answered {e.upper()}" if ns in rcodes else f"{ns}: {e}" for ns, e in errors.items())


def dns_error_message(host: str, errors: Mapping[str, str]) -> str:
    return f"{host} does not resolve: {describe_rcodes(errors)}."


def _error_entries(exc: BaseException) -> List[Tuple[str, bool, Any]]:
    """(nameserver, over TCP?, error or rcode text) from dnspython's per-attempt errors (2.x:
    (server, tcp, port, error-or-rcode, response))."""
    entries = (getattr(exc, "kwargs", None) or {}).get("errors") or []
    return [(_address(e[0]), bool(e[1]), e[3] if len(e) > 3 else e[-1]) for e in entries]


def rcodes_from_dnspython(exc: BaseException) -> Dict[str, str]:
    """nameserver -> rcode text (or error text) from a dns.resolver.NoNameservers exception."""
    out: Dict[str, str] = {}
    for server, _tcp, detail in _error_entries(exc):
        if isinstance(detail, ConnectionRefusedError):
            detail = "refused (ICMP port unreachable: no DNS service listens there)"
        out[server] = str(detail)
    return out


def tcp_after_truncation(exc: BaseException) -> Optional[str]:
    """When an answer came back truncated over UDP and the retry over TCP 53 failed: the words
    for it (TCP 53 is blocked), else None. glibc and dnspython retry a TC answer over TCP."""
    entries = _error_entries(exc)
    truncated = {s for s, tcp, d in entries if not tcp and isinstance(d, dns.message.Truncated)}
    failed = [(s, d) for s, tcp, d in entries if tcp and s in truncated]
    if not failed:
        return None
    server, detail = failed[-1]
    why = ("timed out" if isinstance(detail, dns.exception.Timeout)
           else "refused" if isinstance(detail, ConnectionRefusedError) else str(detail))
    return (f"the answer from nameserver {server} is larger than a UDP answer may be (truncated, TC) and the "
            f"retry over TCP 53 {why}: TCP 53 to {server} is blocked")


def describe_dns_error(exc: BaseException) -> Tuple[Reason, str]:
    """Pure classification of a dnspython exception into (reason, human detail)."""
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return Reason.NXDOMAIN, "the name does not exist (NXDOMAIN)"
    blocked = tcp_after_truncation(exc)
    if blocked:  # the nameserver answered: not a timeout, whatever the TCP retry did
        return Reason.DNS_ERROR, blocked
    if isinstance(exc, dns.exception.Timeout):
        return Reason.DNS_TIMEOUT, "no nameserver answered in time"
    if isinstance(exc, dns.resolver.NoResolverConfiguration):
        return Reason.DNS_ERROR, f"no usable nameserver configuration ({exc})"
    if isinstance(exc, dns.resolver.NoNameservers):
        return Reason.DNS_ERROR, describe_rcodes(rcodes_from_dnspython(exc)) or str(exc)
    if isinstance(exc, dns.resolver.NoAnswer):
        return Reason.DNS_ERROR, "no address record in the answer"
    return Reason.DNS_ERROR, f"{type(exc).__name__}: {exc}"


def resolve(host: str, resolv_conf: str, budget: Budget, refused: Optional[Set[str]] = None) -> Resolution:
    """Resolve A and AAAA concurrently (as getaddrinfo does) within the budget."""
    literal = ip_literal(host)
    if literal is not None:
        return Resolution(host=host, addresses=[literal], literal=True)
    start = time.monotonic()
    res = Resolution(host=host, source=resolv_conf)
    try:
        res.nameservers = [_address(ns) for ns in _load_resolver(resolv_conf, budget).nameservers]
    except Exception as exc:  # missing/empty/unreadable resolv.conf
        res.reason, res.error = describe_dns_error(exc)
        res.ms = elapsed_ms(start)
        return res

    kinds = ("A", "AAAA")
    outcomes = run_parallel([functools.partial(_query, resolv_conf, host, k, budget, refused) for k in kinds], budget)
    answers: Dict[str, dns.resolver.Answer] = {}
    failures: Dict[str, BaseException] = {}
    for kind, outcome in zip(kinds, outcomes):
        if outcome is None:
            failures[kind] = dns.exception.Timeout()
        elif outcome[0] == "ok":
            answers[kind] = outcome[1]
        else:
            failures[kind] = outcome[1]
    res.ms = elapsed_ms(start)

    for kind in kinds:
        ans = answers.get(kind)
        if ans is None:
            continue
        if res.answered_by is None:
            res.answered_by = _address(ans.nameserver)
        if not res.cname_chain:
            res.cname_chain = _cname_chain(ans)
        if ans.rrset is not None:
            res.addresses.extend(rd.address for rd in ans.rrset)

    if any(isinstance(e, dns.resolver.NXDOMAIN) for e in failures.values()):
        res.addresses = []
        res.reason, res.error = describe_dns_error(
            next(e for e in failures.values() if isinstance(e, dns.resolver.NXDOMAIN)))
        return res
    if res.addresses:
        # One family answered: usable, but keep what the other said for the evidence.
        res.partial_errors = {k: describe_dns_error(e)[1] for k, e in failures.items()}
        return res
    if failures:
        # Prefer the A failure: it is the family every component uses.
        first = failures.get("A") or next(iter(failures.values()))
        res.reason, res.error = describe_dns_error(first)
    else:
        res.reason, res.error = Reason.DNS_ERROR, "the nameserver answered but returned no A or AAAA record"
    return res


def _explain_silence(res: Resolution, refused: Set[str]) -> Resolution:
    """A timeout from nameservers that refused other queries of this run is a refusal too."""
    if res.reason is Reason.DNS_TIMEOUT and res.nameservers and set(res.nameservers) <= refused:
        res.reason = Reason.DNS_ERROR
        res.error = (
            f"nameserver {', '.join(res.nameservers)} refused queries of this run (ICMP port "
            "unreachable: no DNS service listens there); this query got no answer at all because "
            "hosts rate-limit those ICMP errors"
        )
    return res


class SharedResolver:
    """Resolves each hostname once per run even when several targets (e.g. :80 and :443) share it.

    The first caller resolves within its own budget; later callers wait for that answer, but
    never longer than their own budget.
    """

    def __init__(self, resolv_conf: str) -> None:
        self.resolv_conf = resolv_conf
        self._lock = threading.Lock()
        self._entries: Dict[str, Tuple[threading.Event, List[Resolution]]] = {}
        self.refused: Set[str] = set()  # nameservers that answered ICMP port unreachable this run

    def resolve(self, host: str, budget: Budget) -> Resolution:
        key = host.lower().rstrip(".")
        with self._lock:
            existing = self._entries.get(key)
            owner = existing is None
            entry = existing if existing is not None else (threading.Event(), [])
            self._entries[key] = entry
        event, slot = entry
        if owner:
            try:
                slot.append(_explain_silence(resolve(host, self.resolv_conf, budget, self.refused), self.refused))
            except Exception as exc:  # never leave waiters hanging
                slot.append(Resolution(host=host, source=self.resolv_conf, reason=Reason.DNS_ERROR,
                                       error=f"{type(exc).__name__}: {exc}"))
            finally:
                event.set()
            return slot[0]
        if event.wait(budget.left()) and slot:
            return slot[0]
        return Resolution(host=host, source=self.resolv_conf, reason=Reason.DNS_TIMEOUT,
                          error="no nameserver answered in time")
