"""What to do about this host's own packet filter (reason `host-firewall`), from the FirewallVerdict
evidence alone: the rule that decided, the manager that owns it (firewalld and its zone, ufw,
nftables, iptables-nft/-legacy) and that manager's own commands, built by
edgecheck.firewall.manager.remedy for exactly the ports and peers the checks needed.

Returns (paragraphs, command) pairs; advice.py wraps them (one adviser per reason).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from edgecheck.diagnosis.scene import listed, ports_text
from edgecheck.evidence import NOT_EVALUATED, PARTIAL, UNKNOWN, FirewallVerdict
from edgecheck.firewall.manager import FIREWALLD, NONE, Manager, Remedy, remedy
from edgecheck.model import CheckResult, Status

Text = Tuple[Tuple[str, ...], str]
Pair = Tuple[CheckResult, FirewallVerdict]

LET_IT_READ = ("run edgecheck as root (sudo edgecheck run ...), or for the systemd unit install the opt-in drop-in "
               "firewall-read.conf from /usr/share/doc/edgecheck/examples/ (it grants CAP_NET_ADMIN)")
FIND_BY_HAND = "as root, find the rule with `nft -a list ruleset` (or `iptables-save`)"


def _pairs(checks: Sequence[CheckResult]) -> List[Pair]:
    out: List[Pair] = []
    for c in checks:
        fw = c.evidence.find(FirewallVerdict)
        if fw is not None:
            out.append((c, fw))
    return out


def _manager_text(m: Optional[Manager]) -> str:
    if m is None or m.name == NONE:
        return ""
    if m.name == FIREWALLD and m.zone:
        return f"firewalld, zone {m.zone}"
    return m.name


def _what(pairs: Sequence[Pair]) -> str:
    """'TCP 10250 and TCP 10255 in from 10.0.0.0/24' / 'TCP 443 to 192.0.2.1, 192.0.2.2'."""
    ports = ports_text([c for c, _ in pairs])
    if pairs[0][1].direction == "in":
        blocked = list(dict.fromkeys(p for _, fw in pairs for p in (fw.blocked or fw.peers)))
        sources = f"any source ({', '.join(blocked)})" if blocked and all(p.endswith("/0") for p in blocked) \
            else listed(blocked)
        return f"{ports} in from {sources}" if sources else f"{ports} inbound"
    dests = listed([p for _, fw in pairs for p in (fw.blocked or fw.peers)])
    return f"{ports} to {dests}" if dests else f"{ports} outbound"


def _remedy(fw: FirewallVerdict) -> Remedy:
    manager = fw.manager or Manager(fw.base.source if fw.base is not None else NONE)
    return remedy(manager, fw.opening(), fw.base, fw.distro_family or None)


def merged_commands(remedies: Sequence[Remedy]) -> List[str]:
    """Every remedy's commands once, in order; a closing command they all share (firewall-cmd
    --reload) runs once, at the end."""
    last = {r.commands[-1] for r in remedies if r.commands}
    closing = last.pop() if len(last) == 1 and all(len(r.commands) > 1 for r in remedies) else None
    out = list(dict.fromkeys(cmd for r in remedies for cmd in r.commands if cmd != closing))
    return out + ([closing] if closing else [])


def _rules_text(pairs: Sequence[Pair]) -> str:
    rules = list(dict.fromkeys((fw.rule, fw.where) for _, fw in pairs if fw.rule))
    rule, where = rules[0]
    more = f" (and {len(rules) - 1} more rule{'s' if len(rules) > 2 else ''})" if len(rules) > 1 else ""
    by = _manager_text(pairs[0][1].manager)
    return f"`{rule}` ({where}{', ' + by if by else ''}){more}"


def _open(pairs: Sequence[Pair]) -> Text:
    fw = pairs[0][1]
    verb = "drops" if fw.action == "drop" else "rejects"
    if fw.verdict == PARTIAL:
        first = (f"This host's own packet filter lets {ports_text([c for c, _ in pairs])} in only from some of the "
                 f"sources that must reach {'it' if len(pairs) == 1 else 'them'} ({fw.peers_origin}): "
                 f"{'; '.join(dict.fromkeys(f.detail for _, f in pairs if f.detail))}.")
    else:
        first = f"This host's own packet filter {verb} {_what(pairs)}: {_rules_text(pairs)}."
    remedies = [_remedy(f) for _, f in pairs]
    commands = merged_commands(remedies)
    by = _manager_text(fw.manager) or (fw.base.source if fw.base is not None else "nft")
    paragraphs = [first]
    if remedies[0].persist:
        paragraphs.append(remedies[0].persist)
    paragraphs.append(f"Allow it as root ({by.split(',')[0]}), or remove the rule if nothing needs it:")
    return tuple(paragraphs), " && ".join(commands)


def _unreadable_rule(pairs: Sequence[Pair]) -> Text:
    fw = pairs[0][1]
    c = pairs[0][0]
    if fw.direction == "in":
        test = (f"test with a real connection from one of those sources: `nc -vz{'u' if fw.protocol == 'udp' else ''} "
                f"{fw.local_address or '<node address>'} {c.target.port}`")
    else:
        test = f"test from this host: `nc -vz {fw.peers[0] if fw.peers else c.target.host} {c.target.port}`"
    return ((f"edgecheck cannot evaluate rule `{fw.rule}` ({fw.where}) of this host's packet filter ({fw.detail}), "
             f"so it cannot tell whether {_what(pairs)} get through.",
             f"Check that rule by hand (as root: `nft -a list ruleset` or `iptables-save`), then {test}."), "")


def _find_the_rule(pairs: Sequence[Pair]) -> Text:
    fw = pairs[0][1]
    proof = f" ({fw.kernel})" if fw.kernel else ""
    first = f"This host's own packet filter blocks {_what(pairs)}{proof}."
    if fw.verdict == NOT_EVALUATED:
        # The capability case's detail already says "run as root or install the drop-in": say it once.
        why = "" if "CAP_NET_ADMIN" in fw.detail else f" ({fw.detail})"
        second = (f"edgecheck could not read the ruleset to name the rule{why}: {LET_IT_READ}; or "
                  f"{FIND_BY_HAND} and allow this traffic.")
    else:
        second = (f"The ruleset edgecheck read does not show which rule (it may have changed since): {FIND_BY_HAND} "
                  f"and allow this traffic.")
    return (first, second), ""


def firewall_advice(checks: Sequence[CheckResult]) -> Text:
    pairs = _pairs(checks)
    if not pairs:
        return (f"This host's own packet filter blocks this traffic: {FIND_BY_HAND} and allow it.",), ""
    if pairs[0][1].verdict == UNKNOWN:
        return _unreadable_rule(pairs)
    named = [(c, fw) for c, fw in pairs if fw.stops and fw.rule]
    if not named:
        return _find_the_rule(pairs)
    return _open(named)


def firewall_also(checks: Sequence[CheckResult]) -> Tuple[str, ...]:
    """For checks that failed for another reason while the filter blocks them too."""
    pairs = [(c, fw) for c, fw in _pairs(checks) if fw.stops and fw.rule]
    if not pairs:
        return ()
    commands = merged_commands([_remedy(fw) for _, fw in pairs])
    return (f"This host's own packet filter also blocks {_what(pairs)} ({_rules_text(pairs)}): allow it with "
            f"`{' && '.join(commands)}`.",)


def not_evaluated_note(checks: Sequence[CheckResult]) -> str:
    """A passed inbound check whose filter half could not be read: how to complete it."""
    for c, fw in _pairs(checks):
        if c.status is Status.PASS and fw.direction == "in" and fw.verdict == NOT_EVALUATED:
            if "CAP_NET_ADMIN" in fw.detail:
                return f"This host's packet filter was not evaluated: {LET_IT_READ}."
            return f"This host's packet filter was not evaluated: {fw.detail} ({fw.hint})."
    return ""


def not_evaluated_outbound(checks: Sequence[CheckResult]) -> str:
    """A failed outbound probe whose filter could not be read: this host's rules are not ruled out."""
    for _, fw in _pairs(checks):
        if fw.direction == "out" and fw.verdict == NOT_EVALUATED:
            return f"edgecheck could not read this host's own packet filter to rule it out: {LET_IT_READ}."
    return ""
