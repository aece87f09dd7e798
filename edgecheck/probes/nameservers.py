"""Nameserver health (SPEC 7.2 `dns:nameserver:ADDR`): ask every nameserver of the resolver
configuration directly, and say what a dead one costs.

glibc's stub resolver (what the node's C components use; resolv.conf(5), glibc resolv/res_send.c):
- only the first MAXNS = 3 nameservers are used, in order (rotate: the start moves per lookup);
- per try (`attempts:`, default 2, max 5) it asks each server in turn; a server that does not
  answer costs its timeout: `retrans << i` for server index i, divided by the server count when
  i > 0, at least 1 s (res_send.c send_dg, unchanged since glibc 2.2), `retrans` being
  `timeout:` (default 5, max 30). So with a dead first server every lookup waits `timeout:`
  seconds before the second one is asked;
- SERVFAIL, NOTIMP and REFUSED, and ICMP port unreachable on its connected UDP socket, move on to
  the next server at once (no wait);
- a truncated UDP answer (TC) is asked again over TCP 53 on the same server. EDNS0 (bigger UDP
  answers) only with `options edns0`, so without it answers over 512 bytes need TCP.

Each nameserver is queried over a connected UDP socket (so a stopped service shows as refused, as
in resolver.ConnectedUdpNameserver), with the same EDNS choice glibc makes, and a truncated answer
is retried over TCP.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import asdict, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from edgecheck.host.sockets import is_loopback
from edgecheck.probes import dnsclient, dnsstub, dnswire
from edgecheck.probes.budget import Budget, run_parallel
from edgecheck.probes.resolvconf import ResolvConf, read_resolv_conf
from edgecheck.probes.resolver import rcode_meaning
from edgecheck.records import record

PASS, WARN, FAIL = "pass", "warn", "fail"
OK, DNS_TIMEOUT, DNS_ERROR = "ok", "dns-timeout", "dns-error"  # SPEC reason spellings


# ------------------------------------------------------------------------------ glibc timing
def server_timeout(conf: ResolvConf, index: int) -> int:
    """Seconds glibc waits on server `index` (res_send.c send_dg): retrans << ns, / nscount if ns > 0."""
    nscount = max(1, len(conf.used))
    seconds = conf.timeout << index
    if index > 0:
        seconds //= nscount
    return max(1, seconds)


# Per-server states for the timing model: glibc either gets an answer, waits the timeout, or
# moves on at once (SERVFAIL/REFUSED/NOTIMP rcode, ICMP port unreachable).
ANSWERS, SILENT, FAST_FAIL = "answers", "silent", "fast-fail"


def lookup_wait(conf: ResolvConf, states: Sequence[str], offset: int = 0) -> Tuple[float, bool]:
    """(seconds a lookup waits, answered?) for glibc given each used server's state, starting at
    server `offset` (rotate). Pure simulation of __res_context_send's try/server loops."""
    n = len(states)
    waited = 0.0
    for _try in range(conf.attempts):
        for shift in range(n):
            i = (shift + offset) % n
            if states[i] == ANSWERS:
                return waited, True
            if states[i] == SILENT:
                waited += server_timeout(conf, i)
    return waited, False


def expected_wait(conf: ResolvConf, states: Sequence[str]) -> float:
    """Mean wait over lookups: with rotate every start position is equally likely."""
    if not states:
        return 0.0
    offsets = range(len(states)) if conf.rotate else (0,)
    return sum(lookup_wait(conf, states, o)[0] for o in offsets) / len(offsets)


# ------------------------------------------------------------------------------ the probe
ANSWERED, RCODE, TIMEOUT, REFUSED, TCP_BLOCKED, ERROR = (
    "answered", "rcode", "timeout", "refused", "tcp-blocked", "error")


@record
class NameserverProbe:
    address: str
    port: int = 53
    outcome: str = TIMEOUT  # answered | rcode | timeout | refused | tcp-blocked | error
    rcode: Optional[str] = None  # NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...
    answers: int = 0
    truncated: bool = False
    tcp: Optional[str] = None  # after TC: "ok" | "timeout" | "refused" | "error: ..."
    detail: str = ""
    ms: int = 0
    upstream_of: Optional[str] = None  # found behind this local stub, not in resolv.conf

    @property
    def answered(self) -> bool:
        return self.outcome == ANSWERED

    @property
    def glibc_state(self) -> str:
        if self.outcome == ANSWERED:
            return ANSWERS
        if self.outcome in (RCODE, REFUSED):
            return FAST_FAIL
        return SILENT if self.outcome == TIMEOUT else FAST_FAIL

    def evidence(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


def _classify_reply(out: NameserverProbe, reply: dnswire.Reply) -> None:
    out.rcode = reply.rcode_text
    out.answers = len(reply.answers)
    if reply.rcode in (dnswire.NOERROR, dnswire.NXDOMAIN):
        out.outcome = ANSWERED
        out.detail = f"answered {out.rcode}" + (f" with {out.answers} records" if out.answers else "")
    else:
        out.outcome = RCODE
        out.detail = f"answered {out.rcode}: {rcode_meaning(out.rcode)}"


_TCP_WORDS = {dnsclient.TIMEOUT: "timeout", dnsclient.REFUSED: "refused"}


def probe_nameserver(address: str, qname: str, budget: Budget, *, port: int = 53, edns: bool = False,
                     use_vc: bool = False, upstream_of: Optional[str] = None) -> NameserverProbe:
    """One A query for qname to address, as glibc would send it; TCP retry after truncation."""
    out = NameserverProbe(address=address, port=port, upstream_of=upstream_of)
    asked = dnsclient.ask(address, qname, dnswire.TYPE_A, budget.end, port=port, edns=edns, use_vc=use_vc)
    out.ms, out.truncated = asked.ms, asked.truncated
    if asked.tcp is not None:
        out.tcp = _TCP_WORDS.get(asked.tcp, asked.tcp)
    if asked.reply is not None:
        _classify_reply(out, asked.reply)
    elif out.truncated:
        out.outcome = TCP_BLOCKED
        out.detail = (f"the answer is larger than UDP allows here (truncated, TC) and the retry over TCP 53 "
                      f"failed ({out.tcp}): TCP 53 is blocked")
    elif asked.tcp is not None:  # use-vc: TCP only
        out.outcome = TIMEOUT if out.tcp == "timeout" else REFUSED if out.tcp == "refused" else ERROR
        out.detail = f"over TCP 53: {out.tcp}"
    elif asked.error == dnsclient.TIMEOUT:
        out.outcome, out.detail = TIMEOUT, "no answer in time"
    elif asked.error == dnsclient.REFUSED:
        out.outcome, out.detail = REFUSED, "refused (ICMP port unreachable: no DNS service listens there)"
    else:
        out.outcome, out.detail = ERROR, asked.error or "no reply"
    return out


# ------------------------------------------------------------------------------ verdicts
@record(frozen=True)
class NameserverVerdict:
    address: str
    status: str  # pass | warn | fail
    reason: str  # ok | dns-timeout | dns-error
    message: str
    wait_s: Optional[float] = None  # seconds every lookup waits because of this server (warn)
    used_by_glibc: bool = True
    upstream_of: Optional[str] = None

    @property
    def check_id(self) -> str:
        return f"dns:nameserver:{self.address}"


def _failure_words(p: NameserverProbe, timeout_s: Optional[float] = None) -> Tuple[str, str]:
    """(reason, words) for a nameserver that did not answer."""
    if p.outcome == TIMEOUT:
        return DNS_TIMEOUT, "does not answer" + (f" (no reply in {timeout_s:g} s)" if timeout_s else "")
    if p.outcome == RCODE:
        return DNS_ERROR, f"answers {p.rcode} ({rcode_meaning(p.rcode or '')})"
    if p.outcome == REFUSED:
        return DNS_ERROR, "refuses queries (ICMP port unreachable: no DNS service listens there)"
    if p.outcome == TCP_BLOCKED:
        return DNS_ERROR, (f"truncates the answer over UDP and TCP 53 to it is blocked ({p.tcp}), so answers "
                           f"larger than 512 bytes cannot be fetched")
    return DNS_ERROR, f"fails: {p.detail}"


def judge_nameservers(conf: ResolvConf, probes: Sequence[NameserverProbe], qname: str,
                      budget_s: Optional[float] = None) -> List[NameserverVerdict]:
    """Pure. Per nameserver: pass when it answers; warn when it does not but another of its group
    does (resolv.conf's own list, or one stub's upstreams); fail when none of the group answers.
    For resolv.conf's servers a warn says how long each lookup waits on it under glibc."""
    groups: Dict[Optional[str], List[NameserverProbe]] = {}
    for p in probes:
        groups.setdefault(p.upstream_of, []).append(p)
    out: List[NameserverVerdict] = []
    for stub, members in groups.items():
        answering = [p.address for p in members if p.answered]
        used = [p for p in members if stub is not None or p.address in conf.used]
        for p in members:
            is_used = stub is not None or p.address in conf.used
            where = f" (upstream of the local stub {stub})" if stub else ""
            if p.answered:
                note = "" if is_used else " glibc never asks it: only the first 3 nameservers are used."
                out.append(NameserverVerdict(p.address, PASS, OK, f"Nameserver {p.address}{where} answers "
                                             f"({p.detail}, {p.ms} ms).{note}", used_by_glibc=is_used,
                                             upstream_of=stub))
                continue
            reason, words = _failure_words(p, budget_s)
            others = [a for a in answering if a != p.address]
            if not others:
                out.append(NameserverVerdict(
                    p.address, FAIL, reason,
                    f"Nameserver {p.address}{where} {words}, and no other nameserver{where and ' of that stub'} "
                    f"answers {qname}: lookups fail.", used_by_glibc=is_used, upstream_of=stub))
                continue
            wait = None
            msg = f"Nameserver {p.address}{where} {words}; {', '.join(others)} answer{'s' if len(others) == 1 else ''}."
            if stub is None and is_used:
                wait = _wait_caused(conf, used, p)
                if wait > 0:
                    msg += (f" glibc asks it before the working one, so every lookup of the node's components "
                            f"waits {wait:g} s on it first (resolv.conf timeout:{conf.timeout} "
                            f"attempts:{conf.attempts}{' rotate' if conf.rotate else ''}).")
                else:
                    msg += " It is asked only after the working one fails, so lookups do not wait on it, but it adds no redundancy."
            elif not is_used:
                msg += " glibc never asks it: only the first 3 nameservers are used."
            out.append(NameserverVerdict(p.address, WARN, reason, msg, wait, is_used, stub))
    return out


def _wait_caused(conf: ResolvConf, used: Sequence[NameserverProbe], culprit: NameserverProbe) -> float:
    """Extra seconds per lookup because this server fails, compared with it answering."""
    states = [p.glibc_state for p in used]
    healed = [ANSWERS if p is culprit else s for p, s in zip(used, states)]
    return round(expected_wait(conf, states) - expected_wait(conf, healed), 3)


# ------------------------------------------------------------------------------ the whole check
@record
class NameserverReport:
    conf: ResolvConf
    qname: str
    probes: List[NameserverProbe] = field(default_factory=list)
    stubs: List[dnsstub.StubInfo] = field(default_factory=list)
    verdicts: List[NameserverVerdict] = field(default_factory=list)
    note: str = ""
    error: str = ""  # resolv.conf unreadable: nothing was probed

    def evidence_for(self, address: str, upstream_of: Optional[str] = None) -> Dict[str, Any]:
        """The evidence of one dns:nameserver:ADDR check."""
        probe = next((p for p in self.probes if p.address == address and p.upstream_of == upstream_of), None)
        verdict = next((v for v in self.verdicts if v.address == address and v.upstream_of == upstream_of), None)
        ev: Dict[str, Any] = {"resolv_conf": self.conf.path, "query": {"name": self.qname, "type": "A"},
                              "probe": probe.evidence() if probe else None,
                              "glibc": {"timeout_s": self.conf.timeout, "attempts": self.conf.attempts,
                                        "rotate": self.conf.rotate, "edns0": self.conf.edns0,
                                        "used": list(self.conf.used)}}
        if verdict is not None and verdict.wait_s is not None:
            ev["lookup_wait_s"] = verdict.wait_s
        stub = next((s for s in self.stubs if s.address in (address, upstream_of)), None)
        if stub is not None:
            ev["local_stub"] = stub.evidence()
        if self.note:
            ev["note"] = self.note
        return ev


@record(frozen=True)
class NameserverTarget:
    """One nameserver to probe: from resolv.conf, or an upstream found behind a local stub."""

    address: str
    port: int = 53
    upstream_of: Optional[str] = None  # the loopback stub in resolv.conf this one serves behind
    source: str = ""  # the file it was read from


@record
class ResolverSetup:
    """What the resolver configuration says, read from files only (no packet): the runner reads
    it while planning, so the plan lists one dns:nameserver check per nameserver."""

    conf: ResolvConf
    targets: List[NameserverTarget] = field(default_factory=list)
    stubs: List[dnsstub.StubInfo] = field(default_factory=list)
    note: str = ""
    error: str = ""  # resolv.conf unreadable


def discover(resolv_conf: str, *, resolved_file: str = dnsstub.RESOLVED_UPSTREAM_FILE,
             qname: Optional[str] = None) -> ResolverSetup:
    """The nameservers of resolv_conf and, when they are all loopback stubs, the stubs' upstreams."""
    try:
        conf = read_resolv_conf(resolv_conf)
    except OSError as exc:
        return ResolverSetup(ResolvConf(resolv_conf), error=f"cannot read {resolv_conf}: {exc.strerror or exc}")
    setup = ResolverSetup(conf)
    if not conf.nameservers:
        # glibc res_init.c: no nameserver line means the local host, 127.0.0.1.
        setup.conf = conf = dataclasses.replace(conf, nameservers=("127.0.0.1",))
        setup.note = f"{resolv_conf} has no nameserver line, so glibc asks 127.0.0.1"
    setup.targets = [NameserverTarget(a, 53, None, resolv_conf) for a in conf.nameservers]
    if all(is_loopback(a) for a in conf.used):
        for address in conf.used:
            stub = dnsstub.discover_stub(address, resolved_file=resolved_file, qname=qname)
            setup.stubs.append(stub)
            source = ", ".join(stub.sources)
            setup.targets += [NameserverTarget(u.address, u.port, address, source) for u in stub.upstreams]
        setup.note = _join(setup.note, stub_note(setup.stubs))
    elif dnsstub.nscd_running():
        setup.note = _join(setup.note, "nscd caches this host's glibc lookups in front of these nameservers; "
                                       "kubelet and CoreDNS do not use it")
    return setup


def probe_all(setup: ResolverSetup, targets: Sequence[NameserverTarget], qname: str,
              budget: Budget, refused: Optional[Set[str]] = None) -> NameserverReport:
    """Probe these nameservers concurrently within the budget, and judge them together.

    A nameserver gets at most resolv.conf's `timeout:` to answer: glibc gives up on it after that
    long, so a slower one is as good as dead to the node's components (and a dead one then costs
    the run no more than it costs every lookup)."""
    conf = setup.conf
    budget = Budget(min(budget.end, time.monotonic() + conf.timeout))
    total = budget.left()
    report = NameserverReport(conf=conf, qname=qname, stubs=list(setup.stubs), note=setup.note, error=setup.error)
    calls = [functools.partial(probe_nameserver, t.address, qname, budget, port=t.port, edns=conf.edns0,
                               use_vc=conf.use_vc, upstream_of=t.upstream_of) for t in targets]
    for t, outcome in zip(targets, run_parallel(calls, budget)):
        if outcome is not None and outcome[0] == "ok":
            report.probes.append(outcome[1])
        else:
            detail = "no answer in time" if outcome is None else f"{type(outcome[1]).__name__}: {outcome[1]}"
            report.probes.append(NameserverProbe(t.address, t.port, TIMEOUT if outcome is None else ERROR,
                                                 detail=detail, upstream_of=t.upstream_of))
    for p in report.probes:
        if p.outcome == TIMEOUT and refused and p.address in refused:
            # Hosts rate-limit ICMP errors: this run's other lookups were refused by it at once.
            p.outcome = REFUSED
            p.detail = ("refused other queries of this run (ICMP port unreachable: no DNS service listens "
                        "there); this one got no answer because hosts rate-limit those ICMP errors")
    report.verdicts = judge_nameservers(conf, report.probes, qname, round(total, 1))
    return report


def check_nameservers(resolv_conf: str, qname: str, budget: Budget, *,
                      resolved_file: str = dnsstub.RESOLVED_UPSTREAM_FILE) -> NameserverReport:
    """Every nameserver of resolv_conf (and, behind loopback stubs, their upstreams), probed and judged."""
    setup = discover(resolv_conf, resolved_file=resolved_file, qname=qname)
    if setup.error:
        return NameserverReport(conf=setup.conf, qname=qname, error=setup.error)
    return probe_all(setup, setup.targets, qname, budget)


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def stub_note(stubs: Sequence[dnsstub.StubInfo]) -> str:
    """Pure: what was done about a loopback stub, for the report."""
    which = ", ".join(f"{s.address}: {s.kind}" for s in stubs)
    found = [u.label() for s in stubs for u in s.upstreams]
    sources = ", ".join(src for s in stubs for src in s.sources)
    done = (f"so its upstreams ({', '.join(found)}) were read from {sources} and tested too" if found
            else "and its upstreams could not be found: " + "; ".join(s.note for s in stubs if s.note))
    return (f"resolv.conf points only at a local stub ({which}); kubelet and CoreDNS cannot use a loopback "
            f"stub, {done}")
