"""The kernel settings an edge node's networking needs (`system:*` checks, reason `kernel-setting`).

Reading is one function over an injectable root directory (tests build a fake /proc and /sys);
every decision is pure and returns a `KernelFinding` with the exact command and how to persist it.

Sources relied on:
- kubeadm preflight, cmd/kubeadm/app/preflight/checks.go (kubernetes/kubernetes): FileContentCheck
  /proc/sys/net/ipv4/ip_forward = 1, and /proc/sys/net/ipv6/conf/default/forwarding = 1 for IPv6;
  older kubeadm (< 1.30) also required /proc/sys/net/bridge/bridge-nf-call-iptables = 1. Kubernetes
  docs "Container runtimes: forwarding IPv4 and letting iptables see bridged traffic" (modprobe
  br_netfilter, bridge-nf-call-iptables/ip6tables = 1, ip_forward = 1 in /etc/sysctl.d/k8s.conf).
- OpenYurt Raven (openyurtio/raven 5fc4c4c): raven-agent sets net.ipv4.conf.default.rp_filter=0
  and net.ipv4.conf.all.send_redirects=0 (cmd/agent/app/start.go), and rp_filter=2 (loose) on its
  raven0 VXLAN device (pkg/networkengine/routedriver/vxlan/vxlan.go) — strict reverse-path
  filtering drops tunnelled traffic. The gateway forwards between nodes: ip_forward.
- Linux Documentation/networking/ip-sysctl.rst, rp_filter: "The max value from
  conf/{all,interface}/rp_filter is used when doing source validation on the {interface}."
- flannel VXLAN backend (flannel-io/flannel, pkg/backend/vxlan): creates a `vxlan` link
  (flannel.1, UDP 8472) — the vxlan kernel module must be loadable; pod traffic is forwarded.
- kube-proxy defaults (pkg/proxy/apis/config/v1alpha1/defaults.go): conntrack maxPerCore 32768,
  min 131072 — kube-proxy raises nf_conntrack_max itself; a full table drops new connections
  ("nf_conntrack: table full, dropping packet").
- The ACK Edge installer's own scripts are not public; like kubeadm-based edge installers
  (SuperEdge edgeadm's join scripts) it loads br_netfilter and sets ip_forward and the
  bridge-nf-call sysctls during the join. Those settings are therefore `warn` in phase join (the
  installer will set them) and `fail` on a running node (the installer's setting did not stick).
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import Dict, FrozenSet, List, Mapping, Optional, Sequence, Set, Tuple

from edgecheck.model import Phase, Reason, Status
from edgecheck.records import record

REASON_KERNEL = Reason.KERNEL_SETTING  # SPEC 7.1 reason for a wrong setting
REASON_OK = Reason.OK
REASON_NA = Reason.NOT_APPLICABLE
SYSCTL_FILE = "/etc/sysctl.d/90-ack-edge.conf"
MODULES_FILE = "/etc/modules-load.d/ack-edge.conf"
CONNTRACK_WARN, CONNTRACK_FAIL = 0.75, 0.90
KUBE_PROXY_CONNTRACK_MIN = 131072
TUNNEL_INTERFACES = ("flannel.1", "raven0", "cni0")
RP_FILTER = "system:rp_filter"

# Where the requirements come from, for the plan's `source` (see the module docstring).
KUBEADM = "kubeadm preflight checks and the Kubernetes container runtime prerequisites"
RAVEN = "OpenYurt Raven agent (net.ipv4.conf rp_filter, forwarding)"
FLANNEL = "flannel VXLAN backend"
KUBE_PROXY = "kube-proxy conntrack defaults"
KUBELET = "kubelet (failSwapOn) and kubeadm preflight checks"


@record(frozen=True)
class Setting:
    """One `system:*` check of the plan: which kernel setting, and why the node needs it."""

    id: str
    name: str
    why: str
    source: str
    installer: bool = False  # the installer sets it during the join (warn before, fail after)
    plugins: Optional[Tuple[str, ...]] = None  # only with these network plugins


SETTINGS: Tuple[Setting, ...] = (
    Setting("system:net.ipv4.ip_forward", "IPv4 packet forwarding",
            "pod traffic and the Raven gateway are forwarded by this host", KUBEADM, installer=True),
    Setting("system:net.ipv6.conf.all.forwarding", "IPv6 packet forwarding",
            "IPv6 pod traffic is forwarded by this host (hosts with a global IPv6 address)", KUBEADM, installer=True),
    Setting("system:module:br_netfilter", "bridge netfilter module",
            "Service traffic between pods on this node must pass kube-proxy's rules", KUBEADM, installer=True),
    Setting("system:net.bridge.bridge-nf-call-iptables", "bridged IPv4 traffic through iptables",
            "Service traffic between pods on this node must pass kube-proxy's rules", KUBEADM, installer=True),
    Setting("system:net.bridge.bridge-nf-call-ip6tables", "bridged IPv6 traffic through ip6tables",
            "Service traffic between pods on this node must pass kube-proxy's rules", KUBEADM, installer=True),
    Setting(RP_FILTER, "reverse-path filtering",
            "strict mode drops tunnelled and asymmetric traffic (Raven, VXLAN)", RAVEN),
    Setting("system:net.netfilter.nf_conntrack_max", "connection tracking headroom",
            "a full table drops new connections", KUBE_PROXY),
    Setting("system:module:vxlan", "VXLAN kernel module", "flannel's VXLAN backend creates flannel.1",
            FLANNEL, plugins=("flannel",)),
    Setting("system:swap", "swap", "kubelet refuses to start with swap on unless configured for it", KUBELET),
)


@record(frozen=True)
class KernelFinding:
    id: str  # e.g. "system:net.ipv4.ip_forward"
    status: Status
    reason: Reason  # ok | kernel-setting | not-applicable
    message: str
    command: str = ""  # what fixes it now, as root
    persist: str = ""  # what keeps it after a reboot
    evidence: Mapping[str, object] = field(default_factory=dict)


@record(frozen=True)
class KernelState:
    sysctls: Dict[str, Optional[str]]  # dotted name -> value (None: not present)
    loaded_modules: FrozenSet[str]  # /proc/modules + /sys/module (built-ins with parameters too)
    available_modules: Optional[FrozenSet[str]]  # from modules.dep + modules.builtin; None: unknown
    interfaces: FrozenSet[str]  # from /proc/sys/net/ipv4/conf
    swaps: int  # active swap areas
    default_interfaces: Tuple[str, ...] = ()  # the interfaces of the default routes: the node's uplinks
    global_ipv6: bool = False  # some interface has a global IPv6 address


# --- reading (I/O) --------------------------------------------------------------------------

def _read(root: str, path: str) -> Optional[str]:
    try:
        with open(os.path.join(root, path.lstrip("/"))) as f:
            return f.read().strip()
    except OSError:
        return None


def sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def read_kernel_state(root: str = "/", extra_interfaces: Sequence[str] = ()) -> KernelState:
    conf_dir = os.path.join(root, "proc/sys/net/ipv4/conf")
    try:
        ifaces = frozenset(os.listdir(conf_dir))
    except OSError:
        ifaces = frozenset()
    names = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.default.forwarding",
             "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
             "net.netfilter.nf_conntrack_count", "net.netfilter.nf_conntrack_max",
             "net.ipv4.conf.all.rp_filter", "kernel.osrelease"]
    sysctls: Dict[str, Optional[str]] = {n: _read(root, sysctl_path(n)) for n in names}
    uplinks = default_interfaces(_read(root, _proc_net(root, "route")) or "")
    for iface in set(ifaces) | set(extra_interfaces) | set(uplinks):
        if iface in ("all", "default"):
            continue
        # Interface names may contain dots (eth0.100): read the path directly, not via the dotted name.
        sysctls[f"net.ipv4.conf.{iface}.rp_filter"] = _read(root, f"/proc/sys/net/ipv4/conf/{iface}/rp_filter")
    return KernelState(sysctls, _loaded_modules(root), _available_modules(root, sysctls.get("kernel.osrelease")),
                       ifaces, _swaps(root), uplinks, _global_ipv6(_read(root, _proc_net(root, "if_inet6")) or ""))


def _proc_net(root: str, name: str) -> str:
    # The calling thread's network namespace (thread-self): /proc/net follows the main thread's.
    own = os.path.join(root, "proc/thread-self/net")
    return f"/proc/thread-self/net/{name}" if os.path.isdir(own) else f"/proc/net/{name}"


def default_interfaces(route_text: str) -> Tuple[str, ...]:
    """Interfaces of the IPv4 default routes in /proc/net/route (destination and mask 0)."""
    out: List[str] = []
    for line in route_text.splitlines()[1:]:
        f = line.split()
        if len(f) >= 8 and f[1] == "00000000" and f[7] == "00000000" and f[0] not in out:
            out.append(f[0])
    return tuple(out)


def _global_ipv6(if_inet6: str) -> bool:
    # /proc/net/if_inet6: address, ifindex, prefix length, scope (00 = global), flags, name
    return any(len(f) >= 6 and f[3] == "00" and f[5] != "lo" for f in (line.split() for line in if_inet6.splitlines()))


def _loaded_modules(root: str) -> FrozenSet[str]:
    loaded: Set[str] = set()
    mods = _read(root, "/proc/modules")
    if mods:
        loaded.update(line.split()[0] for line in mods.splitlines() if line.strip())
    try:
        loaded.update(os.listdir(os.path.join(root, "sys/module")))
    except OSError:
        pass
    return frozenset(loaded)


def _available_modules(root: str, release: Optional[str]) -> Optional[FrozenSet[str]]:
    if not release:
        return None
    names_found: Set[str] = set()
    seen_any = False
    for fname in ("modules.dep", "modules.builtin"):
        text = _read(root, f"/lib/modules/{release}/{fname}")
        if text is None:
            continue
        seen_any = True
        for line in text.splitlines():
            base = os.path.basename(line.split(":", 1)[0].strip())
            for ext in (".ko", ".ko.xz", ".ko.gz", ".ko.zst"):
                if base.endswith(ext):
                    names_found.add(base[: -len(ext)].replace("-", "_"))
    return frozenset(names_found) if seen_any else None


def _swaps(root: str) -> int:
    swaps_text = _read(root, "/proc/swaps")
    return max(0, len(swaps_text.splitlines()) - 1) if swaps_text else 0


# --- decisions (pure) -------------------------------------------------------------------------

def _sysctl_fix(name: str, value: str) -> Dict[str, str]:
    return {"command": f"sysctl -w {name}={value}",
            "persist": f"`echo '{name} = {value}' >> {SYSCTL_FILE} && sysctl --system`"}


def _installer_status(phase: Phase) -> Status:
    return Status.WARN if phase is Phase.JOIN else Status.FAIL


def _installer_note(phase: Phase) -> str:
    if phase is Phase.JOIN:
        return " The installer sets this during the join; set it now if something on this host resets it."
    return " The node has joined, so the installer's setting did not persist (or something reset it)."


def decide_forwarding(state: KernelState, phase: Phase, has_ipv6: bool = False) -> List[KernelFinding]:
    out = []
    v4 = state.sysctls.get("net.ipv4.ip_forward")
    fid = "system:net.ipv4.ip_forward"
    if v4 == "1":
        out.append(KernelFinding(fid, Status.PASS, REASON_OK, "IPv4 forwarding is enabled.", evidence={"value": v4}))
    elif v4 is None:
        out.append(KernelFinding(fid, Status.SKIP, REASON_NA, "net.ipv4.ip_forward could not be read.",
                                 evidence={"path": sysctl_path("net.ipv4.ip_forward")}))
    else:
        out.append(KernelFinding(
            fid, _installer_status(phase), REASON_KERNEL,
            f"IPv4 forwarding is off (net.ipv4.ip_forward = {v4}): pod traffic (flannel) and the Raven gateway "
            "cannot be forwarded, and kubeadm's preflight refuses the join." + _installer_note(phase),
            evidence={"value": v4}, **_sysctl_fix("net.ipv4.ip_forward", "1")))
    v6 = state.sysctls.get("net.ipv6.conf.all.forwarding")
    fid6 = "system:net.ipv6.conf.all.forwarding"
    if not has_ipv6:
        out.append(KernelFinding(fid6, Status.SKIP, REASON_NA, "This host has no global IPv6 address: IPv6 "
                                 "forwarding does not matter.", evidence={"value": v6}))
    else:
        if v6 == "1":
            out.append(KernelFinding(fid6, Status.PASS, REASON_OK, "IPv6 forwarding is enabled.", evidence={"value": v6}))
        elif v6 is None:
            out.append(KernelFinding(fid6, Status.SKIP, REASON_NA, "IPv6 is not available in this kernel."))
        else:
            out.append(KernelFinding(
                fid6, _installer_status(phase), REASON_KERNEL,
                "IPv6 forwarding is off on a node with IPv6 addresses: IPv6 pod traffic cannot be forwarded."
                + _installer_note(phase), evidence={"value": v6}, **_sysctl_fix("net.ipv6.conf.all.forwarding", "1")))
    return out


def br_netfilter_active(state: KernelState) -> bool:
    # The bridge-nf-call sysctls exist only while br_netfilter is loaded (or built in).
    return state.sysctls.get("net.bridge.bridge-nf-call-iptables") is not None or "br_netfilter" in state.loaded_modules


def decide_bridge(state: KernelState, phase: Phase) -> List[KernelFinding]:
    out = []
    mid = "system:module:br_netfilter"
    if not br_netfilter_active(state):
        avail = state.available_modules
        missing = avail is not None and "br_netfilter" not in avail
        msg = ("br_netfilter is not loaded: traffic bridged between pods on this node bypasses iptables, so "
               "Service addresses (kube-proxy) do not work for it.")
        if missing:
            msg += " This kernel does not ship the module."
        out.append(KernelFinding(mid, Status.FAIL if missing else _installer_status(phase), REASON_KERNEL,
                                 msg + ("" if missing else _installer_note(phase)),
                                 command="modprobe br_netfilter",
                                 persist=f"`echo br_netfilter >> {MODULES_FILE}`",
                                 evidence={"loaded": False, "available": None if avail is None else not missing}))
        for name in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"):
            out.append(KernelFinding(f"system:{name}", Status.SKIP, REASON_NA,
                                     f"{name} exists only while br_netfilter is loaded (see system:module:br_netfilter)."))
        return out
    out.append(KernelFinding(mid, Status.PASS, REASON_OK, "br_netfilter is loaded.", evidence={"loaded": True}))
    for name in ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"):
        v = state.sysctls.get(name)
        fid = f"system:{name}"
        if v == "1":
            out.append(KernelFinding(fid, Status.PASS, REASON_OK, f"{name} = 1.", evidence={"value": v}))
        elif v is None:
            out.append(KernelFinding(fid, Status.SKIP, REASON_NA, f"{name} could not be read."))
        else:
            fam = "IPv6 " if "ip6" in name else ""
            out.append(KernelFinding(
                fid, _installer_status(phase), REASON_KERNEL,
                f"{name} = {v}: {fam}traffic bridged between pods skips the {'ip6tables' if fam else 'iptables'} "
                f"rules kube-proxy writes, so Services fail for pods on the same node." + _installer_note(phase),
                evidence={"value": v}, **_sysctl_fix(name, "1")))
    return out


def effective_rp_filter(state: KernelState, iface: str) -> Optional[int]:
    a, i = state.sysctls.get("net.ipv4.conf.all.rp_filter"), state.sysctls.get(f"net.ipv4.conf.{iface}.rp_filter")
    if a is None or i is None:
        return None
    try:
        return max(int(a), int(i))
    except ValueError:
        return None


def decide_rp_filter(state: KernelState, phase: Phase, node_interfaces: Sequence[str],
                     tunnel_interfaces: Sequence[str] = TUNNEL_INTERFACES) -> KernelFinding:
    """One finding over the node's uplinks and the tunnel devices present (see rp_filter_each)."""
    each = rp_filter_each(state, phase, node_interfaces, tunnel_interfaces)
    values = {f.id: dict(f.evidence) for f in each}
    bad = [f for f in each if f.status in (Status.WARN, Status.FAIL)]
    if not bad:
        seen = [f for f in each if f.status is Status.PASS]
        if not seen:
            return KernelFinding(RP_FILTER, Status.SKIP, REASON_NA, "No interface to check (no default route, no "
                                 "tunnel device), or its rp_filter is unreadable.", evidence=values)
        return KernelFinding(RP_FILTER, Status.PASS, REASON_OK, " ".join(f.message for f in seen), evidence=values)
    names = list(dict.fromkeys(n.split("=")[0] for f in bad for n in f.command.split()[2:]))
    return KernelFinding(
        RP_FILTER, Status.FAIL if any(f.status is Status.FAIL for f in bad) else Status.WARN, REASON_KERNEL,
        " ".join(f.message for f in bad), "sysctl -w " + " ".join(f"{n}=2" for n in names),
        "`" + " && ".join(f"echo '{n} = 2' >> {SYSCTL_FILE}" for n in names) + " && sysctl --system`", values)


def rp_filter_each(state: KernelState, phase: Phase, node_interfaces: Sequence[str],
                   tunnel_interfaces: Sequence[str] = TUNNEL_INTERFACES) -> List[KernelFinding]:
    """Strict reverse-path filtering (1) on the node's interfaces and on tunnel devices that exist.

    Tunnel devices (flannel.1, raven0) carry traffic whose source is routed elsewhere: strict mode
    drops it — `fail` on a running node, `warn` before the join (the agents set loose mode on their
    own devices, but `all`=1 still wins: the effective value is the max). On the node's uplink,
    strict mode drops asymmetric return paths (e.g. via the Raven gateway): `warn`.
    """
    out = []
    all_v = state.sysctls.get("net.ipv4.conf.all.rp_filter")
    for iface in list(dict.fromkeys(list(node_interfaces) + [t for t in tunnel_interfaces if t in state.interfaces])):
        fid = iface
        eff = effective_rp_filter(state, iface)
        ev = {"all": all_v, "interface": state.sysctls.get(f"net.ipv4.conf.{iface}.rp_filter"), "effective": eff}
        if eff is None:
            out.append(KernelFinding(fid, Status.SKIP, REASON_NA, f"rp_filter of {iface} could not be read.", evidence=ev))
            continue
        if eff != 1:
            mode = "off" if eff == 0 else "loose"
            out.append(KernelFinding(fid, Status.PASS, REASON_OK, f"Reverse-path filtering on {iface} is {mode} ({eff}).",
                                     evidence=ev))
            continue
        tunnel = iface in tunnel_interfaces
        fix_names = [f"net.ipv4.conf.{iface}.rp_filter"] + (["net.ipv4.conf.all.rp_filter"] if all_v == "1" else [])
        cmd = "sysctl -w " + " ".join(f"{n}=2" for n in fix_names)
        persist = "`" + " && ".join(f"echo '{n} = 2' >> {SYSCTL_FILE}" for n in fix_names) + " && sysctl --system`"
        why = ("(all = 1 overrides the interface's own setting: the kernel uses the maximum)"
               if all_v == "1" else "")
        if tunnel:
            status = Status.FAIL if phase is Phase.RUNNING else Status.WARN
            msg = (f"Strict reverse-path filtering on tunnel device {iface} {why}: packets arriving through the "
                   f"tunnel from sources routed another way are dropped. Use loose mode (2).")
        else:
            status = Status.WARN
            msg = (f"Strict reverse-path filtering on {iface} {why}: replies that come back on a different path "
                   f"than the route to their source (asymmetric routing via the Raven gateway or a second uplink) "
                   f"are dropped. Loose mode (2) keeps spoofing protection without that.")
        out.append(KernelFinding(fid, status, REASON_KERNEL, " ".join(msg.split()), cmd, persist, ev))
    return out


def decide_conntrack(state: KernelState, phase: Phase) -> KernelFinding:
    fid = "system:net.netfilter.nf_conntrack_max"
    c, m = state.sysctls.get("net.netfilter.nf_conntrack_count"), state.sysctls.get("net.netfilter.nf_conntrack_max")
    if c is None or m is None:
        return KernelFinding(fid, Status.SKIP, REASON_NA,
                             "Connection tracking is not loaded yet (kube-proxy loads it and sizes the table).")
    try:
        count, mx = int(c), int(m)
    except ValueError:
        return KernelFinding(fid, Status.SKIP, REASON_NA, "Connection tracking counters are unreadable.")
    use = count / mx if mx > 0 else 1.0
    ev = {"count": count, "max": mx, "use": round(use, 3)}
    target = max(KUBE_PROXY_CONNTRACK_MIN, mx * 2)
    fix = _sysctl_fix("net.netfilter.nf_conntrack_max", str(target))
    if use >= CONNTRACK_FAIL:
        return KernelFinding(fid, Status.FAIL, REASON_KERNEL,
                             f"The connection tracking table is {use:.0%} full ({count} of {mx}): when it is full the "
                             f"kernel drops new connections (\"nf_conntrack: table full, dropping packet\").",
                             evidence=ev, **fix)
    if use >= CONNTRACK_WARN:
        return KernelFinding(fid, Status.WARN, REASON_KERNEL,
                             f"The connection tracking table is {use:.0%} full ({count} of {mx}); new connections "
                             f"are dropped when it fills up.", evidence=ev, **fix)
    if phase is Phase.RUNNING and mx < KUBE_PROXY_CONNTRACK_MIN:
        return KernelFinding(fid, Status.WARN, REASON_KERNEL,
                             f"nf_conntrack_max is {mx}, below kube-proxy's minimum of {KUBE_PROXY_CONNTRACK_MIN} "
                             f"(kube-proxy could not raise it, e.g. a read-only /proc/sys).", evidence=ev, **fix)
    return KernelFinding(fid, Status.PASS, REASON_OK, f"Connection tracking table {use:.0%} used ({count} of {mx}).",
                         evidence=ev)


def decide_vxlan(state: KernelState, network_plugin: str = "flannel") -> KernelFinding:
    fid = "system:module:vxlan"
    if network_plugin != "flannel":
        return KernelFinding(fid, Status.SKIP, REASON_NA, f"Not needed with {network_plugin}.")
    if "vxlan" in state.loaded_modules:
        return KernelFinding(fid, Status.PASS, REASON_OK, "The vxlan module is loaded (flannel VXLAN).")
    if state.available_modules is None:
        return KernelFinding(fid, Status.WARN, REASON_KERNEL,
                             "The vxlan module is not loaded and this host's module list is unreadable: flannel's "
                             "VXLAN backend needs it (loaded on demand when flannel.1 is created).",
                             command="modprobe vxlan", persist=f"`echo vxlan >> {MODULES_FILE}`")
    if "vxlan" in state.available_modules:
        return KernelFinding(fid, Status.PASS, REASON_OK,
                             "The vxlan module is available; the kernel loads it when flannel creates flannel.1.")
    return KernelFinding(fid, Status.FAIL, REASON_KERNEL,
                         "This kernel has no vxlan module: flannel's VXLAN backend (and Raven's VXLAN route driver) "
                         "cannot create their tunnel device. Install the kernel's extra modules package.",
                         command="modprobe vxlan")


def decide_swap(state: KernelState, phase: Phase) -> KernelFinding:
    fid = "system:swap"
    if state.swaps == 0:
        return KernelFinding(fid, Status.PASS, REASON_OK, "No swap is active.")
    return KernelFinding(fid, Status.WARN, REASON_KERNEL,
                         f"{state.swaps} swap area(s) active: kubelet refuses to start with swap on unless it is "
                         f"configured for it (failSwapOn: false); kubeadm's preflight flags it too.",
                         command="swapoff -a",
                         persist="comment out the swap lines in /etc/fstab (and `systemctl mask swap.target` on systemd hosts)",
                         evidence={"swaps": state.swaps})


def decide_kernel(state: KernelState, phase: Phase, node_interfaces: Optional[Sequence[str]] = None,
                  network_plugin: str = "flannel", has_ipv6: Optional[bool] = None) -> List[KernelFinding]:
    """Every `system:*` finding for this state, in a stable order (the ids of SETTINGS). The node's
    interfaces default to its default-route interfaces; IPv6 to whether it has a global address."""
    uplinks = state.default_interfaces if node_interfaces is None else node_interfaces
    out: List[KernelFinding] = []
    out += decide_forwarding(state, phase, state.global_ipv6 if has_ipv6 is None else has_ipv6)
    out += decide_bridge(state, phase)
    out.append(decide_rp_filter(state, phase, uplinks))
    out.append(decide_conntrack(state, phase))
    out.append(decide_vxlan(state, network_plugin))
    out.append(decide_swap(state, phase))
    return out


def kernel_findings(phase: Phase, node_interfaces: Optional[Sequence[str]] = None, network_plugin: str = "flannel",
                    has_ipv6: Optional[bool] = None, root: str = "/") -> List[KernelFinding]:
    state = read_kernel_state(root, node_interfaces or ())
    return decide_kernel(state, phase, node_interfaces, network_plugin, has_ipv6)
