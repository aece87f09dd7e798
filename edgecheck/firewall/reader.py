"""Read this host's live packet filter: the thin I/O edge around the pure parsers.

- `nft -j list ruleset`: every nftables table, which includes firewalld's nftables backend,
  iptables-nft, ufw on iptables-nft and anything written with nft.
- Tables holding xtables compat expressions (iptables-nft rules with -m/-j extensions, listed by
  nft only as `xt` stubs) are re-read with iptables-nft-save / ip6tables-nft-save.
- iptables-legacy tables live outside nftables: read with iptables-legacy-save /
  ip6tables-legacy-save (or plain iptables-save where `iptables -V` says legacy) when the kernel
  lists loaded legacy tables in /proc/net/ip_tables_names.

Reading needs CAP_NET_ADMIN (the netlink dump and the xtables getsockopt both check it). Without
it the result is `Unreadable` with what to run instead — never an exception.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import field
from typing import Callable, List, Optional, Sequence, Tuple

from edgecheck.firewall.iptsave import parse_iptables_save
from edgecheck.firewall.nftjson import parse_nft_items
from edgecheck.firewall.ruleset import Ruleset
from edgecheck.host.sockets import effective_capabilities
from edgecheck.host.tools import which
from edgecheck.records import record

XTABLES_NAMES = ("filter", "mangle", "raw", "security", "nat")
CAP_NET_ADMIN = 12
DEFAULT_TIMEOUT_S = 3.0
DROPIN_HINT = ("run edgecheck as root (sudo edgecheck run ...), or for the systemd unit install the opt-in "
               "drop-in firewall-read.conf (grants CAP_NET_ADMIN; see /usr/share/doc/edgecheck/examples/)")

# (argv, timeout) -> (returncode, stdout, stderr); returncode None = could not run / timed out.
Runner = Callable[[Sequence[str], float], Tuple[Optional[int], str, str]]


@record(frozen=True)
class Unreadable:
    """Why the ruleset could not be read, and what to do about it (for a `skip`)."""

    reason: str
    hint: str
    detail: str = ""


@record
class ReadResult:
    ruleset: Optional[Ruleset]
    unreadable: Optional[Unreadable] = None
    commands: List[str] = field(default_factory=list)  # what was run, for the evidence

    @property
    def ok(self) -> bool:
        return self.ruleset is not None


def subprocess_runner(argv: Sequence[str], timeout: float) -> Tuple[Optional[int], str, str]:
    try:
        p = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                           env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {timeout:g} s"
    except OSError as exc:
        return None, "", str(exc)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def has_cap_net_admin() -> Optional[bool]:
    """CapEff bit 12 of this process; None when unknown."""
    caps = effective_capabilities()
    return None if caps is None else bool(caps >> CAP_NET_ADMIN & 1)


def _denied(text: str) -> bool:
    t = text.lower()
    return "operation not permitted" in t or "permission denied" in t or "you must be root" in t


def xt_tables(items: List[dict]) -> List[Tuple[str, str]]:
    """(family, table) of tables whose rules contain xtables compat expressions."""
    out: List[Tuple[str, str]] = []
    for item in items:
        r = item.get("rule")
        if r and any("xt" in e for e in r.get("expr", []) if isinstance(e, dict)):
            key = (r["family"], r["table"])
            if key not in out:
                out.append(key)
    return out


def mark_iptables_nft(rs: Ruleset) -> None:
    """Tables iptables-nft made (standard xtables names, only upper-case standard base chains)."""
    for t in rs.tables:
        if t.source != "nftables" or t.family not in ("ip", "ip6") or t.name not in XTABLES_NAMES:
            continue
        bases = [c.name for c in t.chains.values() if c.base is not None]
        if bases and all(n in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING") for n in bases):
            t.source = "iptables-nft"


def merge_tables(rs: Ruleset, replacement: Ruleset, only: Sequence[Tuple[str, str]]) -> None:
    for new in replacement.tables:
        if (new.family, new.name) not in only:
            continue
        for i, old in enumerate(rs.tables):
            if old.family == new.family and old.name == new.name:
                rs.tables[i] = new
                break


class _ReadFailed(Exception):
    def __init__(self, unreadable: Unreadable) -> None:
        super().__init__(unreadable.reason)
        self.unreadable = unreadable


def _refused(what: str, err: str) -> _ReadFailed:
    return _ReadFailed(Unreadable(f"reading {what} was refused (needs CAP_NET_ADMIN)", DROPIN_HINT, err.strip()))


class _Reader:
    """One reading of the live ruleset: the commands run and the tables found so far."""

    def __init__(self, timeout: float, runner: Runner, tool: Callable[[str], Optional[str]]) -> None:
        self.timeout, self.runner, self.tool = timeout, runner, tool
        self.commands: List[str] = []
        self.ipt_is_nft = _iptables_is_nft(runner, tool, timeout)

    def run(self, path: str, *args: str) -> Tuple[Optional[int], str, str]:
        self.commands.append(" ".join([os.path.basename(path), *args]))
        return self.runner([path, *args], self.timeout)

    def nftables(self, nft: str) -> Ruleset:
        rc, out, err = self.run(nft, "-j", "list", "ruleset")
        if rc is None:
            raise _ReadFailed(Unreadable(f"nft did not answer: {err}", "run `nft -j list ruleset` by hand", err))
        if rc != 0 and _denied(err):
            raise _refused("the nftables ruleset", err)
        if rc != 0:
            raise _ReadFailed(Unreadable("nft could not list the ruleset", "run `nft -j list ruleset` by hand to see why",
                                         err.strip()[:500]))
        try:
            items = json.loads(out or '{"nftables": []}').get("nftables", [])
        except ValueError as exc:
            raise _ReadFailed(Unreadable("nft printed JSON that could not be parsed", "report this", str(exc)))
        rs = parse_nft_items(items)
        mark_iptables_nft(rs)
        self.xtables_extensions(rs, xt_tables(items))
        return rs

    def xtables_extensions(self, rs: Ruleset, xt: Sequence[Tuple[str, str]]) -> None:
        """Tables with iptables extensions are listed by nft as `xt` stubs: read them with iptables-nft-save."""
        for fam in ("ip", "ip6"):
            wanted = [k for k in xt if k[0] == fam]
            if not wanted:
                continue
            save = _save_tool(fam, "nft", self.tool, self.ipt_is_nft)
            if save is None:
                rs.notes.append(f"{fam} tables with iptables extensions: no iptables-nft-save to read them")
                continue
            rc, out, err = self.run(save)
            if rc == 0:
                merge_tables(rs, parse_iptables_save(out, fam, "iptables-nft"), wanted)
            else:
                rs.notes.append(f"{os.path.basename(save)} failed: {(err or out).strip()[:200]}")

    def iptables_nft_only(self) -> Ruleset:
        """No nft binary: iptables-nft-save still reads xtables-made tables."""
        rs = Ruleset(notes=["nft is not installed: native nftables tables (if any) were not read"])
        if not self.ipt_is_nft:
            return rs
        for fam in ("ip", "ip6"):
            save = _save_tool(fam, "nft", self.tool, self.ipt_is_nft)
            if save is None:
                continue
            rc, out, err = self.run(save)
            if rc == 0:
                rs.tables.extend(parse_iptables_save(out, fam, "iptables-nft").tables)
            elif rc is not None and _denied(err + out):
                raise _refused("iptables rules", err)
        return rs

    def legacy(self, rs: Ruleset, proc_net: str) -> None:
        """iptables-legacy: separate kernel tables, listed per network namespace in /proc/net."""
        for fam, names_file in (("ip", "ip_tables_names"), ("ip6", "ip6_tables_names")):
            loaded = _loaded_legacy_tables(os.path.join(proc_net, names_file))
            if not loaded:
                continue
            save = _save_tool(fam, "legacy", self.tool, self.ipt_is_nft)
            if save is None:
                rs.notes.append(f"legacy {fam} tables {', '.join(loaded)} are loaded but no iptables-legacy-save to read them")
                continue
            rc, out, err = self.run(save)
            if rc == 0:
                rs.tables.extend(t for t in parse_iptables_save(out, fam, "iptables-legacy").tables if t.name in loaded)
            elif rc is not None and _denied(err + out):
                raise _refused("iptables-legacy rules", err)
            else:
                rs.notes.append(f"{os.path.basename(save)} failed: {(err or out).strip()[:200]}")


def _loaded_legacy_tables(path: str) -> List[str]:
    try:
        with open(path) as f:
            return [n.strip() for n in f if n.strip()]
    except OSError:
        return []


def read_ruleset(timeout: float = DEFAULT_TIMEOUT_S, runner: Runner = subprocess_runner,
                 tool: Callable[[str], Optional[str]] = which,
                 proc_net: Optional[str] = None, cap: Optional[bool] = None) -> ReadResult:
    """Read nftables + iptables(-nft/-legacy) into one Ruleset, or say why it cannot."""
    cap = has_cap_net_admin() if cap is None else cap
    if cap is False:
        return ReadResult(None, Unreadable("reading the packet filter needs CAP_NET_ADMIN, which this process lacks",
                                           DROPIN_HINT))
    reader = _Reader(timeout, runner, tool)
    nft = tool("nft")
    if proc_net is None:
        # The calling thread's view (thread-self): /proc/net follows the process's main thread.
        proc_net = "/proc/thread-self/net" if os.path.isdir("/proc/thread-self/net") else "/proc/net"
    try:
        rs = reader.nftables(nft) if nft else reader.iptables_nft_only()
        reader.legacy(rs, proc_net)
    except _ReadFailed as failed:
        return ReadResult(None, failed.unreadable, reader.commands)
    if not nft and not rs.tables and not any(c.startswith("ip") for c in reader.commands):
        return ReadResult(None, Unreadable("neither nft nor iptables-save is installed",
                                           "install nftables (or iptables) to let edgecheck read the packet filter"),
                          reader.commands)
    return ReadResult(rs, None, reader.commands)


def _iptables_is_nft(runner: Runner, tool: Callable[[str], Optional[str]], timeout: float) -> Optional[bool]:
    ipt = tool("iptables")
    if not ipt:
        return None
    rc, out, _ = runner([ipt, "-V"], timeout)
    if rc != 0:
        return None
    return "nf_tables" in out


def _save_tool(fam: str, variant: str, tool: Callable[[str], Optional[str]], ipt_is_nft: Optional[bool]) -> Optional[str]:
    """The save command for this family and backend: the explicit -nft/-legacy name, or the plain
    name when `iptables -V` says it is that backend (e.g. CentOS 7's iptables 1.4 is legacy)."""
    base = "iptables" if fam == "ip" else "ip6tables"
    explicit = tool(f"{base}-{variant}-save")
    if explicit:
        return explicit
    if ipt_is_nft is None:
        return None
    if (variant == "nft") == ipt_is_nft:
        return tool(f"{base}-save")
    return None
