"""A site of edge nodes for the Ansible test: SSH-reachable nodes beside the integration lab.

    [eclab-X-n1 "fleet-node-1" sshd]--+
    [eclab-X-n2 "fleet-node-2" sshd]--+-- br-site in [eclab-X-s] --+-- [eclab-X-c cloud: lab DNS + endpoints]
    [eclab-X-n3 "fleet-node-3" sshd]--+                            |   10.198.0.1 on the site link
    [eclab-X-a  Ansible controller ]--+                                (tests/lab/lab.py servers)
     10.198.0.2; nodes 10.198.0.11-13, default route via the cloud's 10.198.0.1

Every namespace is one this test creates (names start with the lab's prefix); each veth is
created inside a lab namespace with its peer moved straight into another lab namespace, and the
bridge lives in its own namespace: nothing is added to the root namespace. The cloud does not
forward (ip_forward=0): nodes only reach the cloud's own addresses, the controller only the nodes.

Each node runs Debian's sshd with its own config, host key, authorized_keys and pid file in a
temporary directory, inside `unshare --uts --mount`: its own hostname (what edgecheck reports)
and a private tmpfs on /run for sshd's privilege-separation directory, so neither this machine's
/etc/ssh nor its /run is touched. sshd is killed by pid, and every namespace is deleted (killing
whatever is left inside) on teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from tests.lab.lab import DNS_ADDR, Lab
from tests.lab.topology import LabError, Netns, kill_pids, sh, tool

SITE_NET = "10.198.0"
CLOUD_SITE_ADDR = f"{SITE_NET}.1"
CONTROLLER_ADDR = f"{SITE_NET}.2"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


@dataclass
class SiteNode:
    name: str  # hostname inside its UTS namespace, and the Ansible inventory name
    ns: Netns
    address: str
    workdir: Path
    sshd: Optional[subprocess.Popen] = None


@dataclass
class SiteLab:
    lab: Lab
    workdir: Path
    node_count: int = 3
    switch: Optional[Netns] = None
    controller: Optional[Netns] = None
    nodes: List[SiteNode] = field(default_factory=list)

    # ------------------------------------------------------------------ build / teardown

    def start(self) -> None:
        try:
            self._build()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            if node.sshd is not None:
                kill_pids([node.sshd.pid])
                try:
                    node.sshd.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                node.sshd = None
        for ns in [*(n.ns for n in self.nodes), self.controller, self.switch]:
            if ns is not None:
                ns.delete()
        # The cloud's end of the site link goes with the switch namespace (veth pairs die together).

    def _build(self) -> None:
        suffix = self.lab.topology.suffix
        cloud = self.lab.topology.cloud
        self.switch = Netns(f"eclab-{suffix}-s")
        self.switch.create()
        self.switch.ip("link", "add", "br-site", "type", "bridge")
        self.switch.ip("link", "set", "br-site", "up")
        self._wire(cloud, "site-cloud", "sw-cloud", f"{CLOUD_SITE_ADDR}/24")
        self.controller = Netns(f"eclab-{suffix}-a")
        self.controller.create()
        self._wire(self.controller, "site-ctl", "sw-ctl", f"{CONTROLLER_ADDR}/24")
        for i in range(1, self.node_count + 1):
            ns = Netns(f"eclab-{suffix}-n{i}")
            ns.create()
            address = f"{SITE_NET}.{10 + i}"
            self._wire(ns, "site0", f"sw-n{i}", f"{address}/24")
            ns.ip("route", "add", "default", "via", CLOUD_SITE_ADDR)
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
            ns.write_etc("hosts", "127.0.0.1 localhost\n")
            ns.write_etc("resolv.conf", f"nameserver {DNS_ADDR}\noptions timeout:1 attempts:1\n")
            workdir = self.workdir / f"fleet-node-{i}"
            workdir.mkdir(parents=True)
            self.nodes.append(SiteNode(f"fleet-node-{i}", ns, address, workdir))
        self.controller.write_etc("hosts", "127.0.0.1 localhost\n")
        self.controller.write_etc("resolv.conf", "nameserver 127.0.0.1\n")  # nothing to resolve there
        self._keys()
        for node in self.nodes:
            self._start_sshd(node)
        for node in self.nodes:
            self._wait_sshd(node)

    def _wire(self, ns: Netns, inside: str, port: str, cidr: str) -> None:
        """A veth from `ns` to the bridge: made inside `ns`, peer moved into the switch ns."""
        assert self.switch is not None
        ns.ip("link", "add", inside, "type", "veth", "peer", "name", port, "netns", self.switch.name)
        self.switch.ip("link", "set", port, "master", "br-site")
        self.switch.ip("link", "set", port, "up")
        ns.ip("addr", "add", cidr, "dev", inside)
        ns.ip("link", "set", inside, "up")

    # ------------------------------------------------------------------ ssh

    @property
    def client_key(self) -> Path:
        return self.workdir / "ssh" / "client_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.workdir / "ssh" / "ssh_config"

    def _keys(self) -> None:
        d = self.workdir / "ssh"
        d.mkdir(mode=0o700)
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecheck-fleet-test", "-f", str(self.client_key)])
        known = []
        for node in self.nodes:
            key = node.workdir / "ssh_host_ed25519_key"
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", node.name, "-f", str(key)])
            known.append(f"{node.address} {Path(str(key) + '.pub').read_text().split(' ')[0]} "
                         f"{Path(str(key) + '.pub').read_text().split(' ')[1]}")
            (node.workdir / "authorized_keys").write_text(Path(str(self.client_key) + ".pub").read_text())
            (node.workdir / "sshd_config").write_text("\n".join([
                "# Test sshd: own port, keys and files; nothing from /etc/ssh.",
                f"ListenAddress {node.address}:22",
                f"HostKey {key}",
                f"PidFile {node.workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {node.workdir / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",  # the temp dir is not the user's home
                "PrintMotd no",
                "X11Forwarding no",
                "AllowTcpForwarding no",
                "UseDNS no",
                "MaxStartups 30",
                f"Subsystem sftp {SFTP_SERVER}",
                "LogLevel VERBOSE",
                "",
            ]))
        (d / "known_hosts").write_text("\n".join(known) + "\n")
        self.ssh_config.write_text("\n".join([
            "Host *",
            "  User root",
            f"  IdentityFile {self.client_key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {d / 'known_hosts'}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  PasswordAuthentication no",
            "  BatchMode yes",
            "  ConnectTimeout 15",
            "",
        ]))

    def _start_sshd(self, node: SiteNode) -> None:
        script = (f"{tool('hostname')} {node.name} && "
                  f"{tool('mount')} -t tmpfs -o mode=0755,size=1m edgecheck-site-run /run && "
                  f"mkdir -m 0755 /run/sshd && exec {SSHD} -D -e -f {node.workdir / 'sshd_config'}")
        argv = node.ns.exec_argv(["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", script])
        with open(node.workdir / "sshd.log", "ab") as log:
            node.sshd = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def _wait_sshd(self, node: SiteNode, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert node.sshd is not None
            if node.sshd.poll() is not None:
                raise LabError(f"sshd of {node.name} exited (rc={node.sshd.returncode}):\n{self.sshd_log(node)}")
            out = node.ns.run(["ss", "-Hltn"], check=False).stdout
            if f"{node.address}:22 " in out:
                return
            if time.monotonic() > deadline:
                raise LabError(f"sshd of {node.name} not listening after {timeout:.0f}s:\n{self.sshd_log(node)}")
            time.sleep(0.1)

    def sshd_log(self, node: SiteNode) -> str:
        try:
            return (node.workdir / "sshd.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    # ------------------------------------------------------------------ faults and commands

    def dns_blackhole(self, node: SiteNode):  # type: ignore[no-untyped-def]
        """The site firewall drops this node's DNS (UDP and TCP 53 to the lab resolver): in the
        cloud namespace, so it is not the node's own filter."""
        return self.lab.cloud_firewall([
            ["INPUT", "-s", node.address, "-p", proto, "--dport", "53", "-j", "DROP"] for proto in ("udp", "tcp")
        ])

    def on_controller(self, argv: List[str], env: Dict[str, str], timeout: float = 900.0) -> subprocess.CompletedProcess:
        assert self.controller is not None
        return subprocess.run(self.controller.exec_argv(argv), capture_output=True, text=True, env=env,
                              timeout=timeout)

    def ssh(self, node: SiteNode, command: str) -> subprocess.CompletedProcess:
        return self.on_controller([tool("ssh"), "-F", str(self.ssh_config), node.address, command], dict(os.environ),
                                  timeout=60)


def prerequisites() -> List[str]:
    missing = []
    for binary, package in ((SSHD, "openssh-server"), (SFTP_SERVER, "openssh-sftp-server"), ("ssh", "openssh-client"),
                            ("ssh-keygen", "openssh-client"), ("hostname", "hostname")):
        if not (os.access(binary, os.X_OK) if "/" in binary else shutil.which(binary)):
            missing.append(f"{binary} (Debian package {package})")
    return missing
