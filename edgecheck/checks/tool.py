"""tool: a package the installer needs, found by any one of its executables.

Status policy: a missing tool is `warn` / `tool-missing` in both phases. In `join` the installer
installs it online when the package repository is reachable; in `running` the node already
joined, so the gap is real (kube-proxy and flannel use iptables/conntrack/ebtables) but it is the
repository, not this check, that decides whether the next upgrade can fill it — still a warning.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Dict, Optional, Sequence

from edgecheck.evidence import Distribution, ToolEvidence
from edgecheck.host.distro import package_manager, package_name
from edgecheck.host.tools import (VERSION_TIMEOUT_S, executable_version, executable_versions, find_executables,
                                  search_dirs, version_query)
from edgecheck.model import CheckResult, Evidence, Phase, Reason, Status, Target, ToolSpec
from edgecheck.runcontext import RunContext

_FACT = "tool-versions"


def warm(targets: Sequence[Target], ctx: RunContext) -> None:
    """Every installed tool's `--version` process is started from the moment the plan is known,
    all side by side on one background thread: the checks then read the versions instead of each
    spawning its process while the network probes run."""
    specs = [t.tool for t in targets if t.probe == "tool" and t.skip is None and t.tool is not None]
    if specs:
        timeout = min(VERSION_TIMEOUT_S, ctx.remaining())
        dirs = search_dirs(ctx.tool_path)
        ctx.facts.prefetch(_FACT, lambda: _versions(specs, dirs, timeout))


def _versions(specs: Sequence[ToolSpec], dirs: Sequence[str], timeout: float) -> Dict[str, Optional[str]]:
    found = [find_executables(spec, dirs) for spec in specs]
    return executable_versions([version_query(f) for f in found if f], timeout)


def check_tool(target: Target, ctx: RunContext) -> CheckResult:
    started = time.monotonic()
    spec = target.tool
    if spec is None:
        return CheckResult(target, Status.SKIP, Reason.NOT_APPLICABLE, "No tool specification in this target.")
    dirs = search_dirs(ctx.tool_path)
    osr = ctx.facts.os_release()
    found = find_executables(spec, dirs)
    base = ToolEvidence(spec.name, tuple(spec.executables), found, tuple(dirs),
                        Distribution(osr.id, osr.version_id, osr.id_like))
    if found:
        # Report the version of the first executable that has a known-safe version flag.
        name, path = version_query(found)
        timeout = min(VERSION_TIMEOUT_S, ctx.remaining())
        versions = ctx.facts.fetched(_FACT, dict, timeout)
        version = versions[path] if path in versions else executable_version(name, path, timeout)
        known = package_manager(osr) is not None
        evidence = replace(base, version=version,
                           distribution_package=package_name(spec.packages, osr, spec.name) if known else None)
        return _result(target, Status.PASS, Reason.OK,
                       f"{spec.name} is installed: {name}{' ' + version if version else ''} at {path}.", evidence, started)

    # One command for everything missing: the whole plan's tools are cheap to look up.
    plan = ctx.facts.install_plan()
    evidence = replace(base, install_command=plan.command, missing_packages=plan.packages,
                       package_manager=plan.manager, commands_by_family=tuple(plan.per_family.items()))
    where = "PATH and sbin" if ctx.tool_path is None else "the tool path"
    msg = f"{spec.name} is missing: none of {', '.join(spec.executables)} found in {where}."
    if ctx.phase is Phase.JOIN:
        msg += " The installer installs it online if the package repository is reachable."
    else:
        msg += " The node's network components (kube-proxy, flannel) rely on these tools."
    return _result(target, Status.WARN, Reason.TOOL_MISSING, msg, evidence, started)


def _result(target: Target, status: Status, reason: Reason, message: str, evidence: ToolEvidence,
            started: float) -> CheckResult:
    return CheckResult(target, status, reason, message, evidence=Evidence(evidence),
                       duration_ms=int((time.monotonic() - started) * 1000))
