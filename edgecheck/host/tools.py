"""System tools the installer needs: where their executables are, their versions, and one install
command for all that are missing, in this host's package manager and package names."""

from __future__ import annotations

import os
import re
import subprocess
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from edgecheck.host.distro import (
    DEBIAN,
    RHEL,
    OsRelease,
    PackageManager,
    package_manager,
    package_name,
)
from edgecheck.model import ToolSpec
from edgecheck.records import record

# sbin is missing from a non-root PATH, and that is where most of these tools live.
SBIN_DIRS: Tuple[str, ...] = ("/usr/local/sbin", "/usr/sbin", "/sbin")
BIN_DIRS: Tuple[str, ...] = ("/usr/local/bin", "/usr/bin", "/bin")

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


def search_dirs(tool_path: Optional[str]) -> List[str]:
    """tool_path when set (tests, unusual hosts), else PATH plus the sbin directories."""
    raw = tool_path if tool_path is not None else os.environ.get("PATH", "")
    dirs = [d for d in raw.split(os.pathsep) if d]
    if tool_path is None:
        dirs += [d for d in SBIN_DIRS if d not in dirs]
    return dirs


def which(name: str) -> Optional[str]:
    """The executable `name` from PATH, then from the sbin and bin directories (a unit's or cron's
    PATH may lack them): shutil.which without importing shutil and its compressors in every run."""
    path_dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    return _first_executable(name, dict.fromkeys([*path_dirs, *SBIN_DIRS, *BIN_DIRS]))


def find_executables(spec: ToolSpec, dirs: Sequence[str]) -> Dict[str, str]:
    """Every executable of the spec that exists, name -> first path found."""
    found = {name: _first_executable(name, dirs) for name in spec.executables}
    return {name: path for name, path in found.items() if path}


def _first_executable(name: str, dirs: Iterable[str]) -> Optional[str]:
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def version_query(found: Dict[str, str]) -> Tuple[str, str]:
    """(name, path) of the executable whose version a tool check reports: the first found that
    has a known-safe version flag, else the first found."""
    return next(((n, p) for n, p in found.items() if n in VERSION_FLAGS), next(iter(found.items())))


def executable_version(name: str, path: str, timeout: float = VERSION_TIMEOUT_S) -> Optional[str]:
    return executable_versions([(name, path)], timeout).get(path)


def executable_versions(queries: Sequence[Tuple[str, str]], timeout: float = VERSION_TIMEOUT_S
                        ) -> Dict[str, Optional[str]]:
    """path -> version for each (name, path): every `--version` process is started first, then
    each is read within the same timeout, so they run side by side on one thread. An executable
    without a known-safe flag, or one that fails or outlives the timeout, has None."""
    deadline = time.monotonic() + timeout
    out: Dict[str, Optional[str]] = {}
    running: List[Tuple[str, subprocess.Popen]] = []
    for name, path in queries:
        flags = VERSION_FLAGS.get(name)
        out[path] = None
        if not flags or timeout <= 0:
            continue
        try:
            running.append((path, subprocess.Popen([path, *flags], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"})))
        except OSError:
            pass
    for path, proc in running:
        try:
            stdout, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            continue
        m = _VERSION_RE.search(stdout.decode("utf-8", "replace"))
        out[path] = m.group(1) if m else None
    return out


@record(frozen=True)
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


def missing_tools(specs: Sequence[ToolSpec], dirs: Sequence[str]) -> List[ToolSpec]:
    return [s for s in specs if not find_executables(s, dirs)]


def _unique(items: Iterable[str]) -> List[str]:
    out: List[str] = []
    for i in items:
        if i not in out:
            out.append(i)
    return out
