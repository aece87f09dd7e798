"""Which hostnames the lab must serve, and on which addresses — taken from `edgecheck targets`
(the plan JSON) so the lab's DNS never drifts from the catalog.

Addresses:
- a name the plan gives no expected CIDRs (public mode): the next free address in 192.0.2.0/24;
- a name whose routes are all /32 (dedicated registry): exactly those addresses (the answer then
  carries every VIP, like the real record);
- otherwise: a host inside the first expected block (OSS VIP blocks, or 100.0.0.0/8).
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from edgecheck.probes.resolver import ip_literal

REPO = Path(__file__).resolve().parents[2]

PUBLIC_POOL = ipaddress.ip_network("192.0.2.0/24")  # TEST-NET-1: healthy public-mode endpoints
PUBLIC_FIRST_HOST = 10


@dataclass(frozen=True)
class PlanTarget:
    id: str
    kind: str
    probe: str
    host: str
    port: int
    protocol: str
    optional: bool
    expected_cidrs: Tuple[str, ...]


@dataclass
class HostRecord:
    name: str
    cidrs: Tuple[str, ...] = ()
    probes: set = field(default_factory=set)  # probe kinds seen for this name (https, http, ntp…)
    addresses: List[str] = field(default_factory=list)


def edgecheck_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def load_plan(region: str, mode: str, phase: str, k8s_version: str) -> List[PlanTarget]:
    """`edgecheck targets ... --format json` (sends no packet, per SPEC section 1; run in an empty
    network namespace all the same, tests/emptyns.py)."""
    from tests import emptyns

    argv = ["targets", "--region", region, "--mode", mode, "--phase", phase, "--k8s-version", k8s_version,
            "--format", "json"]
    proc = emptyns.cli(*argv, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"edgecheck {' '.join(argv)} failed (rc={proc.returncode}): {proc.stderr.strip()}")
    data = json.loads(proc.stdout)
    out = []
    for t in data["targets"]:
        tgt = t.get("target") or {}
        if t.get("kind") != "endpoint" or not tgt.get("host"):
            continue
        out.append(PlanTarget(
            id=t["id"], kind=t["kind"], probe=t["probe"], host=tgt["host"], port=int(tgt.get("port") or 0),
            protocol=tgt.get("protocol") or "", optional=bool(t.get("optional")),
            expected_cidrs=tuple(t.get("expected_cidrs") or ()),
        ))
    return out


def collect_hosts(regions: Sequence[str]) -> Dict[str, HostRecord]:
    """Every catalog hostname of these regions, both modes; `join` on < 1.26 and >= 1.26 covers
    every install-time and operation endpoint of either version."""
    hosts: Dict[str, HostRecord] = {}
    for region in regions:
        for mode in ("public", "dedicated"):
            for version in ("1.24", "1.28"):
                for t in load_plan(region, mode, "join", version):
                    if ip_literal(t.host) is not None:
                        continue
                    rec = hosts.setdefault(t.host, HostRecord(t.host))
                    rec.probes.add(t.probe)
                    if t.expected_cidrs:
                        if rec.cidrs and set(rec.cidrs) != set(t.expected_cidrs):
                            raise RuntimeError(f"{t.host}: plans disagree on its CIDRs: {rec.cidrs} vs {t.expected_cidrs}")
                        rec.cidrs = t.expected_cidrs
    return hosts


class AddressAllocator:
    """Hands out distinct addresses per block, skipping those already taken."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self.taken = set(reserved)
        self.next_offset: Dict[str, int] = {}

    def take(self, address: str) -> str:
        self.taken.add(address)
        return address

    def in_block(self, cidr: str, first_host: int = 10) -> str:
        net = ipaddress.ip_network(cidr)
        offset = self.next_offset.get(cidr, first_host)
        while True:
            candidate = str(net.network_address + offset)
            offset += 1
            if candidate not in self.taken and ipaddress.ip_address(candidate) in net:
                self.next_offset[cidr] = offset
                return self.take(candidate)
            if offset >= net.num_addresses - 1:
                raise RuntimeError(f"no free address left in {cidr}")


def allocate(hosts: Dict[str, HostRecord], allocator: AddressAllocator) -> None:
    for name in sorted(hosts):
        rec = hosts[name]
        nets = [ipaddress.ip_network(c) for c in rec.cidrs]
        if nets and all(n.prefixlen == n.max_prefixlen for n in nets):
            rec.addresses = [allocator.take(str(n.network_address)) for n in nets]
        elif nets:
            first_block = next(n for n in nets if n.prefixlen < n.max_prefixlen)
            rec.addresses = [allocator.in_block(str(first_block))]
        else:
            rec.addresses = [allocator.in_block(str(PUBLIC_POOL), PUBLIC_FIRST_HOST)]


def inside(address: str, cidrs: Sequence[str]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c) for c in cidrs)
