"""This host's own packet filter: read it, evaluate a new connection through it, name its manager
and the command that opens a port. See SPEC 7.1/7.2 (`host-firewall`).

Typical use (the I/O is in read_ruleset and localaddr; everything else is pure):

    res = read_ruleset(timeout=2.0)
    if not res.ok:                         # skip, with res.unreadable.reason / .hint
        ...
    sv = evaluate_sources(res.ruleset, ["10.0.0.0/8"], "tcp", 10250, daddr=node_ip, iifname="eth0")
    ev = evaluate(res.ruleset, Packet("out", "tcp", src, dst, 443, oifname="eth0"))
    mgr = detect_manager(res.ruleset, ev)
    fix = remedy(mgr, Opening("out", "tcp", 443, destinations=(dst,)), ev.base, distro_family)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The evaluator and the ruleset model are what every user of the package needs (and the function
# `evaluate` must shadow its module's name, as it always did); the rest loads on first use.
from edgecheck.firewall.evaluate import ACCEPT, DROP, REJECT, UNKNOWN, BaseChainRef, Evaluation, RuleRef, evaluate
from edgecheck.firewall.ruleset import Packet, Ruleset

if TYPE_CHECKING:
    from edgecheck.firewall.iptsave import parse_iptables_save
    from edgecheck.firewall.manager import (
        FIREWALLD,
        IPTABLES_LEGACY,
        IPTABLES_NFT,
        NFTABLES,
        UFW,
        Manager,
        Opening,
        Remedy,
        detect_manager,
        firewalld_zone,
        remedy,
    )
    from edgecheck.firewall.nftjson import parse_nft_json
    from edgecheck.firewall.reader import ReadResult, Unreadable, read_ruleset
    from edgecheck.firewall.sources import ALLOWED, BLOCKED, PARTIAL, CidrVerdict, SourceVerdict, evaluate_sources

# A lazy face (PEP 562) for the rest: importing one submodule (the advice's manager) must not import
# the parsers and the reader (subprocess) too.
_HOME = {
    "iptsave": ("parse_iptables_save",),
    "manager": ("FIREWALLD", "IPTABLES_LEGACY", "IPTABLES_NFT", "NFTABLES", "UFW", "Manager", "Opening", "Remedy",
                "detect_manager", "firewalld_zone", "remedy"),
    "nftjson": ("parse_nft_json",),
    "reader": ("ReadResult", "Unreadable", "read_ruleset"),
    "sources": ("ALLOWED", "BLOCKED", "PARTIAL", "CidrVerdict", "SourceVerdict", "evaluate_sources"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ACCEPT", "DROP", "REJECT", "UNKNOWN", "ALLOWED", "BLOCKED", "PARTIAL",
    "FIREWALLD", "UFW", "NFTABLES", "IPTABLES_NFT", "IPTABLES_LEGACY",
    "BaseChainRef", "CidrVerdict", "Evaluation", "Manager", "Opening", "Packet", "ReadResult", "Remedy",
    "RuleRef", "Ruleset", "SourceVerdict", "Unreadable",
    "detect_manager", "evaluate", "evaluate_sources", "firewalld_zone", "parse_iptables_save",
    "parse_nft_json", "read_ruleset", "remedy",
]
