"""The packet filter as data: tables, chains, rules and the synthetic packet that walks them.

Both front ends (nft's JSON, iptables-save text) parse into these types, so one evaluator serves
nftables, iptables-nft, iptables-legacy and what firewalld and ufw generate. Nothing here does I/O.

A rule is a sequence of expressions evaluated left to right, as the kernel does: a `Match` that
fails ends the rule; a `Verdict` ends it with a decision; other statements (counter, log, ...) are
`Nop`. What the parsers do not understand becomes `Opaque`, which the evaluator never guesses past.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Scalar = Union[int, str, IPAddress]

# Hooks in the order a packet meets them (netfilter's own order).
INBOUND_HOOKS: Tuple[str, ...] = ("ingress", "prerouting", "input")
OUTBOUND_HOOKS: Tuple[str, ...] = ("output", "postrouting")

# IANA protocol numbers for the names nft and iptables print (nft's meta l4proto / ip protocol).
L4PROTO = {
    "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
    "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132, "udplite": 136, "dccp": 33, "all": -1,
}
L4NAME = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp", 132: "sctp"}


@dataclass(frozen=True)
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
        if isinstance(x, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            lo, hi = self.lo, self.hi
            return (isinstance(lo, type(x)) and isinstance(hi, type(x)) and lo <= x <= hi)
        if isinstance(x, bool) or isinstance(self.lo, bool):
            return x == self.lo
        if isinstance(x, int) and isinstance(self.lo, int):
            return self.lo <= x <= self.hi  # type: ignore[operator]
        return x == self.lo


@dataclass(frozen=True)
class Match:
    """`key` (a packet field, see Packet.field) compared with `atoms`: equal to any (negate=False)
    or to none (negate=True). `mask` applies `field & mask` first (marks, flags)."""

    key: str
    atoms: Tuple[Atom, ...]
    negate: bool = False
    mask: Optional[int] = None
    set_name: Optional[str] = None  # the named set it came from, for rendering and source boundaries


@dataclass(frozen=True)
class Const:
    """A match whose outcome for the first packet of a new flow is known without the packet:
    `limit rate 3/minute` (a fresh bucket lets it through), `recent --update --hitcount` (no
    history), a comment."""

    result: bool
    why: str


@dataclass(frozen=True)
class Verdict:
    kind: str  # accept | drop | reject | jump | goto | return | continue
    target: Optional[str] = None  # chain for jump/goto
    reject_type: Optional[str] = None  # e.g. "icmpx admin-prohibited", "tcp reset"


@dataclass(frozen=True)
class VerdictMap:
    """`KEY vmap { ATOM : VERDICT, ... }`: the first element containing the key's value decides;
    no element means the rule does nothing."""

    key: str
    entries: Tuple[Tuple[Atom, Verdict], ...]
    mask: Optional[int] = None
    map_name: Optional[str] = None


@dataclass(frozen=True)
class SetMark:
    """`meta mark set N` / `-j MARK --set-xmark N/M`: later matches on the mark see
    `(mark & ~clear) ^ value` (xt_MARK's definition; nft's `meta mark set N` is clear=all)."""

    value: int
    clear: int = 0xFFFFFFFF

    def apply(self, mark: int) -> int:
        return (mark & ~self.clear & 0xFFFFFFFF) ^ self.value


@dataclass(frozen=True)
class Nop:
    """A statement with no effect on whether the packet passes (counter, log, ct helper, ...)."""

    what: str


@dataclass(frozen=True)
class Opaque:
    """An expression or statement the parser did not understand. A match (`is_match`) may or may
    not hold, so the evaluator follows both outcomes; a statement stops the evaluation (unknown)."""

    text: str
    is_match: bool = False


Expr = Union[Match, Const, Verdict, VerdictMap, SetMark, Nop, Opaque]


@dataclass(frozen=True)
class Rule:
    family: str
    table: str
    chain: str
    index: int  # 0-based position in its chain
    handle: Optional[int]  # nft handle; None for iptables-legacy
    exprs: Tuple[Expr, ...]
    text: str  # a readable rendering: nft syntax, or the iptables-save line

    @property
    def ref(self) -> str:
        where = f"handle {self.handle}" if self.handle is not None else f"rule {self.index + 1}"
        return f"{self.family} {self.table} {self.chain} {where}"


@dataclass(frozen=True)
class BaseHook:
    hook: str  # prerouting | input | output | postrouting | ingress | forward
    priority: int
    type: str  # filter | nat | route
    policy: str  # accept | drop
    devices: Tuple[str, ...] = ()  # ingress chains only


@dataclass
class Chain:
    name: str
    rules: List[Rule] = field(default_factory=list)
    base: Optional[BaseHook] = None


@dataclass
class Table:
    family: str  # ip | ip6 | inet | netdev | bridge | arp
    name: str
    source: str  # "nftables" | "iptables-nft" | "iptables-legacy"
    chains: Dict[str, Chain] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.family} {self.name}"


@dataclass
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


@dataclass(frozen=True)
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
