"""System tools the installer needs: found by their executables, with one install command for all
that are missing, in this host's package manager and package names.

Status policy: a missing tool is `warn` / `tool-missing` in both phases. In `join` the installer
installs it online when the package repository is reachable; in `running` the node already
joined, so the gap is real (kube-proxy and flannel use iptables/conntrack/ebtables) but it is the
repository, not this check, that decides whether the next upgrade can fill it — still a warning.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from edgecheck.host.distro import (
    DEBIAN,
    RHEL,
    OsRelease,
    PackageManager,
    package_manager,
    package_name,
    read_os_release,
)
from edgecheck.model import CheckResult, Kind, Phase, Reason, RunContext, Status, Target, ToolSpec

# sbin is missing from a non-root PATH, and that is where most of these tools live.
SBIN_DIRS: Tuple[str, ...] = ("/usr/local/sbin", "/usr/sbin", "/sbin")

# Version flags known to print and exit at once. Executables not listed are not run: running an
# unknown binary with a guessed flag may do something else (or hang).
VERSION_FLAGS: Dict[str, Tuple[str, ...]] = {
    "ip": ("-V",),
    "socat": ("-V",),
    "iptables": ("--version",),
    "ebtables": ("-V",),
    "conntrack": ("--version",),
    "lspci": ("--version",),
    "chronyc": ("-v",),
    "netstat": ("--version",),
}
VERSION_TIMEOUT_S = 1.0
_VERSION_RE = re.compile(r"\bv?(\d+(?:\.\d+)+[a-z0-9.+~-]*)")


def search_dirs(ctx: RunContext) -> List[str]:
    """ctx.tool_path when set (tests, unusual hosts), else PATH plus the sbin directories."""
    raw = ctx.tool_path if ctx.tool_path is not None else os.environ.get("PATH", "")
    dirs = [d for d in raw.split(os.pathsep) if d]
    if ctx.tool_path is None:
        dirs += [d for d in SBIN_DIRS if d not in dirs]
    return dirs


def find_executables(spec: ToolSpec, dirs: Sequence[str]) -> Dict[str, str]:
    """Every executable of the spec that exists, name -> first path found."""
    found: Dict[str, str] = {}
    for name in spec.executables:
        for d in dirs:
            path = os.path.join(d, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                found[name] = path
                break
    return found


def executable_version(name: str, path: str, timeout: float = VERSION_TIMEOUT_S) -> Optional[str]:
    flags = VERSION_FLAGS.get(name)
    if not flags or timeout <= 0:
        return None
    try:
        proc = subprocess.run(
            [path, *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = proc.stdout.decode("utf-8", "replace")
    m = _VERSION_RE.search(text)
    return m.group(1) if m else None


@dataclass(frozen=True)
class InstallPlan:
    """What to run to install the missing packages on this host (pure data, decided below)."""

    command: Optional[str]  # None when the distribution is unknown
    packages: Tuple[str, ...]
    manager: Optional[str]
    distro: str  # os-release ID ("" when unknown or unreadable)
    per_family: Dict[str, str]  # unknown distribution: family -> command


def install_plan(missing: Sequence[ToolSpec], osr: OsRelease) -> InstallPlan:
    """One command installing every missing tool; package names come from the catalog's table."""
    pm = package_manager(osr)
    if pm is not None:
        pkgs = _unique(package_name(t.packages, osr, t.name) for t in missing)
        return InstallPlan(pm.install_command(pkgs), tuple(pkgs), pm.name, osr.id, {})
    per_family: Dict[str, str] = {}
    for family, manager, like in ((DEBIAN, "apt-get", "debian"), (RHEL, "yum", "rhel")):
        probe = OsRelease(id=like)
        pkgs = _unique(package_name(t.packages, probe, t.name) for t in missing)
        per_family[family] = PackageManager(manager).install_command(pkgs)
    return InstallPlan(None, tuple(_unique(t.name for t in missing)), None, osr.id, per_family)


def remediation_text(plan: InstallPlan) -> str:
    if plan.command:
        return f"Install the missing tools (as root): {plan.command}"
    where = f"os-release ID={plan.distro}" if plan.distro else "no readable os-release"
    lines = [
        f"Unknown distribution ({where}): install these packages with your package manager: "
        f"{', '.join(plan.packages)}.",
        f"Debian/Ubuntu family: {plan.per_family[DEBIAN]}",
        f"RHEL/CentOS family: {plan.per_family[RHEL]}",
    ]
    return " ".join(lines)


def _unique(items) -> List[str]:
    out: List[str] = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def _tool_specs(target: Target, ctx: RunContext) -> List[ToolSpec]:
    specs = [t.tool for t in ctx.targets if t.kind is Kind.TOOL and t.tool is not None and t.skip is None]
    if target.tool is not None and target.tool not in specs:
        specs.append(target.tool)
    return specs


def check_tool(target: Target, ctx: RunContext) -> CheckResult:
    started = time.monotonic()
    spec = target.tool
    if spec is None:
        return CheckResult.of(target, Status.SKIP, Reason.NOT_APPLICABLE, "No tool specification in this target.")
    dirs = search_dirs(ctx)
    osr = read_os_release(ctx.os_release)
    found = find_executables(spec, dirs)
    evidence: Dict[str, object] = {
        "package": spec.name,
        "executables_wanted": list(spec.executables),
        "executables_found": found,
        "searched": dirs,
        "distribution": {"id": osr.id, "version_id": osr.version_id, "id_like": list(osr.id_like)},
    }
    if found:
        # Report the version of the first executable that has a known-safe version flag.
        name, path = next(((n, p) for n, p in found.items() if n in VERSION_FLAGS), next(iter(found.items())))
        version = executable_version(name, path, min(VERSION_TIMEOUT_S, ctx.remaining()))
        if version:
            evidence["version"] = version
        pm = package_manager(osr)
        if pm is not None:
            evidence["distribution_package"] = package_name(spec.packages, osr, spec.name)
        vtext = f" {version}" if version else ""
        msg = f"{spec.name} is installed: {name}{vtext} at {path}."
        return CheckResult.of(
            target, Status.PASS, Reason.OK, msg, evidence=evidence, duration_ms=_ms(started)
        )

    # One command for everything missing: the whole plan's tools are cheap to look up.
    missing = [s for s in _tool_specs(target, ctx) if not find_executables(s, dirs)]
    plan = install_plan(missing, osr)
    evidence["install_command"] = plan.command
    evidence["missing_packages"] = list(plan.packages)
    if plan.manager:
        evidence["package_manager"] = plan.manager
    where = "PATH and sbin" if ctx.tool_path is None else "the tool path"
    msg = f"{spec.name} is missing: none of {', '.join(spec.executables)} found in {where}."
    if ctx.phase is Phase.JOIN:
        msg += " The installer installs it online if the package repository is reachable."
    else:
        msg += " The node's network components (kube-proxy, flannel) rely on these tools."
    return CheckResult.of(
        target,
        Status.WARN,
        Reason.TOOL_MISSING,
        msg,
        remediation=remediation_text(plan),
        evidence=evidence,
        duration_ms=_ms(started),
    )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
