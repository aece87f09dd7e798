"""Inbound ports on this host: free before the join, listening (and reachable) once joined.

Decisions are pure (decide_inbound) over plain data gathered at the edge (gather_holders):
- join, port free                      -> pass / ok
- join, port held                      -> fail / port-in-use, naming the holder when visible
- running, listening on a routable addr -> pass / ok, naming the listener when visible
- running, listening on loopback only  -> warn / loopback-only (the cloud cannot reach it)
- running, not listening               -> fail / port-not-listening
Without root the listener's pid may be invisible (NOTES: psutil returns pid=None); the result is
then still complete and says exactly what could not be seen.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edgecheck.host import sockets
from edgecheck.host.decision import Decision
from edgecheck.model import CheckResult, Mode, Reason, RunContext, Status, Target

EXPECT_FREE = "free"
EXPECT_LISTENING = "listening"

# A listener the cloud cannot reach (only on 127.0.0.1/::1): its own reason, added to the model.
LOOPBACK_ONLY = Reason.LOOPBACK_ONLY

OWNER_HIDDEN_HINT = "not visible without root (CAP_DAC_READ_SEARCH + CAP_SYS_PTRACE)"


@dataclass(frozen=True)
class Component:
    """What should listen on a port, recognised from the target's purpose text (seeds)."""

    name: str
    process_names: Tuple[str, ...]  # how a leftover instance shows in the process table
    how_to_check: str
    how_to_bind: str


_COMPONENTS: Tuple[Tuple[str, Component], ...] = (
    (
        "kubelet",
        Component(
            "kubelet",
            ("kubelet",),
            "systemctl status kubelet; journalctl -u kubelet",
            "set `address: 0.0.0.0` (or the node IP) in the kubelet configuration",
        ),
    ),
    (
        "node-exporter",
        Component(
            "node-exporter",
            ("node_exporter", "node-exporter"),
            "check the node-exporter pod of the cluster monitoring on this node "
            "(kubectl get pods -A -o wide --field-selector spec.nodeName=<node> | grep node-exporter)",
            "run node-exporter with --web.listen-address on 0.0.0.0 or the node IP",
        ),
    ),
    (
        "flannel",
        Component(
            "flannel",
            ("flanneld", "flannel"),
            "check the kube-flannel pod on this node and its VXLAN device (ip -d link show flannel.1)",
            "let flannel bind VXLAN to the node's interface (--iface / --iface-regex)",
        ),
    ),
)

_LEFTOVER_NAMES = ("kubelet", "node_exporter", "node-exporter", "flanneld", "edgehub", "yurthub", "raven")


def component_for(target: Target) -> Optional[Component]:
    text = " ".join((target.name, target.entry, target.why, *target.notes)).lower()
    text = text.replace("node_exporter", "node-exporter")
    for keyword, component in _COMPONENTS:
        if keyword in text:
            return component
    return None


@dataclass(frozen=True)
class Holder:
    """One socket bound to the port, and what could be learnt about its process."""

    protocol: str
    address: str
    port: int
    pid: Optional[int] = None
    process: Optional[str] = None
    user: Optional[str] = None  # the process's user; else the socket's owner from /proc/net
    uid: Optional[int] = None
    cmdline: Optional[str] = None
    unit: Optional[str] = None
    kernel_socket: bool = False  # inode 0: no process owns it (e.g. a VXLAN device)

    @property
    def loopback(self) -> bool:
        return sockets.is_loopback(self.address)

    def describe(self, owners_visible: bool) -> str:
        where = f"{_fmt_addr(self.address)}:{self.port}"
        if self.pid is not None:
            bits = [f"pid {self.pid}"]
            if self.user:
                bits.append(f"user {self.user}")
            if self.unit:
                bits.append(self.unit)
            return f"{self.process or 'unknown process'} ({', '.join(bits)}) on {where}"
        if self.kernel_socket:
            return f"a kernel socket (no process; e.g. a VXLAN device) on {where}"
        owner = f" owned by {self.user}" if self.user else ""
        if owners_visible:
            return f"a socket on {where}{owner}; its process is not visible from here (another PID namespace?)"
        return f"a socket on {where}{owner}; its process is {OWNER_HIDDEN_HINT}"


def _fmt_addr(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def allowed_source(mode: Mode, protocol: str) -> str:
    if mode is Mode.DEDICATED:
        if protocol == "udp":
            return "the VPC CIDR block and the nodes' CIDR blocks (seed 003)"
        return "the VPC CIDR block (seed 003; optionally only the cluster's vSwitch CIDR blocks)"
    return "the host CIDR block of the edge node (seed 001)"


def _how_to_free(h: Holder) -> str:
    if h.unit:
        return f"stop its service: `systemctl disable --now {h.unit}`"
    if h.pid is not None:
        return f"stop it (`kill {h.pid}`), and whatever restarts it"
    if h.kernel_socket:
        return (
            "it is a kernel socket, typically a VXLAN device left by an earlier flannel: find it with "
            "`ip -d link show type vxlan` and remove it with `ip link delete <device>`"
        )
    flag = "-ltnp" if h.protocol == "tcp" else "-lunp"
    return f"find the holder as root with `ss {flag} 'sport = :{h.port}'` and stop it"


def decide_inbound(
    expect: str,
    protocol: str,
    port: int,
    holders: Sequence[Holder],
    owners_visible: bool,
    component: Optional[Component],
    mode: Mode,
) -> Decision:
    label = f"{protocol.upper()} {port}"
    comp = component.name if component else "the component that serves this port"
    if expect == EXPECT_FREE:
        if not holders:
            return Decision(Status.PASS, Reason.OK, f"{label} is free.")
        described = "; ".join(h.describe(owners_visible) for h in holders)
        first = holders[0]
        hint = ""
        name = (first.process or "").lower()
        if any(n in name for n in _LEFTOVER_NAMES):
            hint = (
                f" '{first.process}' looks like a component left from an earlier installation: if this "
                "host was joined to a cluster before, remove it from that cluster and clean it up first."
            )
        remediation = (
            f"Free {label} before joining ({comp} must bind it): {_how_to_free(first)}."
            + hint
        )
        return Decision(Status.FAIL, Reason.PORT_IN_USE, f"{label} is in use by {described}.", remediation)

    firewall = f"allow inbound {label} from {allowed_source(mode, protocol)} on the host firewall and the data-center firewall/security group"
    if not holders:
        check = f" ({component.how_to_check})" if component else ""
        return Decision(
            Status.FAIL,
            Reason.PORT_NOT_LISTENING,
            f"{label} is not listening: nothing is bound to it; {comp} should be.",
            f"Start {comp}{check}; then {firewall}.",
        )
    described = "; ".join(h.describe(owners_visible) for h in holders)
    if all(h.loopback for h in holders):
        bind = component.how_to_bind if component else "bind it to 0.0.0.0 or the node IP"
        return Decision(
            Status.WARN,
            LOOPBACK_ONLY,
            f"{label} listens on loopback only ({described}): the cloud cannot reach it through the node's address.",
            f"Make {comp} listen on the node's address: {bind}; then {firewall}.",
        )
    return Decision(
        Status.PASS,
        Reason.OK,
        f"{label} is listening: {described}.",
        f"The cloud reaches it only if you {firewall}.",
    )


def gather_holders(table: sockets.SocketTable, protocol: str, port: int) -> List[Holder]:
    out: List[Holder] = []
    infos: Dict[int, sockets.ProcessInfo] = {}
    for s in table.holders(protocol, port):
        info = None
        if s.pid is not None:
            info = infos.get(s.pid) or sockets.process_info(s.pid)
            infos[s.pid] = info
        out.append(
            Holder(
                protocol=s.protocol,
                address=s.address,
                port=s.port,
                pid=s.pid,
                process=info.name if info else None,
                user=(info.user if info and info.user else sockets.user_name(s.uid)),
                uid=s.uid,
                cmdline=info.cmdline if info else None,
                unit=info.unit if info else None,
                kernel_socket=s.pid is None and s.inode == 0,
            )
        )
    return out


def check_inbound(target: Target, ctx: RunContext) -> CheckResult:
    started = time.monotonic()
    protocol = (target.protocol or "tcp").lower()
    port = target.port
    expect = target.expect or (EXPECT_FREE if str(ctx.phase) == "join" else EXPECT_LISTENING)
    if port is None:
        return CheckResult.of(target, Status.SKIP, Reason.NOT_APPLICABLE, "No port in this target.")
    table = sockets.socket_table(ctx.deadline)
    owners_visible = sockets.can_see_socket_owners()
    component = component_for(target)
    evidence: Dict[str, Any] = {
        "expect": expect,
        "socket_table": table.source,
        "owners_visible": owners_visible,
    }
    if table.error is not None:
        return _fallback(target, ctx, protocol, port, expect, table.error, evidence, component, started)
    holders = gather_holders(table, protocol, port)
    evidence["sockets"] = [_holder_evidence(h) for h in holders]
    if not owners_visible and any(h.pid is None and not h.kernel_socket for h in holders):
        evidence["owner_note"] = (
            f"a socket holds {protocol.upper()} {port} but its owner is {OWNER_HIDDEN_HINT}"
        )
    d = decide_inbound(expect, protocol, port, holders, owners_visible, component, ctx.mode)
    return CheckResult.of(
        target, d.status, d.reason, d.message, remediation=d.remediation, evidence=evidence,
        duration_ms=_ms(started),
    )


def _fallback(
    target: Target,
    ctx: RunContext,
    protocol: str,
    port: int,
    expect: str,
    error: str,
    evidence: Dict[str, Any],
    component: Optional[Component],
    started: float,
) -> CheckResult:
    """The socket table is unreadable (e.g. ProcSubset=pid): a bind test still tells free from taken."""
    evidence["socket_table_error"] = error
    in_use = sockets.bind_test(protocol, port)
    evidence["bind_test"] = {None: "inconclusive", True: "in-use", False: "free"}[in_use]
    label = f"{protocol.upper()} {port}"
    if in_use is None:
        return CheckResult.of(
            target, Status.WARN, Reason.PORT_NOT_LISTENING if expect == EXPECT_LISTENING else Reason.PORT_IN_USE,
            f"Could not tell whether {label} is in use: the socket table is unreadable ({error}) and a bind test was inconclusive.",
            remediation="Run edgecheck where /proc/net is visible (not under systemd ProcSubset=pid).",
            evidence=evidence, duration_ms=_ms(started),
        )
    holders = [Holder(protocol, "0.0.0.0", port)] if in_use else []
    d = decide_inbound(expect, protocol, port, holders, False, component, ctx.mode)
    message = d.message
    if in_use:
        # The bind test cannot see the address or the process: say so instead of guessing.
        message = f"{label} is in use (a bind test failed; the socket table is unreadable: {error}, so the holder and its address are unknown)."
        if d.status is Status.PASS:
            message = f"{label} is bound by something (bind test; the socket table is unreadable: {error}): listener address and process unknown."
    return CheckResult.of(
        target, d.status, d.reason, message, remediation=d.remediation, evidence=evidence,
        duration_ms=_ms(started),
    )


def _holder_evidence(h: Holder) -> Dict[str, Any]:
    d = asdict(h)
    d["loopback"] = h.loopback
    return {k: v for k, v in d.items() if v is not None and v is not False or k in ("pid", "loopback")}


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
