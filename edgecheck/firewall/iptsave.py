"""Parse iptables-save / ip6tables-save text (legacy or nft variant) into Ruleset tables.

Why text and not nft's JSON for iptables-nft: rules written with xtables matches and targets
(`-m conntrack`, `-m multiport`, `-j REJECT`, ...) are stored as compat expressions that
`nft -j list ruleset` prints only as `{"xt": {"name": "conntrack"}}`, without their arguments.
iptables-nft-save prints them in full. This is what ufw (before.rules: conntrack, addrtype,
limit, recent) and kube-proxy write.

Matches and targets follow iptables-extensions(8). Modules not understood become `Opaque`.
"""

from __future__ import annotations

import ipaddress
import shlex
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edgecheck.firewall.ruleset import (
    L4PROTO,
    addr_int,
    prefix_range,
    Atom,
    BaseHook,
    Chain,
    Const,
    Expr,
    Match,
    Nop,
    Opaque,
    Rule,
    Ruleset,
    SetMark,
    Table,
    Verdict,
)

# Netfilter's fixed priorities of the xtables tables (include/uapi/linux/netfilter_ipv4.h,
# NF_IP_PRI_*): what orders them against nft base chains at the same hook.
TABLE_PRIORITY = {"raw": -300, "mangle": -150, "nat": -100, "filter": 0, "security": 50}
NAT_PRIORITY = {"PREROUTING": -100, "OUTPUT": -100, "INPUT": 100, "POSTROUTING": 100}
CHAIN_HOOK = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward", "OUTPUT": "output",
              "POSTROUTING": "postrouting"}
NON_TERMINAL_TARGETS = {"LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "NOTRACK", "CT", "TCPMSS", "CLASSIFY",
                        "DSCP", "TOS", "TTL", "HL", "CHECKSUM", "SECMARK", "CONNSECMARK", "CONNMARK",
                        "IDLETIMER", "LED", "RATEEST", "TEE"}
TCP_FLAG_BITS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20,
                 "ECE": 0x40, "CWR": 0x80, "ALL": 0xFF, "NONE": 0}


_PROTO_MODULES = ("tcp", "udp", "sctp", "udplite", "dccp")
_PROTO_OPTS = ("--dport", "--destination-port", "--sport", "--source-port", "--syn", "--tcp-flags")


class _Bad(Exception):
    pass


def parse_iptables_save(text: str, family: str = "ip", source: str = "iptables-legacy") -> Ruleset:
    """iptables-save (family "ip") or ip6tables-save (family "ip6") output -> Ruleset."""
    rs = Ruleset()
    table: Optional[Table] = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            table = Table(family, line[1:].strip(), source)
            rs.tables.append(table)
            continue
        if table is None:
            continue
        if line == "COMMIT":
            table = None
            continue
        if line.startswith(":"):
            name, policy = (line[1:].split() + ["-"])[:2]
            base = None
            if name in CHAIN_HOOK and policy != "-":
                prio = NAT_PRIORITY[name] if table.name == "nat" else TABLE_PRIORITY.get(table.name, 0)
                ctype = "nat" if table.name == "nat" else "filter"
                base = BaseHook(CHAIN_HOOK[name], prio, ctype, policy.lower())
            table.chains[name] = Chain(name, base=base)
            continue
        if line.startswith("["):  # iptables-save -c counters
            line = line.split("]", 1)[1].strip()
        if line.startswith("-A "):
            try:
                toks = shlex.split(line)
            except ValueError:
                toks = line.split()
            chain_name = toks[1]
            chain = table.chains.setdefault(chain_name, Chain(chain_name))
            exprs = parse_rule_tokens(toks[2:], family)
            chain.rules.append(Rule(family=family, table=table.name, chain=chain_name, index=len(chain.rules),
                                    handle=None, exprs=exprs, source_text=line))
    return rs


def parse_rule_tokens(toks: Sequence[str], family: str = "ip") -> Tuple[Expr, ...]:
    try:
        return tuple(_Parser(list(toks), family).parse())
    except (_Bad, IndexError, ValueError, KeyError) as exc:
        return (Opaque(f"cannot parse rule ({exc}): {' '.join(toks)}"),)


class _Parser:
    def __init__(self, toks: List[str], family: str) -> None:
        self.toks, self.i, self.family = toks, 0, family
        self.out: List[Expr] = []
        self.proto: Optional[str] = None

    def next(self) -> str:
        t = self.toks[self.i]
        self.i += 1
        return t

    def peek(self) -> Optional[str]:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def parse(self) -> List[Expr]:
        target: List[Expr] = []
        module: Optional[str] = None
        while self.i < len(self.toks):
            neg = False
            t = self.next()
            if t == "!":
                neg = True
                t = self.next()
            if t in ("-s", "--source", "-d", "--destination"):
                key = "saddr" if t in ("-s", "--source") else "daddr"
                self.out.append(Match(key, tuple(_net_atom(a) for a in self.next().split(",")), neg))
            elif t in ("-p", "--protocol"):
                p = self.next().lower()
                if p in ("all", "0"):
                    if neg:
                        self.out.append(Const(False, "! -p all"))
                    continue
                self.proto = p
                num = int(p) if p.isdigit() else L4PROTO[p if p != "icmpv6" else "ipv6-icmp"]
                self.out.append(Match("l4proto", (Atom.value(num),), neg))
            elif t in ("-i", "--in-interface", "-o", "--out-interface"):
                key = "iifname" if t in ("-i", "--in-interface") else "oifname"
                self.out.append(Match(key, (_if_atom(self.next()),), neg))
            elif t in ("-f", "--fragment"):
                self.out.append(Const(neg, "-f (non-first fragments only)"))
            elif t in ("-m", "--match"):
                module = self.next()
                if module == "comment":
                    self.out.append(Const(True, "comment"))
            elif t in ("-j", "--jump"):
                target = self._target(self.next())
                module = None
            elif t in ("-g", "--goto"):
                target = [Verdict("goto", target=self.next())]
            elif t in ("-c", "--set-counters"):
                self.next()
                self.next()
            elif t.startswith("--"):
                if module is None and self.proto in ("tcp", "udp", "sctp", "udplite", "dccp"):
                    module = self.proto  # `-p tcp --dport N`: iptables loads the protocol match implicitly
                if module is None:
                    raise _Bad(f"option {t} outside a match")
                self._module_option(module, t, neg)
            else:
                raise _Bad(f"unexpected {t}")
        return self.out + target

    def _args_until_option(self) -> List[str]:
        args: List[str] = []
        while True:
            nxt = self.peek()
            if nxt is None or nxt == "!" or (nxt.startswith("-") and len(nxt) > 1 and not nxt[1].isdigit()):
                return args
            args.append(self.next())

    def _module_option(self, module: str, opt: str, neg: bool) -> None:
        if opt in _PROTO_OPTS and module not in _PROTO_MODULES and self.proto in _PROTO_MODULES:
            module = self.proto  # the implicit protocol match takes its options after any -m
        handler = _MODULE_HANDLERS.get(module)
        if handler is None:
            args = self._args_until_option()
            self.out.append(Opaque(f"-m {module} {opt} {' '.join(args)}".strip(), is_match=True))
            return
        handler(self, module, opt, neg)

    def _m_proto(self, module: str, opt: str, neg: bool) -> None:
        if opt in ("--dport", "--destination-port", "--sport", "--source-port"):
            key = "dport" if opt in ("--dport", "--destination-port") else "sport"
            self.out.append(Match(key, (_port_atom(self.next()),), neg))
        elif opt == "--syn":
            self.out.append(Match("tcp.flags", (Atom.value(0x02),), neg, mask=0x17))
        elif opt == "--tcp-flags":
            mask, comp = _tcp_flags(self.next()), _tcp_flags(self.next())
            self.out.append(Match("tcp.flags", (Atom.value(comp),), neg, mask=mask))
        else:
            raise _Bad(f"-m {module} {opt}")

    def _m_multiport(self, module: str, opt: str, neg: bool) -> None:
        keys = {"--dports": "dport", "--destination-ports": "dport", "--sports": "sport",
                "--source-ports": "sport", "--ports": "anyport"}
        if opt not in keys:
            raise _Bad(f"-m multiport {opt}")
        self.out.append(Match(keys[opt], tuple(_port_atom(p) for p in self.next().split(",")), neg))

    def _m_conntrack(self, module: str, opt: str, neg: bool) -> None:
        if opt in ("--ctstate", "--state"):
            self.out.append(Match("ct.state", tuple(Atom.value(s.lower()) for s in self.next().split(",")), neg))
        elif opt == "--ctstatus":
            self.out.append(Match("ct.status", tuple(Atom.value(s.lower()) for s in self.next().split(",")), neg))
        elif opt == "--ctdir":
            self.out.append(Match("ct.direction", (Atom.value(self.next().lower()),), neg))
        elif opt == "--ctproto":
            p = self.next().lower()
            self.out.append(Match("l4proto", (Atom.value(int(p) if p.isdigit() else L4PROTO[p]),), neg))
        elif opt in ("--ctorigsrc", "--ctorigdst"):
            self.out.append(Match("saddr" if opt == "--ctorigsrc" else "daddr", (_net_atom(self.next()),), neg))
        elif opt in ("--ctorigsrcport", "--ctorigdstport"):
            self.out.append(Match("sport" if opt == "--ctorigsrcport" else "dport", (_port_atom(self.next()),), neg))
        else:
            raise _Bad(f"-m conntrack {opt}")

    def _m_one_argument(self, module: str, opt: str, neg: bool) -> None:
        # comment; limit --limit/--limit-burst: a fresh bucket lets the first packet through
        self.next()

    def _m_hashlimit(self, module: str, opt: str, neg: bool) -> None:
        if opt == "--hashlimit-above":
            self.next()
            self.out.append(Const(neg, "hashlimit above (not reached by a first packet)"))
            return
        nxt = self.peek()
        if nxt is not None and not nxt.startswith("--"):
            self.next()

    def _m_recent(self, module: str, opt: str, neg: bool) -> None:
        if opt == "--set":
            self.out.append(Const(not neg, "recent --set"))
        elif opt in ("--rcheck", "--update", "--remove"):
            # A synthetic first packet has no history in the list: rcheck/update/remove do not match.
            self.out.append(Const(neg, f"recent {opt} (no history for a new source)"))
        elif opt in ("--seconds", "--hitcount", "--name", "--mask"):
            self.next()
        elif opt not in ("--rsource", "--rdest", "--rttl", "--reap"):
            raise _Bad(f"-m recent {opt}")

    def _m_addrtype(self, module: str, opt: str, neg: bool) -> None:
        if opt in ("--dst-type", "--src-type"):
            key = "fib.daddr.type" if opt == "--dst-type" else "fib.saddr.type"
            self.out.append(Match(key, tuple(Atom.value(x.lower()) for x in self.next().split(",")), neg))
        elif opt not in ("--limit-iface-in", "--limit-iface-out"):
            raise _Bad(f"-m addrtype {opt}")

    def _m_icmp(self, module: str, opt: str, neg: bool) -> None:
        self.next()
        dep = "icmp" if module == "icmp" else "ipv6-icmp"
        self.out.append(Match("l4proto", (Atom.value(L4PROTO[dep]),)))
        self.out.append(Opaque(f"-m {module} {opt}", is_match=True))  # never reached by a TCP/UDP packet

    def _m_iprange(self, module: str, opt: str, neg: bool) -> None:
        if opt not in ("--src-range", "--dst-range"):
            raise _Bad(f"-m iprange {opt}")
        lo, hi = self.next().split("-")
        self.out.append(Match("saddr" if opt == "--src-range" else "daddr", (Atom(addr_int(lo), addr_int(hi)),), neg))

    def _m_mark(self, module: str, opt: str, neg: bool) -> None:
        if opt != "--mark":
            raise _Bad(f"-m {module} {opt}")
        val, mask = _value_mask(self.next())
        self.out.append(Match("mark" if module == "mark" else "ct.mark", (Atom.value(val),), neg, mask=mask))

    def _m_owner(self, module: str, opt: str, neg: bool) -> None:
        v = self.next()
        self.out.append(Match("meta.skuid" if opt == "--uid-owner" else "meta.sk" + opt[2:], (Atom.value(v),), neg))

    def _m_ipv6_header(self, module: str, opt: str, neg: bool) -> None:
        nxt = self.peek()
        if nxt and not nxt.startswith("--"):
            self.next()
        # Needs that IPv6 extension header; a plain TCP/UDP packet has none (ip6t_rt returns false).
        self.out.append(Const(False, f"-m {module} (extension header absent)"))

    def _m_ttl(self, module: str, opt: str, neg: bool) -> None:
        self.next()
        self.out.append(Match(f"{module}.value", (Atom.value(0),), neg))

    def _m_pkttype(self, module: str, opt: str, neg: bool) -> None:
        v = self.next().lower()
        self.out.append(Match("pkttype", (Atom.value("host" if v == "unicast" else v),), neg))

    def _m_policy(self, module: str, opt: str, neg: bool) -> None:
        if opt == "--pol":
            v = self.next()
            self.out.append(Const((v == "none") != neg, f"policy --pol {v} (packet without IPsec)"))
        elif opt == "--dir":
            self.next()
        elif opt != "--strict":
            raise _Bad(f"-m policy {opt}")

    def _target(self, name: str) -> List[Expr]:
        args = self.toks[self.i:]
        self.i = len(self.toks)
        if name in ("ACCEPT", "DROP", "RETURN"):
            return [Verdict(name.lower())]
        if name == "REJECT":
            how = args[args.index("--reject-with") + 1] if "--reject-with" in args else \
                ("icmp6-port-unreachable" if self.family == "ip6" else "icmp-port-unreachable")
            return [Verdict("reject", reject_type=how)]
        if name in NON_TERMINAL_TARGETS:
            return [Nop(f"-j {name}")]
        if name == "MARK":
            return [_mark_target(args)]
        if name.isupper() or name in ("NFQUEUE", "QUEUE"):
            # Unknown extension targets are upper-case by convention; chains may be too (ufw, KUBE-*),
            # so only treat it as a target when args follow or it is a known non-chain.
            if args or name in ("NFQUEUE", "QUEUE", "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "TPROXY"):
                return [Opaque(f"-j {name} {' '.join(args)}".strip())]
        return [Verdict("jump", target=name)]


_ModuleHandler = Callable[[_Parser, str, str, bool], None]
_MODULE_HANDLERS: Dict[str, _ModuleHandler] = {
    **{m: _Parser._m_proto for m in _PROTO_MODULES},
    "multiport": _Parser._m_multiport,
    "conntrack": _Parser._m_conntrack, "state": _Parser._m_conntrack,
    "comment": _Parser._m_one_argument, "limit": _Parser._m_one_argument,
    "hashlimit": _Parser._m_hashlimit,
    "recent": _Parser._m_recent,
    "addrtype": _Parser._m_addrtype,
    "icmp": _Parser._m_icmp, "icmp6": _Parser._m_icmp,
    "iprange": _Parser._m_iprange,
    "mark": _Parser._m_mark, "connmark": _Parser._m_mark,
    "owner": _Parser._m_owner,
    **{m: _Parser._m_ipv6_header for m in ("rt", "frag", "hbh", "dst")},
    "hl": _Parser._m_ttl, "ttl": _Parser._m_ttl,
    "pkttype": _Parser._m_pkttype,
    "policy": _Parser._m_policy,
}


def _mark_target(args: List[str]) -> Expr:
    if len(args) >= 2:
        opt, v = args[0], args[1]
        val, mask = _value_mask(v)
        m = 0xFFFFFFFF if mask is None else mask
        if opt == "--set-xmark":
            return SetMark(val, m)
        if opt == "--set-mark":
            return SetMark(val, m | val)  # --set-mark V/M is --set-xmark V/(M|V)
        if opt == "--or-mark":
            return SetMark(val, val)
    return Opaque("-j MARK " + " ".join(args))


def _value_mask(v: str) -> Tuple[int, Optional[int]]:
    if "/" in v:
        a, b = v.split("/", 1)
        return int(a, 0), int(b, 0)
    return int(v, 0), None


def _tcp_flags(v: str) -> int:
    out = 0
    for f in v.split(","):
        out |= TCP_FLAG_BITS[f.upper()]
    return out


def _net_atom(v: str) -> Atom:
    if "/" in v:
        addr, mask = v.split("/", 1)
        if "." in mask or ":" in mask:  # dotted netmask (old iptables-save)
            mask = str(ipaddress.ip_network(f"{addr}/{mask}", strict=False).prefixlen)
        lo, hi = prefix_range(addr, int(mask))
    else:
        lo = hi = addr_int(v)
    return Atom(lo, hi)


def _port_atom(v: str) -> Atom:
    if ":" in v:
        lo, hi = v.split(":", 1)
        return Atom(int(lo) if lo else 0, int(hi) if hi else 65535)
    return Atom.value(int(v))


def _if_atom(v: str) -> Atom:
    if v.endswith("+"):
        return Atom(wildcard=v[:-1])
    return Atom.value(v)
