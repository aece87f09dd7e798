#!/usr/bin/env python3
"""Build dist/edgecheck-<arch>.pyz: edgecheck + dependencies in one file, for the node's python3.

    python3 packaging/build_zipapp.py --wheel dist/edgecheck-X-py3-none-any.whl --arch x86_64

Only pip and the standard library (`zipfile`; the layout is a stdlib zipapp) are used: no build
dependency to install, and the bootstrap (packaging/zipapp/bootstrap.py) chooses its own cache
directory instead of shiv's ~/.shiv, which a systemd system user often cannot use.

Dependencies are resolved for the floor, CPython 3.9, and restricted to pure-Python (`none`) and
stable-ABI (`abi3`) wheels: pip then picks the newest releases that still support 3.9 (click
8.1.x, requests 2.32, ...) and the pure-Python build of charset-normalizer, so one
archive per architecture runs on every CPython >= 3.9 a node may have.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
BOOTSTRAP = HERE / "zipapp" / "bootstrap.py"
REQUIRES_PYTHON = (3, 9)
PLATFORMS = {
    # manylinux2014 = glibc 2.17: CentOS 7 and every newer distribution.
    "x86_64": "manylinux2014_x86_64",
    "aarch64": "manylinux2014_aarch64",
}
# Requirements whose environment markers pip would evaluate against the *build* interpreter
# rather than the target version: named explicitly so the archive works on 3.9 and 3.10 too.
EXTRA_REQUIREMENTS = ["tomli>=1.1"]


def download(wheel: Path, arch: str, dest: Path, pip_args: List[str]) -> List[Path]:
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--platform", PLATFORMS[arch],
        "--python-version", ".".join(map(str, REQUIRES_PYTHON)), "--implementation", "cp",
        "--abi", "abi3", "--abi", "none",
        "--dest", str(dest), str(wheel), *EXTRA_REQUIREMENTS, *pip_args,
    ]
    subprocess.run(cmd, check=True)
    return sorted(dest.glob("*.whl"))


def unpack(wheels: List[Path], site: Path) -> Dict[str, str]:
    """Install wheels by unpacking them (what pip does for purelib/platlib-only wheels)."""
    versions: Dict[str, str] = {}
    for whl in wheels:
        name, version = whl.name.split("-")[:2]
        versions[name] = version
        with zipfile.ZipFile(whl) as zf:
            for info in zf.infolist():
                parts = info.filename.split("/")
                if parts[0].endswith(".data"):
                    # purelib/platlib go to the root; scripts/headers/data are not needed here.
                    if len(parts) > 2 and parts[1] in ("purelib", "platlib"):
                        parts = parts[2:]
                    else:
                        continue
                if info.is_dir():
                    continue
                target = site.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(info))
    return versions


def build(wheel: Path, arch: str, out: Path, pip_args: List[str]) -> Path:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # reproducible timestamps
    date_time = time.gmtime(max(epoch, 315532800))[:6]
    with tempfile.TemporaryDirectory(prefix="edgecheck-zipapp-") as tmp:
        wheels = download(wheel, arch, Path(tmp) / "wheels", pip_args)
        site = Path(tmp) / "site"
        versions = unpack(wheels, site)
        files = sorted(p for p in site.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        digest = hashlib.sha256()
        for p in files:
            digest.update(p.relative_to(site).as_posix().encode() + b"\0" + p.read_bytes())
        digest.update(BOOTSTRAP.read_bytes())
        manifest = {
            "arch": arch,
            "build_id": digest.hexdigest()[:16],
            "requires_python": list(REQUIRES_PYTHON),
            "packages": versions,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_name(out.name + ".tmp")
        with open(tmp_out, "wb") as fh:
            fh.write(b"#!/usr/bin/env python3\n")  # a zipapp may start with a shebang line
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
                def add(name: str, data: bytes, mode: int = 0o644) -> None:
                    info = zipfile.ZipInfo(name, date_time)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = (0o100000 | mode) << 16
                    zf.writestr(info, data)

                add("__main__.py", BOOTSTRAP.read_bytes())
                add("edgecheck-zipapp.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
                for p in files:
                    add("site/" + p.relative_to(site).as_posix(), p.read_bytes(),
                        0o755 if os.access(p, os.X_OK) else 0o644)
        os.chmod(tmp_out, 0o755)
        os.replace(tmp_out, out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, required=True, help="edgecheck wheel to bundle")
    ap.add_argument("--arch", choices=sorted(PLATFORMS), required=True)
    ap.add_argument("--out", type=Path, help="default: dist/edgecheck-<arch>.pyz")
    ap.add_argument("pip_args", nargs="*", help="extra pip download arguments (e.g. --find-links DIR)")
    args = ap.parse_args()
    out = args.out or Path("dist") / f"edgecheck-{args.arch}.pyz"
    built = build(args.wheel.resolve(), args.arch, out, args.pip_args)
    print(f"{built} ({built.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
