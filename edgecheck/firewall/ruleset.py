"""The packet filter as data: tables, chains, rules and the synthetic packet that walks them.

Both front ends (nft's JSON, iptables-save text) parse into these types, so one evaluator serves
nftables, iptables-nft, iptables-legacy and what firewalld and ufw generate. Nothing here does I/O.

A rule is a sequence of expressions evaluated left to right, as the kernel does: a `Match` that
fails ends the rule; a `Verdict` ends it with a decision; other statements (counter, log, ...) are
`Nop`. What the parsers do not understand becomes `Opaque`, which the evaluator never guesses past.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import field
from typing import Dict, FrozenSet, List, Optional, Tuple, Union

from edgecheck.records import record

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# Hooks in the order a packet meets them (netfilter's own order).
INBOUND_HOOKS: Tuple[str, ...] = ("ingress", "prerouting", "input")
OUTBOUND_HOOKS: Tuple[str, ...] = ("output", "postrouting")

# IANA protocol numbers for the names nft and iptables print (nft's meta l4proto / ip protocol).
L4PROTO = {
    "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
    "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132, "udplite": 136, "dccp": 33, "all": -1,
}


V6_OFFSET = 1 << 128  # IPv6 addresses are stored as int + this, so they never equal an IPv4 one


def addr_int(text: str) -> int:
    """An address as one comparable int (IPv4: its 32-bit value; IPv6: value + V6_OFFSET)."""
    text = text.split("%", 1)[0]
    if ":" in text:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big") + V6_OFFSET
    return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")


def int_addr(value: int) -> str:
    if value >= V6_OFFSET:
        return str(ipaddress.IPv6Address(value - V6_OFFSET))
    return str(ipaddress.IPv4Address(value))


def prefix_range(addr: str, length: int) -> Tuple[int, int]:
    base = addr_int(addr)
    bits = 128 if base >= V6_OFFSET else 32
    host = (1 << (bits - int(length))) - 1
    lo = base & ~host if base < V6_OFFSET else ((base - V6_OFFSET) & ~host) + V6_OFFSET
    return lo, lo + host


@record(frozen=True)
class Atom:
    """One element of what a match compares with: a single value, an inclusive range, an
    interface-name wildcard ("eth*"), or a tuple of atoms (an nft concatenation)."""

    lo: object = None
    hi: object = None  # == lo for a single value
    wildcard: Optional[str] = None  # name prefix; matches any name starting with it
    parts: Optional[Tuple["Atom", ...]] = None

    @staticmethod
    def value(v: object) -> "Atom":
        return Atom(v, v)

    def contains(self, x: object) -> bool:
        if self.parts is not None:
            return isinstance(x, tuple) and len(x) == len(self.parts) and all(
                a.contains(v) for a, v in zip(self.parts, x))
        if self.wildcard is not None:
            return isinstance(x, str) and x.startswith(self.wildcard)
        if isinstance(x, bool) or isinstance(self.lo, bool):
            return x == self.lo
        if isinstance(x, int) and isinstance(self.lo, int):
            return self.lo <= x <= self.hi  # type: ignore[operator]
        return x == self.lo


@record(frozen=True)
class Match:
    """`key` (a packet field, see Packet.field) compared with `atoms`: equal to any (negate=False)
    or to none (negate=True). `mask` applies `field & mask` first (marks, flags)."""

    key: str
    atoms: Tuple[Atom, ...]
    negate: bool = False
    mask: Optional[int] = None
    set_name: Optional[str] = None  # the named set it came from, for rendering and source boundaries
    # Precomputed lookup (a 5,000-rule walk must stay cheap): single values in a set, int ranges,
    # and the rest (wildcards, concatenations) tested one by one.
    exact: FrozenSet[object] = field(default=frozenset(), init=False, repr=False, compare=False)
    ranges: Tuple[Tuple[int, int], ...] = field(default=(), init=False, repr=False, compare=False)
    other: Tuple[Atom, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact, ranges, other = set(), [], []
        for a in self.atoms:
            if a.parts is None and a.wildcard is None and a.lo == a.hi and not isinstance(a.lo, bool):
                exact.add(a.lo)
            elif a.parts is None and a.wildcard is None and isinstance(a.lo, int) and isinstance(a.hi, int) \
                    and not isinstance(a.lo, bool):
                ranges.append((a.lo, a.hi))
            else:
                other.append(a)
        object.__setattr__(self, "exact", frozenset(exact))
        object.__setattr__(self, "ranges", tuple(ranges))
        object.__setattr__(self, "other", tuple(other))

    def hit(self, x: object) -> bool:
        try:
            if x in self.exact:
                return True
        except TypeError:
            pass
        if self.ranges and isinstance(x, int):
            for lo, hi in self.ranges:
                if lo <= x <= hi:
                    return True
        for a in self.other:
            if a.contains(x):
                return True
        return False


@record(frozen=True)
class Const:
    """A match whose outcome for the first packet of a new flow is known without the packet:
    `limit rate 3/minute` (a fresh bucket lets it through), `recent --update --hitcount` (no
    history), a comment."""

    result: bool
    why: str


@record(frozen=True)
class Verdict:
    kind: str  # accept | drop | reject | jump | goto | return | continue
    target: Optional[str] = None  # chain for jump/goto
    reject_type: Optional[str] = None  # e.g. "icmpx admin-prohibited", "tcp reset"


@record(frozen=True)
class VerdictMap:
    """`KEY vmap { ATOM : VERDICT, ... }`: the first element containing the key's value decides;
    no element means the rule does nothing."""

    key: str
    entries: Tuple[Tuple[Atom, Verdict], ...]
    mask: Optional[int] = None


@record(frozen=True)
class SetMark:
    """`meta mark set N` / `-j MARK --set-xmark N/M`: later matches on the mark see
    `(mark & ~clear) ^ value` (xt_MARK's definition; nft's `meta mark set N` is clear=all)."""

    value: int
    clear: int = 0xFFFFFFFF

    def apply(self, mark: int) -> int:
        return (mark & ~self.clear & 0xFFFFFFFF) ^ self.value


@record(frozen=True)
class Nop:
    """A statement with no effect on whether the packet passes (counter, log, ct helper, ...)."""

    what: str


@record(frozen=True)
class Opaque:
    """An expression or statement the parser did not understand. A match (`is_match`) may or may
    not hold, so the evaluator follows both outcomes; a statement stops the evaluation (unknown)."""

    text: str
    is_match: bool = False


Expr = Union[Match, Const, Verdict, VerdictMap, SetMark, Nop, Opaque]


@record(frozen=True)
class Rule:
    family: str
    table: str
    chain: str
    index: int  # 0-based position in its chain
    handle: Optional[int]  # nft handle; None for iptables-legacy
    exprs: Tuple[Expr, ...]
    source_text: object  # the iptables-save line, or nft's JSON expressions (rendered on demand)

    @functools.cached_property
    def text(self) -> str:
        """A readable rendering: nft syntax, or the iptables-save line."""
        if isinstance(self.source_text, str):
            return self.source_text
        from edgecheck.firewall.nftjson import render_rule  # rendering is only needed for reports

        return render_rule(self.source_text)  # type: ignore[arg-type]

    @property
    def ref(self) -> str:
        where = f"handle {self.handle}" if self.handle is not None else f"rule {self.index + 1}"
        return f"{self.family} {self.table} {self.chain} {where}"


@record(frozen=True)
class BaseHook:
    hook: str  # prerouting | input | output | postrouting | ingress | forward
    priority: int
    type: str  # filter | nat | route
    policy: str  # accept | drop
    devices: Tuple[str, ...] = ()  # ingress chains only


@record
class Chain:
    name: str
    rules: List[Rule] = field(default_factory=list)
    base: Optional[BaseHook] = None


@record
class Table:
    family: str  # ip | ip6 | inet | netdev | bridge | arp
    name: str
    source: str  # "nftables" | "iptables-nft" | "iptables-legacy"
    chains: Dict[str, Chain] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.family} {self.name}"


@record
class Ruleset:
    tables: List[Table] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # what reading left out or could not parse

    def table(self, family: str, name: str) -> Optional[Table]:
        for t in self.tables:
            if t.family == family and t.name == name:
                return t
        return None

    def rule_count(self) -> int:
        return sum(len(c.rules) for t in self.tables for c in t.chains.values())


@record(frozen=True)
class Packet:
    """The first packet of a new connection (TCP SYN) or datagram (UDP), as the filter sees it.

    direction "in": arrives on `iifname` for one of this host's addresses (hooks prerouting,
    input); "out": sent by this host via `oifname` (hooks output, postrouting).
    """

    direction: str  # "in" | "out"
    l4proto: str  # "tcp" | "udp"
    saddr: str
    daddr: str
    dport: int
    sport: int = 40000  # an ephemeral port: rules rarely look at it for new connections
    iifname: str = ""
    oifname: str = ""
    mark: int = 0
    rpf_ok: bool = True  # the source is routed back via iifname (reverse-path check passes)

    @property
    def family(self) -> str:
        return "ipv6" if ":" in self.daddr else "ipv4"

    @property
    def hooks(self) -> Tuple[str, ...]:
        return INBOUND_HOOKS if self.direction == "in" else OUTBOUND_HOOKS


class UnknownField(Exception):
    """A match reads a packet field this model does not know a value for."""
