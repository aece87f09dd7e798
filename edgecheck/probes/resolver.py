"""Resolve hostnames through the host's resolver configuration, once per run per name.

As glibc's stub resolver does (resolv.conf(5), glibc resolv/res_send.c): the nameservers of
ctx.resolv_conf (not the machine's /etc/resolv.conf when a test points it elsewhere) in order,
each asked over a connected UDP socket (dnsclient.py) and over TCP after a truncated answer; an
error answer (SERVFAIL, REFUSED, ...) or an ICMP refusal moves on to the next nameserver at once,
silence after `options timeout:`. So the answer and the nameserver that gave it are what this
host's components get, and a failure says what each nameserver did. A and AAAA are asked at once,
as getaddrinfo does. Rounds repeat until the probe budget ends.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import field
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from edgecheck.evidence import Resolution
from edgecheck.model import Reason
from edgecheck.netloc import ip_literal
from edgecheck.probes import dnsclient, dnswire
from edgecheck.probes.budget import Budget, elapsed_ms
from edgecheck.probes.resolvconf import ResolvConf, read_resolv_conf
from edgecheck.records import record


def outside_cidrs(addresses: Sequence[str], cidrs: Sequence[str]) -> List[str]:
    """Addresses not inside any of the expected blocks (dedicated mode routes)."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    out = []
    for a in addresses:
        ip = ipaddress.ip_address(a)
        if not any(ip.version == n.version and ip in n for n in nets):
            out.append(a)
    return out


@record
class Failure:
    """Why one question (A or AAAA) got no usable answer, with what each nameserver did."""

    kind: str  # "nxdomain" | "timeout" | "nameservers" (every one failed) | "config" | "no-answer"
    errors: List[Tuple[str, bool, str]] = field(default_factory=list)  # (nameserver, over TCP?, rcode or words)
    truncated_on: Set[str] = field(default_factory=set)  # nameservers whose UDP answer had TC
    detail: str = ""


@record
class Answer:
    addresses: List[str]
    chain: List[str]
    nameserver: str


_REFUSED_WORDS = "refused (ICMP port unreachable: no DNS service listens there)"


def _record(failure: Failure, asked: dnsclient.Exchange) -> bool:
    """Note what went wrong with this nameserver; True when it is no use for another round."""
    if asked.truncated:
        failure.truncated_on.add(asked.server)
    if asked.reply is not None:
        failure.errors.append((asked.server, asked.tcp is not None, asked.reply.rcode_text))
        return True  # SERVFAIL, REFUSED, NOTIMP, FORMERR: glibc moves on at once
    why = asked.failure or dnsclient.TIMEOUT
    words = _REFUSED_WORDS if why == dnsclient.REFUSED else why
    failure.errors.append((asked.server, asked.tcp is not None, words))
    return why != dnsclient.TIMEOUT or asked.truncated


Outcome = Tuple[Optional[Answer], Optional[Failure]]


def ask_all(conf: ResolvConf, qname: str, qtypes: Sequence[int], budget: Budget,
            refused: Optional[Set[str]] = None) -> Dict[int, Outcome]:
    """Per question type: the nameservers of conf in order, round after round, until one answers
    NOERROR or NXDOMAIN, none is left worth asking, or the budget ends. The types pending at a
    nameserver are asked together (dnsclient.ask_many), as glibc asks A and AAAA."""
    if not conf.nameservers:
        return {t: (None, Failure("config", detail=f"no nameservers in {conf.path}")) for t in qtypes}
    failures = {t: Failure("timeout") for t in qtypes}
    servers = {t: list(conf.nameservers) for t in qtypes}
    done: Dict[int, Outcome] = {}
    while any(servers[t] for t in qtypes if t not in done) and budget.left() > 0:
        for server in conf.nameservers:
            pending = [t for t in qtypes if t not in done and server in servers[t]]
            if not pending or budget.left() <= 0:
                continue
            deadline = min(budget.end, time.monotonic() + conf.timeout)
            asked = dnsclient.ask_many(server, qname, pending, deadline, edns=conf.edns0, use_vc=conf.use_vc)
            for qtype, exchange in zip(pending, asked):
                outcome = _judge(exchange, qname, qtype, failures[qtype], refused)
                if outcome is not None:
                    done[qtype] = outcome
                elif _record(failures[qtype], exchange):
                    servers[qtype].remove(server)
    for qtype in qtypes:
        if qtype not in done:
            if not servers[qtype]:
                failures[qtype].kind = "nameservers"
            done[qtype] = (None, failures[qtype])
    return done


def _judge(asked: dnsclient.Exchange, qname: str, qtype: int, failure: Failure,
           refused: Optional[Set[str]]) -> Optional[Outcome]:
    """The final outcome of a question when this exchange settles it (NOERROR, NXDOMAIN)."""
    reply = asked.reply
    if reply is not None and reply.rcode == dnswire.NXDOMAIN:
        return None, Failure("nxdomain", failure.errors)
    if reply is not None and reply.rcode == dnswire.NOERROR:
        addresses, chain = dnswire.addresses_and_chain(reply, qname, qtype)
        return Answer(addresses, chain, asked.server), None
    if asked.failure == dnsclient.REFUSED and refused is not None:
        refused.add(asked.server)
    return None


# ------------------------------------------------------------------------------------ messages
_RCODE_MEANING = {
    "SERVFAIL": "the nameserver could not get an answer (its upstream or the domain's own nameservers "
                "failed or did not answer, or DNSSEC validation failed)",
    "REFUSED": "the nameserver refuses to answer this host (an access list, or it does not resolve "
               "names for this client)",
    "NOTIMP": "the nameserver does not implement this kind of query",
    "FORMERR": "the nameserver could not parse the query",
    "NXDOMAIN": "the name does not exist",
}


def rcode_meaning(rcode: str) -> str:
    return _RCODE_MEANING.get(rcode.upper(), "the nameserver answered with an error code")


def describe_rcodes(errors: Mapping[str, str]) -> str:
    """Pure: the DNS response code of each nameserver that gave one (SPEC 7.1: `dns-error` names
    it), e.g. "nameserver 10.0.0.1 answered SERVFAIL (the nameserver could not ...)".

    errors: nameserver -> rcode name ("SERVFAIL") or another failure text."""
    rcodes = {ns: e.upper() for ns, e in errors.items() if e.upper() in dnswire.RCODES.values()}
    if rcodes and len(set(rcodes.values())) == 1 and len(rcodes) == len(errors):
        code = next(iter(rcodes.values()))
        return (f"nameserver{'s' if len(rcodes) > 1 else ''} {', '.join(rcodes)} answered {code} "
                f"({rcode_meaning(code)})")
    return "; ".join(f"{ns} answered {e.upper()}" if ns in rcodes else f"{ns}: {e}" for ns, e in errors.items())


def describe_failure(failure: Failure) -> Tuple[Reason, str]:
    """Pure: (reason, words) for a question that got no usable answer."""
    if failure.kind == "nxdomain":
        return Reason.NXDOMAIN, "the name does not exist (NXDOMAIN)"
    blocked = [(s, d) for s, tcp, d in failure.errors if tcp and s in failure.truncated_on]
    if blocked:  # the nameserver answered: not a timeout, whatever the TCP retry did
        server, why = blocked[-1]
        return Reason.DNS_ERROR, (f"the answer from nameserver {server} is larger than a UDP answer may be "
                                  f"(truncated, TC) and the retry over TCP 53 {why}: TCP 53 to {server} is blocked")
    if failure.kind == "config":
        return Reason.DNS_ERROR, f"no usable nameserver configuration ({failure.detail})"
    if failure.kind == "no-answer":
        return Reason.DNS_ERROR, "no address record in the answer"
    if failure.kind == "timeout":
        return Reason.DNS_TIMEOUT, "no nameserver answered in time"
    errors: Dict[str, str] = {}
    for server, _tcp, words in failure.errors:
        errors[server] = words
    return Reason.DNS_ERROR, describe_rcodes(errors) or "every nameserver failed"


def resolve(host: str, resolv_conf: str, budget: Budget, refused: Optional[Set[str]] = None,
            conf: Optional[ResolvConf] = None) -> Resolution:
    """Resolve A and AAAA together (as getaddrinfo does) within the budget."""
    literal = ip_literal(host)
    if literal is not None:
        return Resolution(host=host, addresses=[literal], literal=True)
    start = time.monotonic()
    res = Resolution(host=host, source=resolv_conf)
    try:
        conf = conf or read_resolv_conf(resolv_conf)
    except OSError as exc:
        res.reason, res.error = Reason.DNS_ERROR, f"no usable nameserver configuration ({exc.strerror or exc}: {resolv_conf})"
        res.ms = elapsed_ms(start)
        return res
    res.nameservers = list(conf.nameservers)
    outcomes = ask_all(conf, host, (dnswire.TYPE_A, dnswire.TYPE_AAAA), budget, refused)
    res.ms = elapsed_ms(start)
    answers: Dict[str, Answer] = {}
    failures: Dict[str, Failure] = {}
    for name, qtype in (("A", dnswire.TYPE_A), ("AAAA", dnswire.TYPE_AAAA)):
        answer, failure = outcomes[qtype]
        if answer is not None:
            answers[name] = answer
        elif failure is not None:
            failures[name] = failure
    return _assemble(res, answers, failures)


def _assemble(res: Resolution, answers: Mapping[str, Answer], failures: Mapping[str, Failure]) -> Resolution:
    for name in ("A", "AAAA"):
        answer = answers.get(name)
        if answer is None:
            continue
        if res.answered_by is None:
            res.answered_by = answer.nameserver
        if not res.cname_chain:
            res.cname_chain = list(answer.chain)
        res.addresses.extend(answer.addresses)
    nx = next((f for f in failures.values() if f.kind == "nxdomain"), None)
    if nx is not None:
        res.addresses = []
        res.reason, res.error = describe_failure(nx)
        return res
    if res.addresses:
        # One family answered: usable, but keep what the other said for the evidence.
        res.partial_errors = {k: describe_failure(f)[1] for k, f in failures.items()}
        return res
    if failures:
        # Prefer the A failure: it is the family every component uses.
        res.reason, res.error = describe_failure(failures.get("A") or next(iter(failures.values())))
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
        self._conf: Optional[ResolvConf] = None  # read once per run
        self._lock = threading.Lock()
        self._entries: Dict[str, Tuple[threading.Event, List[Resolution]]] = {}
        self.refused: Set[str] = set()  # nameservers that answered ICMP port unreachable this run

    def conf(self) -> Optional[ResolvConf]:
        """resolv.conf as read for the first name of the run (None: unreadable; each name says so)."""
        with self._lock:
            if self._conf is None:
                try:
                    self._conf = read_resolv_conf(self.resolv_conf)
                except OSError:
                    return None
            return self._conf

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
                slot.append(_explain_silence(resolve(host, self.resolv_conf, budget, self.refused, self.conf()),
                                             self.refused))
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
