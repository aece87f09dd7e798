"""Parse `nft -j list ruleset` (libnftables JSON schema 1) into a Ruleset.

Schema: libnftables-json(5), https://git.netfilter.org/nftables/tree/doc/libnftables-json.adoc.
The JSON listing omits the protocol dependencies nft adds when it compiles a rule (`tcp dport 22`
is `meta l4proto tcp` + the port load in the kernel): they are put back here as explicit matches,
so a port match never matches a packet of another protocol or family.

Anything outside the subset understood here becomes `Opaque` with its rendering: the evaluator
reports it instead of guessing past it.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, Dict, List, Optional, Tuple

from edgecheck.firewall.ruleset import (
    L4PROTO,
    V6_OFFSET,
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
    VerdictMap,
)

# Standard priority names (nft(8), "CHAIN PRIORITIES"); JSON normally gives numbers already.
PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
TCP_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20, "ecn": 0x40, "cwr": 0x80}
L4_WITH_PORTS = ("tcp", "udp", "udplite", "sctp", "dccp")
VERDICTS = ("accept", "drop", "continue", "return")

# Value kinds: how a right-hand side is converted so it compares with the packet's field.
INT, ADDR, NAME, PROTO, FLAGS, BOOL, SYM = "int", "addr", "name", "proto", "flags", "bool", "sym"


class _Unsupported(Exception):
    pass


def parse_nft_json(text: str) -> Ruleset:
    """The whole `nft -j list ruleset` output -> Ruleset (tables of source "nftables")."""
    data = json.loads(text)
    items = data.get("nftables", []) if isinstance(data, dict) else []
    return parse_nft_items(items)


def parse_nft_items(items: List[Dict[str, Any]]) -> Ruleset:
    rs = Ruleset()
    tables: Dict[Tuple[str, str], Table] = {}
    sets: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
    rules: List[Dict[str, Any]] = []
    for item in items:
        if "table" in item:
            t = item["table"]
            tables[(t["family"], t["name"])] = Table(t["family"], t["name"], "nftables")
        elif "chain" in item:
            c = item["chain"]
            table = tables.setdefault((c["family"], c["table"]), Table(c["family"], c["table"], "nftables"))
            base = None
            if "hook" in c:
                devs = c.get("dev") or ()
                base = BaseHook(hook=c["hook"], priority=_priority(c.get("prio", 0)), type=c.get("type", "filter"),
                                policy=c.get("policy", "accept"),
                                devices=tuple([devs] if isinstance(devs, str) else devs))
            table.chains[c["name"]] = Chain(c["name"], base=base)
        elif "set" in item or "map" in item:
            s: Dict[str, Any] = item.get("set") or item.get("map") or {}
            sets[(s["family"], s["table"], s["name"])] = s
        elif "rule" in item:
            rules.append(item["rule"])
    for r in rules:
        table = tables.setdefault((r["family"], r["table"]), Table(r["family"], r["table"], "nftables"))
        chain = table.chains.setdefault(r["chain"], Chain(r["chain"]))
        ctx = _Ctx(r["family"], r["table"], sets)
        exprs = tuple(e for x in r.get("expr", []) for e in ctx.expr(x))
        chain.rules.append(Rule(family=r["family"], table=r["table"], chain=r["chain"], index=len(chain.rules),
                                handle=r.get("handle"), exprs=exprs, source_text=r.get("expr", [])))
    rs.tables = list(tables.values())
    return rs


def _priority(p: Any) -> int:
    if isinstance(p, int):
        return p
    if isinstance(p, str):
        # "filter + 10" in some versions' output
        parts = p.replace("+", " + ").replace("-", " - ").split()
        total, sign = 0, 1
        for tok in parts:
            if tok == "+":
                sign = 1
            elif tok == "-":
                sign = -1
            else:
                total += sign * (PRIORITY_NAMES[tok] if tok in PRIORITY_NAMES else int(tok))
        return total
    return 0


class _Ctx:
    def __init__(self, family: str, table: str, sets: Dict[Tuple[str, str, str], Dict[str, Any]]) -> None:
        self.family, self.table, self.sets = family, table, sets

    # --- expressions -------------------------------------------------------------------
    def expr(self, x: Dict[str, Any]) -> List[Expr]:
        try:
            return self._expr(x)
        except (_Unsupported, KeyError, TypeError, ValueError, IndexError):
            is_match = isinstance(x, dict) and ("match" in x or (x.get("xt", {}).get("type") == "match"))
            return [Opaque(render_expr(x), is_match=is_match)]

    def _expr(self, x: Dict[str, Any]) -> List[Expr]:
        (kind, body), = x.items()
        if kind == "match":
            return self._match(body)
        if kind in VERDICTS:
            return [Verdict(kind)]
        if kind in ("jump", "goto"):
            return [Verdict(kind, target=body["target"])]
        if kind == "reject":
            return [Verdict("reject", reject_type=_reject_type(body))]
        if kind == "vmap":
            return self._vmap(body)
        if kind in ("counter", "log", "notrack", "ct helper", "ct timeout", "ct expectation", "flow",
                    "set", "dynset", "synproxy_none", "nftrace", "secmark", "last", "comment"):
            return [Nop(kind)]
        if kind == "limit":
            inv = bool(body.get("inv"))
            # A new flow's first packet finds tokens in the bucket: `limit rate N` lets it
            # through, `limit rate over N` does not match it.
            return [Const(not inv, render_expr(x))]
        if kind == "meter":
            stmt = body.get("stmt", {})
            if "limit" in stmt:
                return [Const(not stmt["limit"].get("inv"), render_expr(x))]
            raise _Unsupported
        if kind == "mangle":
            key, value = body["key"], body["value"]
            if key == {"meta": {"key": "mark"}} and isinstance(value, int):
                return [SetMark(value)]
            if "ct" in key or key == {"meta": {"key": "nftrace"}} or key == {"meta": {"key": "priority"}}:
                return [Nop(render_expr(x))]
            raise _Unsupported
        if kind == "xt":
            name, typ = body.get("name", ""), body.get("type", "")
            if typ == "match" and name == "comment":
                return [Const(True, "comment")]
            if typ == "target" and name in ("LOG", "NFLOG", "TRACE", "AUDIT", "ULOG"):
                return [Nop(f"{name} target")]
            if typ == "target" and name == "REJECT":
                return [Verdict("reject", reject_type="iptables REJECT")]
            raise _Unsupported
        raise _Unsupported

    def _match(self, m: Dict[str, Any]) -> List[Expr]:
        op, left, right = m["op"], m["left"], m["right"]
        key, kind, mask, deps = self._left(left)
        set_name: Optional[str] = None
        if kind.startswith("concat:"):
            kinds = kind.split(":", 1)[1].split(",")
            if isinstance(right, str) and right.startswith("@"):
                set_name = right[1:]
                s = self.sets.get((self.family, self.table, set_name))
                if s is None:
                    raise _Unsupported
                right = {"set": s.get("elem", [])}
            atoms = self._concat_atoms(right, kinds)
        elif isinstance(right, str) and right.startswith("@"):
            atoms = self._set_atoms(right[1:], kind)
            set_name = right[1:]
        else:
            atoms = self._atoms(right, kind)
        if op in ("==", "in"):
            negate = False
        elif op == "!=":
            negate = True
        elif op in ("<", ">", "<=", ">=") and len(atoms) == 1 and atoms[0].lo == atoms[0].hi and kind in (INT, ADDR):
            atoms, negate = [_compare_range(op, atoms[0].lo, kind)], False
        else:
            raise _Unsupported
        return [*deps, Match(key, tuple(atoms), negate, mask, set_name)]

    def _left(self, left: Any) -> Tuple[str, str, Optional[int], List[Match]]:
        """-> (packet field, value kind, mask, implied dependency matches)."""
        if not isinstance(left, dict):
            raise _Unsupported
        (kind, body), = left.items()
        reader = _LEFT_READERS.get(kind)
        if reader is None:
            raise _Unsupported
        return reader(self, body)

    def _left_meta(self, body: Any) -> Tuple[str, str, Optional[int], List[Match]]:
        k = body["key"]
        if k in ("iifname", "oifname", "iif", "oif"):
            return k.replace("name", "") + "name", NAME, None, []
        named = {"l4proto": ("l4proto", PROTO), "nfproto": ("nfproto", SYM), "protocol": ("meta.protocol", SYM),
                 "mark": ("mark", INT), "pkttype": ("pkttype", SYM)}
        key, vkind = named.get(k, ("meta." + k, INT))
        return key, vkind, None, []

    def _left_payload(self, body: Any) -> Tuple[str, str, Optional[int], List[Match]]:
        if "protocol" not in body:
            raise _Unsupported  # raw payload offsets
        proto, fld = body["protocol"], body["field"]
        if proto in ("ip", "ip6"):
            dep = [_nfproto_dep("ipv4" if proto == "ip" else "ipv6")] if self.family in ("inet", "bridge", "netdev") else []
            if fld in ("saddr", "daddr"):
                return fld, ADDR, None, dep
            if fld in ("protocol", "nexthdr"):
                return "l4proto", PROTO, None, dep
            return f"{proto}.{fld}", INT, None, dep
        if proto == "th":
            if fld in ("sport", "dport"):
                return fld, INT, None, []
            raise _Unsupported
        dep = [_l4_dep(proto)]
        if proto in L4_WITH_PORTS and fld in ("sport", "dport"):
            return fld, INT, None, dep
        if proto == "tcp" and fld == "flags":
            return "tcp.flags", FLAGS, None, dep
        return f"{proto}.{fld}", SYM, None, dep

    def _left_ct(self, body: Any) -> Tuple[str, str, Optional[int], List[Match]]:
        if "dir" in body or "family" in body:
            raise _Unsupported
        k = body["key"]
        return "ct." + k, SYM if k in ("state", "status", "direction") else INT, None, []

    def _left_fib(self, body: Any) -> Tuple[str, str, Optional[int], List[Match]]:
        flags, result = body.get("flags", []), body.get("result")
        if result in ("oif", "oifname") and "saddr" in flags:
            return "fib.rpf", BOOL, None, []
        if result == "type" and "daddr" in flags:
            return "fib.daddr.type", SYM, None, []
        if result == "type" and "saddr" in flags:
            return "fib.saddr.type", SYM, None, []
        raise _Unsupported

    def _left_mask(self, body: Any) -> Tuple[str, str, Optional[int], List[Match]]:
        inner, mask = body
        key, vkind, _, deps = self._left(inner)
        if vkind == FLAGS:
            return key, FLAGS, _flags_value(mask), deps
        if not isinstance(mask, int):
            raise _Unsupported
        return key, vkind, mask, deps

    def _left_concat(self, body: Any) -> Tuple[str, str, Optional[int], List[Match]]:
        parts = [self._left(p) for p in body]
        if any(p[2] is not None for p in parts):
            raise _Unsupported
        deps = [d for p in parts for d in p[3]]
        return "concat:" + ",".join(p[0] for p in parts), "concat:" + ",".join(p[1] for p in parts), None, deps

    # --- values ---------------------------------------------------------------------------
    def _atoms(self, right: Any, kind: str) -> List[Atom]:
        if isinstance(right, dict) and "set" in right:
            return [a for e in right["set"] for a in self._atoms(e, kind)]
        if isinstance(right, list) and kind in (SYM, FLAGS, NAME):
            if kind == FLAGS:
                return [Atom.value(_flags_value(right))]
            return [a for e in right for a in self._atoms(e, kind)]
        return [self._atom(right, kind)]

    def _atom(self, v: Any, kind: str) -> Atom:
        if isinstance(v, dict) and "elem" in v:
            return self._atom(v["elem"]["val"], kind)
        if kind.startswith("concat:") or (isinstance(v, dict) and "concat" in v):
            raise _Unsupported
        if isinstance(v, dict) and "prefix" in v:
            if kind != ADDR:
                raise _Unsupported
            lo, hi = prefix_range(v["prefix"]["addr"], v["prefix"]["len"])
            return Atom(lo, hi)
        if isinstance(v, dict) and "range" in v:
            lo, hi = v["range"]
            return Atom(_scalar(lo, kind), _scalar(hi, kind))
        if kind == NAME and isinstance(v, str):
            if v.endswith("*") and not v.endswith("\\*"):
                return Atom(wildcard=v[:-1])
            return Atom.value(v.replace("\\*", "*"))
        return Atom.value(_scalar(v, kind))

    def _concat_atoms(self, right: Any, kinds: List[str]) -> List[Atom]:
        elems = right["set"] if isinstance(right, dict) and "set" in right else [right]
        out = []
        for e in elems:
            if isinstance(e, dict) and "elem" in e:
                e = e["elem"]["val"]
            if not (isinstance(e, dict) and "concat" in e) or len(e["concat"]) != len(kinds):
                raise _Unsupported
            out.append(Atom(parts=tuple(self._atom(p, k) for p, k in zip(e["concat"], kinds))))
        return out

    def _set_atoms(self, name: str, kind: str) -> List[Atom]:
        s = self.sets.get((self.family, self.table, name))
        if s is None:
            raise _Unsupported
        elems = s.get("elem", [])
        if s.get("map") is not None and "map" in s:
            elems = [e[0] for e in elems]
        return [self._atom(e, kind) for e in elems]

    def _vmap(self, body: Dict[str, Any]) -> List[Expr]:
        key, kind, mask, deps = self._left(body["key"])
        data = body["data"]
        if isinstance(data, str) and data.startswith("@"):
            s = self.sets.get((self.family, self.table, data[1:]))
            if s is None or s.get("map") != "verdict":
                raise _Unsupported
            pairs = s.get("elem", [])
        else:
            pairs = data["set"]
        entries: List[Tuple[Atom, Verdict]] = []
        for k, v in pairs:
            verdict = self._expr(v)
            if len(verdict) != 1 or not isinstance(verdict[0], Verdict):
                raise _Unsupported
            if kind.startswith("concat:"):
                kinds = kind.split(":", 1)[1].split(",")
                atoms = self._concat_atoms(k, kinds)
            else:
                atoms = self._atoms(k, kind)
            entries.extend((a, verdict[0]) for a in atoms)
        return [*deps, VerdictMap(key, tuple(entries), mask)]


_LeftReader = Callable[[_Ctx, Any], Tuple[str, str, Optional[int], List[Match]]]
_LEFT_READERS: Dict[str, _LeftReader] = {
    "meta": _Ctx._left_meta, "payload": _Ctx._left_payload, "ct": _Ctx._left_ct, "fib": _Ctx._left_fib,
    "&": _Ctx._left_mask, "concat": _Ctx._left_concat,
}


def _compare_range(op: str, v: Any, kind: str = INT) -> Atom:
    if kind == ADDR and v >= V6_OFFSET:
        lo_all, hi_all = V6_OFFSET, V6_OFFSET + 2 ** 128 - 1
    elif kind == ADDR:
        lo_all, hi_all = 0, 2 ** 32 - 1
    else:
        lo_all, hi_all = 0, 2 ** 64 - 1
    if op == "<":
        return Atom(lo_all, v - 1)
    if op == "<=":
        return Atom(lo_all, v)
    if op == ">":
        return Atom(v + 1, hi_all)
    return Atom(v, hi_all)


def _scalar(v: Any, kind: str) -> Any:
    if kind == ADDR:
        return addr_int(v)
    if kind == PROTO:
        if isinstance(v, int):
            return v
        if v not in L4PROTO:
            raise _Unsupported
        return L4PROTO[v]
    if kind == INT:
        if isinstance(v, int):
            return v
        if isinstance(v, str) and v.startswith("0x"):
            return int(v, 16)
        raise _Unsupported  # service names etc. (nft -j prints numbers unless -S)
    if kind == FLAGS:
        return _flags_value(v)
    if kind == BOOL:
        if isinstance(v, bool):
            return v
        raise _Unsupported
    if kind == SYM:
        if v == "unicast":  # nft's alias of pkttype host
            return "host"
        return v
    return v


def _flags_value(v: Any) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return TCP_FLAGS[v]
    if isinstance(v, list):
        out = 0
        for f in v:
            out |= _flags_value(f)
        return out
    if isinstance(v, dict) and "|" in v:
        return _flags_value(v["|"])
    raise _Unsupported


# The implied protocol matches are the same few objects for every rule (frozen: safe to share);
# building them once keeps parsing a 5,000-rule ruleset cheap.
@functools.lru_cache(maxsize=None)
def _nfproto_dep(fam: str) -> Match:
    return Match("nfproto", (Atom.value(fam),))


@functools.lru_cache(maxsize=None)
def _l4_dep(proto: str) -> Match:
    if proto not in L4PROTO:
        raise _Unsupported
    return Match("l4proto", (Atom.value(L4PROTO[proto]),))


def _reject_type(body: Any) -> str:
    if not body:
        return "default (icmp port-unreachable)"
    t = body.get("type", "")
    e = body.get("expr")
    return f"{t} {e}" if e else t


# --- rendering ----------------------------------------------------------------------------

def render_rule(exprs: List[Dict[str, Any]]) -> str:
    return " ".join(s for s in (render_expr(x) for x in exprs) if s)


def render_expr(x: Any) -> str:
    try:
        return _render(x)
    except Exception:  # rendering must never break parsing; fall back to the JSON itself
        return json.dumps(x, sort_keys=True)


def _render(x: Any) -> str:
    if not isinstance(x, dict):
        return _rv(x)
    (kind, body), = x.items()
    if kind == "match":
        op = body["op"]
        ops = "" if op in ("==", "in") else op + " "
        return f"{_rl(body['left'])} {ops}{_rv(body['right'], _rl(body['left']))}"
    if kind in VERDICTS:
        return kind
    if kind in ("jump", "goto"):
        return f"{kind} {body['target']}"
    if kind == "reject":
        return "reject" + (f" with {_reject_type(body)}" if body else "")
    if kind == "counter":
        return "counter"
    if kind == "log":
        return "log" + (f" prefix \"{body['prefix']}\"" if isinstance(body, dict) and body.get("prefix") else "")
    if kind == "limit":
        over = "over " if body.get("inv") else ""
        return f"limit rate {over}{body.get('rate')}/{body.get('per')}"
    if kind == "vmap":
        data = body["data"]
        return f"{_rl(body['key'])} vmap {data if isinstance(data, str) else _rv(data)}"
    if kind == "mangle":
        return f"{_rl(body['key'])} set {_rv(body['value'])}"
    if kind == "xt":
        return f"xt {body.get('type')} {body.get('name')}"
    if kind in ("notrack",):
        return kind
    return json.dumps(x, sort_keys=True)


def _rl(left: Any) -> str:
    if not isinstance(left, dict):
        return _rv(left)
    (kind, body), = left.items()
    if kind == "meta":
        k = body["key"]
        return k if k in ("iifname", "oifname", "iif", "oif", "mark") else f"meta {k}"
    if kind == "payload":
        if "protocol" in body:
            return f"{body['protocol']} {body['field']}"
        return f"@{body.get('base')},{body.get('offset')},{body.get('len')}"
    if kind == "ct":
        return f"ct {body['key']}"
    if kind == "fib":
        return f"fib {' . '.join(body.get('flags', []))} {body.get('result')}"
    if kind == "&":
        return f"{_rl(body[0])} & {_rv(body[1])}"
    if kind == "concat":
        return " . ".join(_rl(p) for p in body)
    return json.dumps(left, sort_keys=True)


def _rv(v: Any, left: str = "") -> str:
    if isinstance(v, bool):
        return ("exists" if v else "missing") if left.startswith("fib") else str(v).lower()
    if isinstance(v, str):
        return f'"{v}"' if left in ("iifname", "oifname") else v
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "(" + "|".join(_rv(e) for e in v) + ")" if v and not isinstance(v[0], list) else \
            "{ " + ", ".join(f"{_rv(k)} : {_render(d)}" for k, d in v) + " }"
    if isinstance(v, dict):
        if "set" in v:
            s = v["set"]
            if s and isinstance(s[0], list):
                return "{ " + ", ".join(f"{_rv(k)} : {_render(d)}" for k, d in s) + " }"
            return "{ " + ", ".join(_rv(e, left) for e in s) + " }"
        if "prefix" in v:
            return f"{v['prefix']['addr']}/{v['prefix']['len']}"
        if "range" in v:
            return f"{_rv(v['range'][0])}-{_rv(v['range'][1])}"
        if "concat" in v:
            return " . ".join(_rv(p) for p in v["concat"])
        if "elem" in v:
            return _rv(v["elem"].get("val"), left)
        if "|" in v:
            return "|".join(_rv(e) for e in v["|"])
    return json.dumps(v, sort_keys=True)
