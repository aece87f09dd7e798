"""resolv.conf as glibc's stub resolver reads it (resolv.conf(5), glibc resolv/res_init.c):
the nameservers in order, and the options that decide how long a lookup waits. Pure parsing; no
dnspython (see dnswire.py for why)."""

from __future__ import annotations

import ipaddress
from typing import List, Tuple

from edgecheck.records import record

MAXNS = 3  # glibc resolv/bits/types/res_state.h
RES_TIMEOUT, RES_DFLRETRY = 5, 2  # glibc resolv/resolv.h defaults
RES_MAXRETRANS, RES_MAXRETRY = 30, 5


# ------------------------------------------------------------------------------ resolv.conf
@record(frozen=True)
class ResolvConf:
    path: str
    nameservers: Tuple[str, ...] = ()
    timeout: int = RES_TIMEOUT
    attempts: int = RES_DFLRETRY
    rotate: bool = False
    edns0: bool = False
    use_vc: bool = False

    @property
    def used(self) -> Tuple[str, ...]:
        """The nameservers glibc actually uses (the first three)."""
        return self.nameservers[:MAXNS]

    @property
    def ignored(self) -> Tuple[str, ...]:
        return self.nameservers[MAXNS:]


def parse_resolv_conf(text: str, path: str = "/etc/resolv.conf") -> ResolvConf:
    """Pure: nameservers and the options that decide how long a lookup waits."""
    servers: List[str] = []
    timeout, attempts = RES_TIMEOUT, RES_DFLRETRY
    rotate = edns0 = use_vc = False
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) >= 2:
            try:
                ipaddress.ip_address(parts[1].split("%", 1)[0])
                servers.append(parts[1])
            except ValueError:
                continue
        elif parts[0] == "options":
            for opt in parts[1:]:
                name, _, value = opt.partition(":")
                if name == "timeout" and value.isdigit():
                    timeout = min(int(value), RES_MAXRETRANS)
                elif name == "attempts" and value.isdigit():
                    attempts = min(int(value), RES_MAXRETRY)
                elif name == "rotate":
                    rotate = True
                elif name == "edns0":
                    edns0 = True
                elif name in ("use-vc", "usevc"):
                    use_vc = True
    return ResolvConf(path, tuple(servers), timeout, max(1, attempts), rotate, edns0, use_vc)


def read_resolv_conf(path: str) -> ResolvConf:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return parse_resolv_conf(fh.read(), path)
