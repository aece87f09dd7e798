"""Renderers for `edgecheck targets` and `edgecheck regions`: take data, return text."""

from __future__ import annotations

import json
import textwrap
from typing import Any, Dict, List

from edgecheck.catalog import Catalog
from edgecheck.model import Kind, Target
from edgecheck.plan import Plan

PLAN_SCHEMA = "edgecheck/plan/v1"
WIDTH = 80


def target_dict(target: Target) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "id": target.id,
        "kind": target.kind.value,
        "probe": target.probe,
        "name": target.name,
        "target": target.target_fields(),
        "why": target.why,
        "source": target.source,
        "entry": target.entry,
    }
    if target.stage is not None:
        out["stage"] = target.stage.value
    if target.kind is Kind.ENDPOINT:
        out["trust"] = target.trust.value
        out["optional"] = target.optional
        out["expected_cidrs"] = list(target.expected_cidrs)
        if target.cidr_source:
            out["cidr_source"] = target.cidr_source
    if target.expect is not None:
        out["expect"] = target.expect
    if target.allowed_from:
        out["allowed_from"] = target.allowed_from
    if target.tool is not None:
        out["tool"] = {"executables": list(target.tool.executables), "packages": dict(target.tool.packages)}
    out["skip"] = {"reason": target.skip.reason.value, "message": target.skip.message} if target.skip else None
    out["notes"] = list(target.notes)
    return out


def plan_json(plan: Plan, params: Dict[str, Any]) -> str:
    doc = {
        "schema": PLAN_SCHEMA,
        "params": params,
        "warnings": list(plan.warnings),
        "targets": [target_dict(t) for t in plan.targets],
    }
    return json.dumps(doc, indent=2)


def _wrap(text: str, indent: int) -> List[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=" " * indent, subsequent_indent=" " * (indent + 2), break_on_hyphens=False)


_SECTIONS = (
    (Kind.DNS, "Nameservers of this host's resolver"),
    (Kind.ENDPOINT, "Outbound endpoints"),
    (Kind.INBOUND, "Inbound ports on this host"),
    (Kind.SYSTEM, "Kernel settings"),
    (Kind.TOOL, "System tools"),
    (Kind.CLOCK, "Local clock"),
)


def plan_text(plan: Plan, params: Dict[str, Any]) -> str:
    sel = plan.selection
    version = params["k8s_version"] or "newest rules (>= 1.26)"
    lines = [
        f"Plan for {sel.region}: {sel.mode.value} mode, phase {sel.phase.value}, "
        f"k8s {version}, {sel.network_plugin}",
        f"{len(plan.targets)} targets; nothing was sent (`edgecheck run` probes them).",
    ]
    for kind, title in _SECTIONS:
        targets = [t for t in plan.targets if t.kind is kind]
        if not targets:
            continue
        lines += ["", f"{title} ({len(targets)})"]
        for t in targets:
            where = t.id.split(":", 1)[1]
            lines += _wrap(f"{where}  [{t.probe}]", 2)
            lines += _wrap(t.name, 6)
            if t.skip is not None:
                lines += _wrap(f"skip ({t.skip.reason.value}): {t.skip.message}", 6)
                continue
            lines += _wrap(f"why: {t.why}", 6)
            if t.expected_cidrs:
                lines += _wrap(f"addresses must be in {', '.join(t.expected_cidrs)} ({t.cidr_source})", 6)
            if t.allowed_from:
                lines += _wrap(f"must be reachable from {t.allowed_from}", 6)
            if t.optional:
                lines += _wrap("optional: may not exist in this region (NXDOMAIN is a warning)", 6)
            for note in t.notes:
                lines += _wrap(f"note: {note}", 6)
    return "\n".join(lines) + "\n"


def regions_json(catalog: Catalog) -> str:
    doc = [
        {
            "id": r.id,
            "name": r.name,
            "registry_vpc_endpoint": r.registry_vpc_endpoint,
            "registry_routes": list(r.registry_routes),
            "oss_public_endpoint": r.oss_public_endpoint,
            "oss_internal_endpoint": r.oss_internal_endpoint,
            "oss_dual_stack_endpoint": r.oss_dual_stack_endpoint,
            "oss_vip_cidrs": list(r.oss_vip_cidrs),
            "registry_vpc_personal": _needs_personal_registry(catalog, r.id),
            "notes": list(r.notes),
            "source": catalog.title(r.source),
        }
        for r in catalog.regions.values()
    ]
    return json.dumps(doc, indent=2)


def _needs_personal_registry(catalog: Catalog, region: str) -> bool:
    return any(e.regions is not None and region in e.regions and e.host and "registry-vpc." in e.host for e in catalog.endpoints)


def regions_text(catalog: Catalog) -> str:
    lines = [
        f"{len(catalog.regions)} regions in the catalog. Public mode works for any region id;",
        "dedicated mode uses the per-region routes below (from the dedicated-connection page).",
        "",
        f"{'REGION':<24}{'NAME':<32}{'REGISTRY':>9}{'OSS VIP':>9}",
    ]
    for r in catalog.regions.values():
        name = r.name if r.name != r.id else "-"
        if len(name) > 30:
            name = name[:29] + "…"
        registry = str(len(r.registry_routes)) if r.registry_routes else "-"
        oss = str(len(r.oss_vip_cidrs)) if r.oss_vip_cidrs else "-"
        flags = " +registry-vpc" if _needs_personal_registry(catalog, r.id) else ""
        lines.append(f"{r.id:<24}{name:<32}{registry:>9}{oss:>9}{flags}")
    lines += [
        "",
        "REGISTRY: /32 routes of registry-{region}-vpc.ack.aliyuncs.com; OSS VIP: internal",
        "VIP CIDR blocks of OSS; +registry-vpc: also needs registry-vpc.{region}",
        "(ACR Personal Edition). `edgecheck regions --format json` lists every block.",
    ]
    return "\n".join(lines) + "\n"

