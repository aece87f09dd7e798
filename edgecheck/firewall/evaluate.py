"""Walk a synthetic new packet through the ruleset the way netfilter does; pure.

Order: for each hook the packet meets (ingress, prerouting, input for inbound; output,
postrouting for outbound), every base chain registered at that hook in ascending priority, across
all tables (nft families inet/ip/ip6/netdev, iptables-nft and iptables-legacy tables alike). An
accept ends only the current base chain; drop or reject anywhere is final (nf_hook_slow).
Within a chain: rules in order, jump/goto/return, verdict maps, the chain policy at the end of a
base chain. nat-type chains are skipped: address translation is not modelled (it does not drop).

A match the evaluator cannot decide for this packet (an unknown expression, or a field such as the
socket owner) is not guessed: both outcomes are followed. When they end in the same verdict, that
verdict stands (the unreadable rule did not matter, and it is listed in `uncertain`); when they
differ, the verdict is "unknown" and names the rule. A statement that cannot be interpreted is
unknown at once. Never a silent accept.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

from edgecheck.firewall.ruleset import (
    L4PROTO,
    addr_int,
    Chain,
    Const,
    Match,
    Nop,
    Opaque,
    Packet,
    Rule,
    Ruleset,
    SetMark,
    Table,
    UnknownField,
    Verdict,
    VerdictMap,
)
from edgecheck.records import record

ACCEPT, DROP, REJECT, UNKNOWN = "accept", "drop", "reject", "unknown"
MAX_BRANCHES = 256  # undecidable matches fork the walk; beyond this many paths the verdict is unknown
MAX_DEPTH = 64  # jump nesting; the kernel's own limit is 16 (nft) / unbounded-but-looped-checked (xtables)
_ABSENT = object()  # the field does not exist at this hook (e.g. iifname on output): the match fails
_UNKNOWN = object()  # the field exists but its value is not known here
SYN = 0x02


class _Either:
    """A field with several values, any of which may match (multiport --ports)."""

    def __init__(self, values: Tuple[object, ...]) -> None:
        self.values = values


@record(frozen=True)
class RuleRef:
    """A rule (or a chain's policy) named the way a person finds it again."""

    source: str  # nftables | iptables-nft | iptables-legacy
    family: str
    table: str
    chain: str
    handle: Optional[int]
    index: Optional[int]  # 0-based; None for a chain policy
    text: str

    @property
    def where(self) -> str:
        if self.index is None:
            return f"{self.family} {self.table} chain {self.chain} (policy)"
        pos = f"handle {self.handle}" if self.handle is not None else f"rule {self.index + 1}"
        return f"{self.family} {self.table} chain {self.chain} {pos}"

    def describe(self) -> str:
        return f"`{self.text}` ({self.where})"

    @staticmethod
    def of(table: Table, rule: Rule) -> "RuleRef":
        return RuleRef(table.source, rule.family, rule.table, rule.chain, rule.handle, rule.index, rule.text)

    @staticmethod
    def policy(table: Table, chain: Chain) -> "RuleRef":
        assert chain.base is not None
        return RuleRef(table.source, table.family, table.name, chain.name, None, None, f"policy {chain.base.policy}")


@record(frozen=True)
class BaseChainRef:
    source: str
    family: str
    table: str
    chain: str
    hook: str
    priority: int


@record(frozen=True)
class Evaluation:
    """What the ruleset does with `packet`.

    verdict: accept | drop | reject | unknown.
    rule: the deciding rule (drop/reject), the rule that could not be read (unknown), or for
      accept the first explicit accept on the way (None when no rule and no policy decided).
    path: the chains walked to that rule, starting with its base chain.
    base: the base chain that decided (drop/reject/unknown) — where a fix belongs.
    uncertain: rules with matches this evaluator could not decide but which did not change the verdict.
    """

    packet: Packet
    verdict: str
    rule: Optional[RuleRef] = None
    path: Tuple[str, ...] = ()
    base: Optional[BaseChainRef] = None
    reject_type: Optional[str] = None
    reason: str = ""  # for unknown: what could not be read
    uncertain: Tuple[RuleRef, ...] = ()

    @property
    def blocked(self) -> bool:
        return self.verdict in (DROP, REJECT)

    def describe(self) -> str:
        if self.verdict == UNKNOWN:
            what = self.rule.describe() if self.rule else "the ruleset"
            return f"cannot evaluate rule {what}: {self.reason}"
        if self.verdict == ACCEPT:
            if self.rule is None:
                return "accepted (no rule or policy stops it)"
            return f"accepted by {self.rule.describe()}"
        verb = "dropped" if self.verdict == DROP else f"rejected ({self.reject_type})"
        via = f" via {' -> '.join(self.path)}" if len(self.path) > 1 else ""
        return f"{verb} by {self.rule.describe() if self.rule else 'the ruleset'}{via}"


@record(frozen=True)
class _Out:
    kind: str  # accept | drop | reject | return | unknown
    rule: Optional[RuleRef]
    path: Tuple[str, ...]
    mark: int
    reject_type: Optional[str] = None
    reason: str = ""
    uncertain: Tuple[RuleRef, ...] = ()


@record(frozen=True)
class _Cont:
    """The rule did not end the chain; the next rule sees this mark."""

    mark: int


class _Budget:
    def __init__(self, n: int) -> None:
        self.left = n


def base_chains(rs: Ruleset, pkt: Packet) -> List[Tuple[Table, Chain]]:
    """The filter-type base chains this packet traverses, in traversal order."""
    fams = ("ip", "inet") if pkt.family == "ipv4" else ("ip6", "inet")
    out = []
    for ti, t in enumerate(rs.tables):
        for c in t.chains.values():
            b = c.base
            if b is None or b.type == "nat" or b.hook not in pkt.hooks:
                continue
            if t.family in fams:
                if b.hook == "ingress" and b.devices and pkt.iifname not in b.devices:
                    continue
            elif t.family == "netdev" and b.hook == "ingress":
                if pkt.iifname not in b.devices:
                    continue
            else:
                continue
            out.append((pkt.hooks.index(b.hook), b.priority, ti, t, c))
    out.sort(key=lambda x: (x[0], x[1], x[2]))
    return [(t, c) for _, _, _, t, c in out]


def evaluate(rs: Ruleset, pkt: Packet, max_branches: int = MAX_BRANCHES) -> Evaluation:
    chains = base_chains(rs, pkt)
    budget = _Budget(max_branches)
    f = packet_fields(pkt)
    first_accept: List[Optional[RuleRef]] = [None]

    def run(bi: int, mark: int, uncertain: Tuple[RuleRef, ...]) -> List[Tuple[_Out, int]]:
        if bi == len(chains):
            return [(_Out(ACCEPT, None, (), mark, uncertain=uncertain), bi)]
        table, chain = chains[bi]
        results = []
        for o in _chain(table, chain, f, 0, mark, (f"{table.family} {table.name} {chain.name}",), budget, 0):
            o = replace(o, uncertain=uncertain + o.uncertain)
            if o.kind == "return":  # fell off the end of a base chain: its policy decides
                assert chain.base is not None
                pol = chain.base.policy
                o = replace(o, kind=ACCEPT if pol == "accept" else DROP, rule=RuleRef.policy(table, chain),
                            path=o.path[:1])
            if o.kind == ACCEPT:
                if o.rule is not None and o.rule.index is not None and first_accept[0] is None:
                    first_accept[0] = o.rule
                results.extend(run(bi + 1, o.mark, o.uncertain))
            else:
                results.append((o, bi))
        return results

    outs = run(0, pkt.mark, ())
    kinds = {o.kind for o, _ in outs}
    o, bi = outs[0]
    base = None
    if bi < len(chains):
        t, c = chains[bi]
        assert c.base is not None
        base = BaseChainRef(t.source, t.family, t.name, c.name, c.base.hook, c.base.priority)
    uncertain = tuple(dict.fromkeys(u for oo, _ in outs for u in oo.uncertain))
    if len(kinds) == 1 and UNKNOWN not in kinds:
        rule = o.rule if o.kind != ACCEPT else first_accept[0]
        return Evaluation(pkt, o.kind, rule, o.path, base if o.kind != ACCEPT else None, o.reject_type,
                          uncertain=uncertain)
    # Paths disagree (or one could not be read): report the first unreadable rule.
    unk = next(((oo, b) for oo, b in outs if oo.kind == UNKNOWN), None)
    if unk is not None:
        oo, b = unk
        t, c = chains[b]
        assert c.base is not None
        return Evaluation(pkt, UNKNOWN, oo.rule, oo.path,
                          BaseChainRef(t.source, t.family, t.name, c.name, c.base.hook, c.base.priority),
                          reason=oo.reason, uncertain=uncertain)
    culprit = uncertain[0] if uncertain else None
    verdicts = " or ".join(sorted(kinds))
    return Evaluation(pkt, UNKNOWN, culprit, o.path, base,
                      reason=f"the packet is {verdicts} depending on a match this evaluator cannot read",
                      uncertain=uncertain)


def _chain(table: Table, chain: Chain, f: Dict[str, object], start: int, mark: int, path: Tuple[str, ...],
           budget: _Budget, depth: int) -> List[_Out]:
    """Outcomes of running `chain` from rule `start`; kind "return" = fell off / returned."""
    if depth > MAX_DEPTH:
        return [_Out(UNKNOWN, None, path, mark, reason="jump nesting too deep")]
    rules = chain.rules
    for i in range(start, len(rules)):
        rule = rules[i]
        outs = _rule(table, chain, rule, 0, f, mark, path, budget, depth)
        if outs is None:
            continue  # rule did not match
        if isinstance(outs, _Cont):
            mark = outs.mark  # matched without a verdict (counter, log, mark set)
            continue
        return outs
    return [_Out("return", None, path, mark)]


def _rule(table: Table, chain: Chain, rule: Rule, ei: int, f: Dict[str, object], mark: int, path: Tuple[str, ...],
          budget: _Budget, depth: int) -> "Union[None, _Cont, List[_Out]]":
    """Outcomes of rule `rule` from expression `ei`; None when it does not match, _Cont when it
    matched without ending the chain (the chain goes on with the next rule)."""
    exprs = rule.exprs
    while ei < len(exprs):
        e = exprs[ei]
        ei += 1
        if isinstance(e, Match) or (isinstance(e, Opaque) and e.is_match):
            r = _match(e, f, mark) if isinstance(e, Match) else None
            if r is False:
                return None
            if r is None:
                if _later_match_fails(exprs, ei, f, mark):
                    return None  # the rule cannot match whatever the unreadable part says
                ref = RuleRef.of(table, rule)
                budget.left -= 1
                if budget.left <= 0:
                    return [_Out(UNKNOWN, ref, path, mark, reason="too many rules that cannot be decided here")]
                taken = _rule(table, chain, rule, ei, f, mark, path, budget, depth)
                skipped = _chain(table, chain, f, rule.index + 1, mark, path, budget, depth)
                if taken is None:
                    taken = skipped
                elif isinstance(taken, _Cont):
                    taken = _chain(table, chain, f, rule.index + 1, taken.mark, path, budget, depth)
                both = taken + skipped
                return [replace(o, uncertain=(ref,) + o.uncertain) for o in both]
        elif isinstance(e, Const):
            if not e.result:
                return None
        elif isinstance(e, (Nop,)):
            continue
        elif isinstance(e, SetMark):
            mark = e.apply(mark)
        elif isinstance(e, Verdict):
            return _verdict(table, chain, rule, e, ei, f, mark, path, budget, depth)
        elif isinstance(e, VerdictMap):
            try:
                v = _value(e.key, f, mark)
            except UnknownField:
                return [_Out(UNKNOWN, RuleRef.of(table, rule), path, mark,
                             reason=f"verdict map keyed on {e.key}, unknown for this packet")]
            if v is _ABSENT:
                return None
            if e.mask is not None and isinstance(v, int):
                v &= e.mask
            for atom, verdict in e.entries:
                if atom.contains(v):
                    return _verdict(table, chain, rule, verdict, ei, f, mark, path, budget, depth)
            return _Cont(mark)  # no element: the rule does nothing, the chain goes on
        elif isinstance(e, Opaque):
            return [_Out(UNKNOWN, RuleRef.of(table, rule), path, mark,
                         reason=f"statement not understood: {e.text}")]
    return _Cont(mark)  # a rule without verdict (counter, log, mark set): the chain goes on


def _later_match_fails(exprs: Sequence[object], ei: int, f: Dict[str, object], mark: int) -> bool:
    for e in exprs[ei:]:
        if isinstance(e, Match):
            if _match(e, f, mark) is False:
                return True
        elif isinstance(e, Const):
            if not e.result:
                return True
        elif not isinstance(e, Nop):
            return False  # a statement (verdict, mark, opaque): matches after it depend on it
    return False


def _verdict(table: Table, chain: Chain, rule: Rule, v: Verdict, ei: int, f: Dict[str, object], mark: int,
             path: Tuple[str, ...], budget: _Budget, depth: int) -> "Union[_Cont, List[_Out]]":
    ref = RuleRef.of(table, rule)
    if v.kind == "continue":
        return _Cont(mark)
    if v.kind in (ACCEPT, DROP):
        return [_Out(v.kind, ref, path, mark)]
    if v.kind == REJECT:
        return [_Out(REJECT, ref, path, mark, reject_type=v.reject_type)]
    if v.kind == "return":
        return [_Out("return", ref, path, mark)]
    target = table.chains.get(v.target or "")
    if target is None:
        return [_Out(UNKNOWN, ref, path, mark, reason=f"{v.kind} to a chain that is not in the ruleset: {v.target}")]
    sub = _chain(table, target, f, 0, mark, path + (target.name,), budget, depth + 1)
    if v.kind == "goto":
        return sub  # a return from the goto target returns from this chain too
    outs: List[_Out] = []
    for o in sub:
        if o.kind == "return":
            # back in this chain after the jumping rule
            rest = _chain(table, chain, f, rule.index + 1, o.mark, path, budget, depth)
            outs.extend(replace(r, uncertain=o.uncertain + r.uncertain) for r in rest)
        else:
            outs.append(o)
    return outs


def _match(m: Match, f: Dict[str, object], mark: int) -> Optional[bool]:
    try:
        v = _value(m.key, f, mark)
    except UnknownField:
        return None
    if v is _ABSENT:
        return False  # the kernel's expression "breaks": the rule does not match, negated or not
    if m.mask is not None and isinstance(v, int):
        v &= m.mask
    if isinstance(v, _Either):
        hit = any(m.hit(x) for x in v.values)
    else:
        hit = m.hit(v)
    return hit != m.negate


def match(m: Match, pkt: Packet) -> Optional[bool]:
    """One match against a packet: True, False, or None when it cannot be decided here."""
    return _match(m, packet_fields(pkt), pkt.mark)


def _value(key: str, f: Dict[str, object], mark: int) -> object:
    if key == "mark":
        return mark
    v = f.get(key, _UNKNOWN)
    if v is _UNKNOWN:
        if key.startswith("concat:"):
            vals = tuple(_value(k, f, mark) for k in key[len("concat:"):].split(","))
            return _ABSENT if any(x is _ABSENT for x in vals) else vals
        raise UnknownField(key)
    return v


def packet_fields(pkt: Packet) -> Dict[str, object]:
    """Every field a match may read, computed once per packet (the walk is the hot path)."""
    inbound = pkt.direction == "in"
    return {
        "dport": pkt.dport,
        "sport": pkt.sport,
        "anyport": _Either((pkt.sport, pkt.dport)),  # iptables multiport --ports
        "saddr": addr_int(pkt.saddr),
        "daddr": addr_int(pkt.daddr),
        "l4proto": L4PROTO[pkt.l4proto],
        "nfproto": pkt.family,
        "meta.protocol": "ip" if pkt.family == "ipv4" else "ip6",
        "ct.state": "new",
        # a new, untranslated connection has none of the status bits rules test (dnat, snat, ...)
        "ct.status": "",
        "ct.direction": "original",
        "ct.mark": 0,
        "pkttype": "host",
        "fib.daddr.type": "local" if inbound else "unicast",
        "fib.saddr.type": "unicast" if inbound else "local",
        "fib.rpf": pkt.rpf_ok if inbound else _UNKNOWN,
        "tcp.flags": SYN,
        # no input device on output, no output device before routing on input: the match fails
        "iifname": (pkt.iifname or _UNKNOWN) if inbound else _ABSENT,
        "oifname": _ABSENT if inbound else (pkt.oifname or _UNKNOWN),
    }
