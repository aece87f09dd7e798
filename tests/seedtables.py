"""Parse the per-region tables of seed 003 straight from the seed text.

Independent of edgecheck's catalog loader on purpose: tests compare the catalog with what the
page itself says, row by row.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

REGION_ID = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")


def seeds_dir() -> Path:
    env = os.environ.get("EDGECHECK_SEEDS_DIR")
    if env:
        return Path(env)
    # The repo checkout sits next to shared/ (../shared/seeds), locally and in CI.
    return Path(__file__).resolve().parents[2] / "shared" / "seeds"


def seed_text(prefix: str) -> str:
    found = sorted(seeds_dir().glob(f"{prefix}_*.txt"))
    if len(found) != 1:
        raise FileNotFoundError(f"seed {prefix}: {len(found)} files {prefix}_*.txt in {seeds_dir()} (the checkout "
                                "must sit next to shared/, or set EDGECHECK_SEEDS_DIR to shared/seeds)")
    return found[0].read_text(encoding="utf-8")


def _lines(text: str) -> List[str]:
    out = []
    for raw in text.splitlines():
        line = raw.strip().lstrip("•").strip()
        if line:
            out.append(line)
    return out


def _cidrs_from(lines: List[str], start: int) -> List[str]:
    cidrs: List[str] = []
    for line in lines[start:]:
        tokens = line.split()
        try:
            for token in tokens:
                ipaddress.ip_network(token, strict=True)
        except ValueError:
            break
        cidrs.extend(tokens)
    return cidrs


@dataclass
class RegistryRow:
    region: str
    name: str
    endpoint: str
    routes: List[str] = field(default_factory=list)


@dataclass
class OssRow:
    region: str
    name: str
    public: str
    internal: str
    dual_stack: str
    cidrs: List[str] = field(default_factory=list)


def registry_rows() -> Dict[str, RegistryRow]:
    text = seed_text("003")
    section = text.split("ACK add-on internal image registry endpoints and route CIDR blocks", 1)[1]
    section = section.split("OSS internal endpoints and VIP CIDR blocks", 1)[0]
    lines = _lines(section)
    rows: Dict[str, RegistryRow] = {}
    for i, line in enumerate(lines[:-1]):
        nxt = lines[i + 1]
        if REGION_ID.match(line) and nxt.startswith("registry-") and nxt.endswith("-vpc.ack.aliyuncs.com"):
            rows[line] = RegistryRow(line, lines[i - 1], nxt, _cidrs_from(lines, i + 2))
    return rows


def oss_rows() -> Dict[str, OssRow]:
    text = seed_text("003")
    section = text.split("OSS internal endpoints and VIP CIDR blocks", 1)[1]
    lines = _lines(section)
    rows: Dict[str, OssRow] = {}
    for i, line in enumerate(lines[:-4]):
        if REGION_ID.match(line) and lines[i + 1].startswith("oss-"):
            rows[line] = OssRow(
                region=line,
                name=lines[i - 1],
                public=lines[i + 1],
                internal=lines[i + 2],
                dual_stack=lines[i + 3],
                cidrs=_cidrs_from(lines, i + 4),
            )
    return rows


def registry_vpc_personal_regions() -> List[str]:
    """Regions that need registry-vpc.{region} (ACR Personal Edition), from the expandable list."""
    text = seed_text("003")
    section = text.split("Expand to see which regions need configuration", 1)[1]
    section = section.split("registry-{region}-vpc.ack.aliyuncs.com", 1)[0]
    return [line for line in _lines(section) if REGION_ID.match(line)]
