"""Three test namespaces in a line: the prober's side, a router, the node (ecr-* names).

    [far]  FAR_IF  10.88.1.2/24  fd88:1::2/64 --- 10.88.1.1  fd88:1::1  [router]  10.88.2.1  fd88:2::1 --- NODE_IF 10.88.2.2/24 fd88:2::2/64  [node]
           default via the router                      forwards v4 and v6                                  default via the router

Faults are iptables rules inside the router (FORWARD: the far side's path) or the node (INPUT),
NAT is MASQUERADE in the router's POSTROUTING. Every veth is created inside a test namespace
with its peer moved straight into the other one: nothing appears in, or is changed in, the root
namespace. Code runs in a namespace on a thread that entered it (Netns.run) or as a process
started with `ip netns exec` (Netns.spawn); both are torn down by pid / namespace deletion.
"""

from __future__ import annotations

import secrets
import socket
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Sequence

from edgecheck.reach.listener import Listener, ListenEvent, ListenSummary, PortSpec
from tests.probes.netns import Netns

FAR4, ROUTER_FAR4, ROUTER_NODE4, NODE4 = "10.88.1.2", "10.88.1.1", "10.88.2.1", "10.88.2.2"
FAR6, ROUTER_FAR6, ROUTER_NODE6, NODE6 = "fd88:1::2", "fd88:1::1", "fd88:2::1", "fd88:2::2"
READY_PORT = 7
BLACKHOLE_NET = "10.89.0.0/16"  # routed to the node, dropped in the router (bench and scale tests)

PLAN_PORTS = (PortSpec(10250, "tcp", "kubelet"), PortSpec(10255, "tcp", "kubelet read-only"),
              PortSpec(9100, "tcp", "node-exporter"), PortSpec(9445, "tcp", "node-exporter"),
              PortSpec(8472, "udp", "flannel"))


def missing_tools(extra: Sequence[str] = ()) -> List[str]:
    return [t for t in ("ip", "iptables", "ip6tables", *extra) if shutil.which(t) is None]


class ReachLab:
    def __init__(self) -> None:
        self.far = Netns("ecr-")
        self.router: Optional[Netns] = None
        self.node: Optional[Netns] = None
        try:
            self.router = Netns("ecr-")
            self.node = Netns("ecr-")
            self._build()
        except Exception:
            self.close()
            raise

    def _link(self, a: Netns, b: Netns, a4: str, b4: str, a6: str, b6: str) -> tuple:
        tag = secrets.token_hex(3)
        ia, ib = f"ecr{tag}a", f"ecr{tag}b"
        a.exec("ip", "link", "add", ia, "type", "veth", "peer", "name", ib, "netns", b.name)
        a.exec("ip", "addr", "add", a4, "dev", ia)
        b.exec("ip", "addr", "add", b4, "dev", ib)
        a.exec("ip", "-6", "addr", "add", a6, "dev", ia, "nodad")
        b.exec("ip", "-6", "addr", "add", b6, "dev", ib, "nodad")
        a.exec("ip", "link", "set", ia, "up")
        b.exec("ip", "link", "set", ib, "up")
        return ia, ib

    def _build(self) -> None:
        assert self.router and self.node
        for ns in self.namespaces:
            # No duplicate address detection on the veths to come: a tentative link-local address
            # holds IPv6 back for a second or two after the link comes up.
            ns.exec("sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0")
        self.far_if, self.router_far_if = self._link(self.far, self.router, f"{FAR4}/24", f"{ROUTER_FAR4}/24",
                                                     f"{FAR6}/64", f"{ROUTER_FAR6}/64")
        self.router_node_if, self.node_if = self._link(self.router, self.node, f"{ROUTER_NODE4}/24", f"{NODE4}/24",
                                                       f"{ROUTER_NODE6}/64", f"{NODE6}/64")
        self.far.exec("ip", "route", "add", "default", "via", ROUTER_FAR4)
        self.far.exec("ip", "-6", "route", "add", "default", "via", ROUTER_FAR6)
        self.node.exec("ip", "route", "add", "default", "via", ROUTER_NODE4)
        self.node.exec("ip", "-6", "route", "add", "default", "via", ROUTER_NODE6)
        self.router.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        self.router.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        for ns in (self.router, self.node):
            # Linux rate-limits ICMP errors per destination (a burst of about 6, then 1/s): five
            # ports rejected at once, test after test, would turn later REJECTs into timeouts.
            # Real routers do the same; the tests pin the kernel's answer, not its rate limit.
            ns.exec("sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0")
            ns.exec("sysctl", "-q", "-w", "net.ipv6.icmp.ratelimit=0")
        # The black-hole block: routed towards the node, dropped by the router.
        self.router.exec("ip", "route", "add", BLACKHOLE_NET, "via", NODE4)
        self.router.iptables("-A", "FORWARD", "-d", BLACKHOLE_NET, "-j", "DROP")
        self._wait_ready()

    def _wait_ready(self, limit: float = 15.0) -> None:
        """Until far reaches node over IPv4 and IPv6: fresh veths drop what they get before carrier
        and neighbour discovery settle, and the tests' first probe must not pay for it."""
        assert self.node is not None
        servers = [self.node.run(socket.create_server, (NODE4, READY_PORT)),
                   self.node.run(socket.create_server, (NODE6, READY_PORT), family=socket.AF_INET6)]

        def attempt(address: str) -> bool:
            try:
                with socket.create_connection((address, READY_PORT), timeout=0.2):
                    return True
            except OSError:
                return False

        try:
            end = time.monotonic() + limit
            pending = [NODE4, NODE6]
            while pending and time.monotonic() < end:
                pending = [a for a in pending if not self.far.run(attempt, a)]
            if pending:
                raise RuntimeError(f"reach lab: {pending} not reachable from far after {limit:g} s")
        finally:
            for s in servers:
                s.close()

    @property
    def namespaces(self) -> List[Netns]:
        return [ns for ns in (self.far, self.router, self.node) if ns is not None]

    def close(self) -> None:
        for ns in self.namespaces:
            ns.close()

    @contextmanager
    def rules(self, ns: Netns, *rules: Sequence[str], v6: bool = False) -> Iterator[None]:
        """iptables rules (chain, match..., target) inserted for the block's duration, in `ns` only."""
        table_rules = []
        try:
            for rule in rules:
                table = []
                rule = list(rule)
                if rule[0] == "-t":
                    table, rule = rule[:2], rule[2:]
                ns.iptables(*table, "-I", *rule, v6=v6)
                table_rules.append((table, rule))
            yield
        finally:
            for table, rule in reversed(table_rules):
                subprocess.run(["ip", "netns", "exec", ns.name, "ip6tables" if v6 else "iptables", *table, "-D", *rule],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening(self, ns: Netns) -> str:
        """`ss -lntuH` inside ns: what is bound there right now."""
        out = subprocess.run(["ip", "netns", "exec", ns.name, "ss", "-lntuH"], capture_output=True, text=True)
        return out.stdout


class BackgroundListener:
    """A Listener serving on a thread inside a namespace; stop() returns its summary."""

    def __init__(self, ns: Netns, specs: Sequence[PortSpec], token: str, duration: float = 120.0,
                 **options: Any) -> None:
        self.events: List[ListenEvent] = []
        self.summary: Optional[ListenSummary] = None
        self.error: Optional[BaseException] = None
        self.listener: Optional[Listener] = None
        self._ready = threading.Event()
        options.setdefault("on_event", self.events.append)

        def body() -> None:
            try:
                ns.enter()
                self.listener = Listener(specs, token, **options)
                self.listener.open()
                self._ready.set()
                self.summary = self.listener.serve(duration)
            except BaseException as exc:  # surfaced by stop()/wait_ready()
                self.error = exc
                if self.listener is not None:
                    self.listener.close()
            finally:
                self._ready.set()

        self.thread = threading.Thread(target=body, daemon=True, name="reach-test-listener")
        self.thread.start()
        self._ready.wait(10)
        if self.error:
            raise self.error

    @property
    def bindings(self):
        assert self.listener is not None
        return self.listener.bindings

    def stop(self, reason: str = "test") -> ListenSummary:
        assert self.listener is not None
        self.listener.stop(reason)
        self.thread.join(10)
        assert not self.thread.is_alive(), "listener did not stop"
        if self.error:
            raise self.error
        assert self.summary is not None
        return self.summary

    def wait_for(self, predicate: Callable[[List[ListenEvent]], bool], timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate(list(self.events)):
                return True
            time.sleep(0.02)
        return False
