"""Who owns the rules (firewalld with its zone, ufw, plain nftables, iptables-nft/-legacy) and the
command that opens a port in that manager's own terms; pure.

Sources for the names recognised here:
- firewalld nftables backend, src/firewall/core/nftables.py (firewalld/firewalld): one table
  `inet firewalld`; zone dispatch chain `filter_INPUT_ZONES` (`iifname "X" goto filter_IN_<zone>`,
  `ip saddr CIDR goto filter_IN_<zone>`, a final `goto filter_IN_<default zone>`); per-zone chains
  `filter_IN_<zone>` with `_pre/_log/_deny/_allow/_post` sub-chains and a final
  `reject with icmpx admin-prohibited`; policies in `filter_<IN|OUT|FWD>_policy_<name>`.
- firewalld iptables backend, src/firewall/core/ipXtables.py: chains `INPUT_ZONES`, `IN_<zone>`,
  `IN_<zone>_allow`, ...
- ufw, /usr/share/ufw/iptables/before.rules and src/backend_iptables.py (ufw on Launchpad): every
  chain is `ufw-*` (`ufw-user-input` holds `ufw allow/deny` rules), ufw6 the same in ip6tables.
"""

from __future__ import annotations

import re
from typing import List, Optional, Sequence, Tuple

from edgecheck.firewall.evaluate import BaseChainRef, Evaluation, match
from edgecheck.firewall.ruleset import Match, Packet, Ruleset, Verdict
from edgecheck.records import record

FIREWALLD, UFW, NFTABLES, IPTABLES_NFT, IPTABLES_LEGACY, NONE = (
    "firewalld", "ufw", "nftables", "iptables-nft", "iptables-legacy", "none")
DEBIAN, RHEL = "debian", "rhel"

_FWD_NFT_ZONE = re.compile(r"^filter_IN_(?!policy_)(.+?)(?:_(?:pre|log|deny|allow|post))?$")
_FWD_IPT_ZONE = re.compile(r"^IN_(.+?)(?:_(?:pre|log|deny|allow|post))?$")


@record(frozen=True)
class Manager:
    name: str  # firewalld | ufw | nftables | iptables-nft | iptables-legacy | none
    zone: Optional[str] = None  # firewalld: the zone whose rules handle the packet
    backend: str = ""  # firewalld/ufw: the table source underneath (nftables, iptables-nft, ...)


def firewalld_present(rs: Ruleset) -> bool:
    return any(t.name == "firewalld" for t in rs.tables) or any(
        "INPUT_ZONES" in t.chains for t in rs.tables if t.source.startswith("iptables"))


def ufw_present(rs: Ruleset) -> bool:
    return any(n.startswith("ufw-") or n.startswith("ufw6-") for t in rs.tables for n in t.chains)


def firewalld_zone(rs: Ruleset, pkt: Packet) -> Optional[str]:
    """The zone firewalld dispatches this inbound packet to, read from its dispatch chain (source
    bindings first, then interfaces, then the default zone — the order firewalld writes them)."""
    for t in rs.tables:
        if t.name == "firewalld" and "filter_INPUT_ZONES" in t.chains:
            chain, prefix = t.chains["filter_INPUT_ZONES"], "filter_IN_"
        elif t.source.startswith("iptables") and "INPUT_ZONES" in t.chains:
            chain, prefix = t.chains["INPUT_ZONES"], "IN_"
        else:
            continue
        for rule in chain.rules:
            ok = True
            target = None
            for e in rule.exprs:
                if isinstance(e, Match):
                    if match(e, pkt) is not True:
                        ok = False
                        break
                elif isinstance(e, Verdict) and e.kind in ("goto", "jump") and e.target:
                    target = e.target
            if ok and target and target.startswith(prefix):
                return target[len(prefix):]
    return None


def zone_from_path(path: Sequence[str]) -> Optional[str]:
    for p in path:
        name = p.split()[-1]
        m = _FWD_NFT_ZONE.match(name) or _FWD_IPT_ZONE.match(name)
        if m:
            return m.group(1)
    return None


def detect_manager(rs: Ruleset, ev: Optional[Evaluation] = None) -> Manager:
    """The manager whose rules decided `ev` (when given), else the one that owns the host's filter.

    A rule added by hand with iptables on a firewalld host is iptables', not firewalld's: the
    remediation must go where the blocking rule is.
    """
    if ev is not None and ev.base is not None:
        base = ev.base
        names = [p.split()[-1] for p in ev.path]
        if base.table == "firewalld" or (base.source.startswith("iptables") and zone_from_path(ev.path)
                                         and firewalld_present(rs)):
            zone = zone_from_path(ev.path) or (firewalld_zone(rs, ev.packet) if ev.packet.direction == "in" else None)
            return Manager(FIREWALLD, zone, "nftables" if base.table == "firewalld" else base.source)
        if any(n.startswith("ufw") for n in names) or (ufw_present(rs) and base.chain in ("INPUT", "OUTPUT")
                                                       and base.source.startswith("iptables")
                                                       and ev.rule is not None and ev.rule.index is None):
            return Manager(UFW, None, base.source)
        return Manager(base.source if base.source in (IPTABLES_NFT, IPTABLES_LEGACY) else NFTABLES)
    if firewalld_present(rs):
        return Manager(FIREWALLD)
    if ufw_present(rs):
        return Manager(UFW)
    sources = {t.source for t in rs.tables}
    if not rs.tables:
        return Manager(NONE)
    if "nftables" in sources:
        return Manager(NFTABLES)
    return Manager(IPTABLES_LEGACY if "iptables-legacy" in sources else IPTABLES_NFT)


@record(frozen=True)
class Opening:
    """What must be let through: inbound to a local port from sources, or outbound to destinations."""

    direction: str  # "in" | "out"
    protocol: str  # tcp | udp
    port: int
    sources: Tuple[str, ...] = ()  # inbound; CIDRs or addresses; empty = from anywhere
    destinations: Tuple[str, ...] = ()  # outbound; addresses or CIDRs; empty = anywhere


@record(frozen=True)
class Remedy:
    manager: str
    commands: Tuple[str, ...]  # run in this order, as root
    persist: str  # how the change survives a reboot ("" when the commands persist it already)

    def text(self) -> str:
        cmd = " && ".join(self.commands)
        return f"{cmd}. {self.persist}".strip() if self.persist else cmd


def _fam(addr: str) -> str:
    return "ipv6" if ":" in addr else "ipv4"


def remedy(manager: Manager, op: Opening, base: Optional[BaseChainRef] = None,
           distro_family: Optional[str] = None) -> Remedy:
    if manager.name == FIREWALLD:
        return _firewalld(manager, op)
    if manager.name == UFW:
        return _ufw(op)
    if manager.name in (IPTABLES_NFT, IPTABLES_LEGACY):
        return _iptables(manager, op, base, distro_family)
    return _nft(op, base, distro_family)


def _firewalld(m: Manager, op: Opening) -> Remedy:
    zone = m.zone or "public"
    pp = f"{op.port}/{op.protocol}"
    if op.direction == "in":
        if not op.sources:
            cmds = [f"firewall-cmd --permanent --zone={zone} --add-port={pp}"]
        else:
            cmds = [f"firewall-cmd --permanent --zone={zone} --add-rich-rule='rule family=\"{_fam(s)}\" "
                    f"source address=\"{s}\" port port=\"{op.port}\" protocol=\"{op.protocol}\" accept'"
                    for s in op.sources]
        return Remedy(FIREWALLD, tuple(cmds + ["firewall-cmd --reload"]), "")
    # Outbound filtering in firewalld is a policy from the HOST zone (firewalld >= 0.9).
    pol = "edgecheck-egress"
    cmds = [f"(firewall-cmd --permanent --info-policy={pol} >/dev/null 2>&1 || "
            f"firewall-cmd --permanent --new-policy={pol})",
            f"firewall-cmd --permanent --policy={pol} --add-ingress-zone=HOST",
            f"firewall-cmd --permanent --policy={pol} --add-egress-zone=ANY"]
    if op.destinations:
        cmds += [f"firewall-cmd --permanent --policy={pol} --add-rich-rule='rule family=\"{_fam(d)}\" "
                 f"destination address=\"{d}\" port port=\"{op.port}\" protocol=\"{op.protocol}\" accept'"
                 for d in op.destinations]
    else:
        cmds.append(f"firewall-cmd --permanent --policy={pol} --add-port={pp}")
    return Remedy(FIREWALLD, tuple(cmds + ["firewall-cmd --reload"]), "")


def _ufw(op: Opening) -> Remedy:
    if op.direction == "in":
        if not op.sources:
            cmds = [f"ufw allow {op.port}/{op.protocol}"]
        else:
            cmds = [f"ufw allow from {s} to any port {op.port} proto {op.protocol}" for s in op.sources]
    else:
        if not op.destinations:
            cmds = [f"ufw allow out {op.port}/{op.protocol}"]
        else:
            cmds = [f"ufw allow out to {d} port {op.port} proto {op.protocol}" for d in op.destinations]
    # ufw inserts the rule into ufw-user-input/-output and writes /etc/ufw/user*.rules itself.
    return Remedy(UFW, tuple(cmds), "")


def _nft(op: Opening, base: Optional[BaseChainRef], distro_family: Optional[str]) -> Remedy:
    if base is not None and base.source == "nftables":
        fam, table, chain = base.family, base.table, base.chain
    else:
        fam, table, chain = "inet", "filter", "input" if op.direction == "in" else "output"
    peers = op.sources if op.direction == "in" else op.destinations
    field = "saddr" if op.direction == "in" else "daddr"
    cmds: List[str] = []
    if not peers:
        cmds.append(f"nft insert rule {fam} {table} {chain} {op.protocol} dport {op.port} accept")
    else:
        for pfam in ("ipv4", "ipv6"):
            group = [p for p in peers if _fam(p) == pfam]
            if not group or (fam == "ip" and pfam == "ipv6") or (fam == "ip6" and pfam == "ipv4"):
                continue
            proto = "ip" if pfam == "ipv4" else "ip6"
            addrs = group[0] if len(group) == 1 else "{ " + ", ".join(group) + " }"
            cmds.append(f"nft insert rule {fam} {table} {chain} {proto} {field} {addrs} {op.protocol} dport {op.port} accept")
    conf = {DEBIAN: "/etc/nftables.conf", RHEL: "/etc/sysconfig/nftables.conf"}.get(
        distro_family or "", "/etc/nftables.conf (Debian/Ubuntu) or /etc/sysconfig/nftables.conf (RHEL family)")
    persist = (f"To keep it after a reboot, add the same rule to chain {chain} of table {fam} {table} in {conf}, "
               f"which nftables.service loads at boot.")
    return Remedy(NFTABLES, tuple(cmds), persist)


def _iptables(m: Manager, op: Opening, base: Optional[BaseChainRef], distro_family: Optional[str]) -> Remedy:
    chain = base.chain if base is not None else ("INPUT" if op.direction == "in" else "OUTPUT")
    table = base.table if base is not None else "filter"
    tflag = "" if table == "filter" else f"-t {table} "
    peers = op.sources if op.direction == "in" else op.destinations
    flag = "-s" if op.direction == "in" else "-d"
    fams = sorted({_fam(p) for p in peers}) if peers else ([("ipv6" if base.family == "ip6" else "ipv4")]
                                                            if base is not None else ["ipv4"])
    cmds: List[str] = []
    for fam in fams:
        tool = "iptables" if fam == "ipv4" else "ip6tables"
        if m.name == IPTABLES_LEGACY:
            tool += "-legacy"
        group = [p for p in peers if _fam(p) == fam]
        for p in group or [""]:
            peer = f" {flag} {p}" if p else ""
            cmds.append(f"{tool} {tflag}-I {chain} 1 -p {op.protocol}{peer} --dport {op.port} -j ACCEPT")
    save = "iptables-legacy-save" if m.name == IPTABLES_LEGACY else "iptables-save"
    deb = f"{save} > /etc/iptables/rules.v4 (and ip6tables-save > /etc/iptables/rules.v6; package iptables-persistent)"
    rhel = f"{save} > /etc/sysconfig/iptables (and ip6tables-save > /etc/sysconfig/ip6tables; package iptables-services)"
    where = {DEBIAN: deb, RHEL: rhel}.get(distro_family or "", f"Debian/Ubuntu: {deb}; RHEL family: {rhel}")
    return Remedy(m.name, tuple(cmds), f"To keep it after a reboot: {where}.")
