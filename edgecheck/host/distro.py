"""Which Linux distribution this host runs, and how it installs packages.

Read from os-release(5) (an injectable path, so tests can fake any distribution). The package
*names* per distribution are data in targets/tools.toml; only the package *manager* choice and the
order in which package-table keys are tried live here.
"""

from __future__ import annotations

import shlex
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from edgecheck.records import record

DEBIAN = "debian"
RHEL = "rhel"

# IDs (own or in ID_LIKE) that put a distribution in a family. Fedora is in ID_LIKE of RHEL 8/9
# (RHEL 9's ID_LIKE is only "fedora"), so it must count as the RHEL family.
_FAMILY_IDS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    (DEBIAN, ("debian", "ubuntu")),
    (RHEL, ("rhel", "centos", "fedora")),
)

# Distributions whose own VERSION_ID is not the RHEL release they are built on. The value maps
# their major version to the RHEL major whose package set they share (alinux 2 ~ EL7, 3 ~ EL8).
_RHEL_EQUIVALENT: Dict[str, Dict[int, int]] = {
    "alinux": {2: 7, 3: 8, 4: 9},
    "amzn": {2: 7, 2023: 9},
}


@record(frozen=True)
class OsRelease:
    id: str = ""
    id_like: Tuple[str, ...] = ()
    version_id: str = ""
    pretty_name: str = ""
    name: str = ""
    path: str = ""
    readable: bool = True  # False: the file was missing or unreadable

    @property
    def major(self) -> Optional[int]:
        head = self.version_id.split(".", 1)[0]
        return int(head) if head.isdigit() else None

    @property
    def family(self) -> Optional[str]:
        ids = (self.id,) + self.id_like
        for family, members in _FAMILY_IDS:
            if any(i in members for i in ids):
                return family
        return None

    @property
    def rhel_major(self) -> Optional[int]:
        """The RHEL release this distribution's packages follow (None outside the RHEL family)."""
        if self.family != RHEL or self.major is None:
            return None
        if self.id in _RHEL_EQUIVALENT:
            return _RHEL_EQUIVALENT[self.id].get(self.major)
        if self.id == "fedora":
            return None  # Fedora numbers are not RHEL numbers
        return self.major



def parse_os_release(text: str, path: str = "") -> OsRelease:
    """Parse os-release(5) text: KEY=value lines, values optionally shell-quoted."""
    values: Dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:  # unbalanced quote: keep the raw text rather than lose the key
            parts = [raw.strip("'\"")]
        values[key.strip()] = parts[0] if parts else ""
    return OsRelease(
        id=values.get("ID", "").lower(),
        id_like=tuple(values.get("ID_LIKE", "").lower().split()),
        version_id=values.get("VERSION_ID", ""),
        pretty_name=values.get("PRETTY_NAME", ""),
        name=values.get("NAME", ""),
        path=path,
    )


def read_os_release(path: str) -> OsRelease:
    # os-release(5): /etc/os-release, falling back to /usr/lib/os-release.
    candidates = [path]
    if path == "/etc/os-release":
        candidates.append("/usr/lib/os-release")
    for candidate in candidates:
        try:
            with open(candidate, encoding="utf-8", errors="replace") as f:
                return parse_os_release(f.read(), candidate)
        except OSError:
            continue
    return OsRelease(path=path, readable=False)


@record(frozen=True)
class PackageManager:
    name: str  # "apt-get" | "yum" | "dnf"

    def install_command(self, packages: Iterable[str]) -> str:
        pkgs = " ".join(packages)
        if self.name == "apt-get":
            # A fresh host often has an empty package index: install fails without update.
            return f"apt-get update && apt-get install -y {pkgs}"
        return f"{self.name} install -y {pkgs}"


def package_manager(osr: OsRelease) -> Optional[PackageManager]:
    """apt-get for the Debian family; yum up to EL7, dnf from EL8 (yum is only an alias there)."""
    family = osr.family
    if family == DEBIAN:
        return PackageManager("apt-get")
    if family == RHEL:
        if osr.id == "fedora":
            return PackageManager("dnf")
        rhel = osr.rhel_major
        if rhel is None:
            return PackageManager("yum")  # unknown release: yum exists on every EL, as dnf's alias on 8+
        return PackageManager("yum" if rhel <= 7 else "dnf")
    return None


def package_keys(osr: OsRelease) -> List[str]:
    """Keys tried, most specific first, in a tool's `packages` table (targets/tools.toml).

    e.g. Alibaba Cloud Linux 3: alinux3, alinux, rhel8, rhel; Ubuntu 22.04: ubuntu22, ubuntu, debian.
    """
    keys: List[str] = []
    if osr.id and osr.major is not None:
        keys.append(f"{osr.id}{osr.major}")
    if osr.id:
        keys.append(osr.id)
    family = osr.family
    if family == RHEL and osr.rhel_major is not None:
        keys.append(f"{RHEL}{osr.rhel_major}")
    if family:
        keys.append(family)
    seen: List[str] = []
    for k in keys:
        if k not in seen:
            seen.append(k)
    return seen


def package_name(packages: Mapping[str, str], osr: OsRelease, default: str) -> str:
    for key in package_keys(osr):
        if key in packages:
            return packages[key]
    return default
