"""Shared helpers for the host-check tests."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import List, Optional, Tuple

from edgecheck.model import Kind, Target, ToolSpec

REPO = Path(__file__).resolve().parents[2]

OS_RELEASES = {
    "debian12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
    "ubuntu2204": 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n',
    "centos7": 'NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\nID_LIKE="rhel fedora"\nVERSION_ID="7"\nPRETTY_NAME="CentOS Linux 7 (Core)"\n',
    "rhel9": 'NAME="Red Hat Enterprise Linux"\nVERSION="9.3 (Plow)"\nID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.3"\nPRETTY_NAME="Red Hat Enterprise Linux 9.3 (Plow)"\n',
    "alinux3": 'NAME="Alibaba Cloud Linux"\nVERSION="3 (Soaring Falcon)"\nID="alinux"\nID_LIKE="rhel fedora centos anolis"\nVERSION_ID="3"\nPRETTY_NAME="Alibaba Cloud Linux 3 (Soaring Falcon)"\n',
    "alinux2": 'NAME="Alibaba Cloud Linux (Aliyun Linux)"\nVERSION="2.1903 LTS (Hunting Beagle)"\nID="alinux"\nID_LIKE="rhel fedora centos"\nVERSION_ID="2.1903"\n',
    "anolis8": 'NAME="Anolis OS"\nVERSION="8.8"\nID="anolis"\nID_LIKE="rhel fedora centos"\nVERSION_ID="8.8"\n',
    "arch": 'NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n',
}


def tool_specs() -> List[ToolSpec]:
    """The real catalog's tools, through the product's own loader: the data is tested too."""
    from edgecheck.catalog import load_catalog

    return [t.spec for t in load_catalog().tools]


def tool_target(spec: ToolSpec) -> Target:
    return Target(
        id=f"tool:{spec.name}", kind=Kind.TOOL, probe="tool", name=f"system tool {spec.name}",
        why="installer prerequisite", source="test", entry=f"tool:{spec.name}", tool=spec,
    )


def inbound_target(port: int, protocol: str = "tcp", expect: str = "free", component: Optional[str] = "kubelet",
                   mode: str = "public") -> Target:
    """An inbound target on a test port, with the catalog's facts for `component`'s entry."""
    from edgecheck.catalog import load_catalog

    catalog = load_catalog()
    entry = next((e for e in catalog.inbound if e.component == component), None)
    return Target(
        id=f"inbound:{port}/{protocol}", kind=Kind.INBOUND, probe="inbound",
        name=entry.name if entry else "a test port", why="test", source="test", entry="inbound-test",
        port=port, protocol=protocol, expect=expect,
        allowed_from=entry.allowed_from.get(mode, "") if entry else "",
        component=catalog.components.get(component or ""), leftovers=catalog.leftover_processes,
    )


def clock_target() -> Target:
    return Target(id="clock:local", kind=Kind.CLOCK, probe="clock", name="local clock", why="test",
                  source="test", entry="clock")


def bound_socket(protocol: str, host: str, listen: bool = True) -> Tuple[socket.socket, int]:
    """A socket on a kernel-chosen free port: never a real product port (other tests run too)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    s.bind((host, 0))
    if protocol == "tcp" and listen:
        s.listen(1)
    return s, s.getsockname()[1]


def free_port(protocol: str = "tcp") -> int:
    s, port = bound_socket(protocol, "127.0.0.1", listen=False)
    s.close()
    return port


def wait_listening(port: int, protocol: str = "tcp", timeout: float = 5.0) -> None:
    """Wait until a subprocess has bound the port (visible in /proc/net)."""
    files = ["/proc/net/tcp", "/proc/net/tcp6"] if protocol == "tcp" else ["/proc/net/udp", "/proc/net/udp6"]
    needle = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in files:
            try:
                text = Path(path).read_text()
            except OSError:
                continue
            for line in text.splitlines()[1:]:
                cols = line.split()
                if needle in f"{cols[1]} " and (protocol == "udp" or cols[3] == "0A"):
                    return
        time.sleep(0.02)
    raise AssertionError(f"{protocol} {port} never became bound")


def write_os_release(tmp_path: Path, key: Optional[str]) -> str:
    path = tmp_path / "os-release"
    if key is not None:
        path.write_text(OS_RELEASES[key])
    return str(path)


def make_stub(directory: Path, name: str, output: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    os.chmod(path, 0o755)
    return path
