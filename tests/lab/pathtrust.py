"""Faults for the path-and-trust scenarios (issue 12) in the integration lab, all inside the lab's
own namespaces: TLS servers with certificates of the lab CA that are expired, not yet valid or for
another name; a DNS server that answers SERVFAIL for one name; a local dnsmasq stub on the node's
loopback; a "system" trust store for the node that holds an inspecting CA.

Python servers run on threads of the test process that entered the lab's cloud namespace
(tests/probes/netns.py); nothing is bound or routed in the root namespace.
"""

from __future__ import annotations

import datetime
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

from tests.lab.lab import DNS_ADDR, Lab
from tests.lab.topology import Netns as LabNetns
from tests.pathtrust.pki import Cert, Pki
from tests.probes.netns import Netns
from tests.probes.servers import DnsServer, HttpsServer

# Fault addresses on the cloud's loopback (198.51.100.0/24 is the lab's fault range).
TLS_FAULT_ADDRESSES = {"expired": "198.51.100.31", "future": "198.51.100.32", "wrongname": "198.51.100.33"}
SERVFAIL_DNS_ADDR = "10.199.0.54"  # a DNS server that answers SERVFAIL for one name, the lab's records else
STUB_ADDR = "127.0.0.1"  # the node's local dnsmasq stub


class LabNamespace(Netns):
    """A view of a namespace the lab made: threads can enter it; closing stops only our processes."""

    def __init__(self, ns: LabNetns) -> None:  # noqa: D107 - no namespace is created here
        self.name = ns.name
        self.procs = []

    def close(self) -> None:
        """The lab deletes its namespaces itself; nothing to do here."""


def lab_ca(lab: Lab) -> Cert:
    return Cert("lab-ca", str(lab.ca.cert), str(lab.ca.key), "/CN=edgecheck lab CA")


def fault_certificates(lab: Lab, host: str, not_before_in: float = 150.0) -> Dict[str, Cert]:
    """Leaf certificates of the lab CA: expired (two days ago), not yet valid (from
    `not_before_in` seconds from now) and valid but for another name."""
    d = lab.workdir / "pathtrust-pki"
    d.mkdir(exist_ok=True)
    pki = Pki(str(d))
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    stamp = f"{int(time.time() * 1000)}"
    ca = lab_ca(lab)
    return {
        "expired": pki.issue(ca, f"expired-{stamp}", sans=[host], start=now - 3 * day, end=now - 2 * day),
        "future": pki.issue(ca, f"future-{stamp}", sans=[host], start=now + datetime.timedelta(seconds=not_before_in),
                            end=now + 3 * day),
        "wrongname": pki.issue(ca, f"wrongname-{stamp}", sans=["somebody-else.example.test"]),
    }


def _stop(server: object) -> None:
    """Wake the server thread blocked on its socket (a plain close leaves a listener bound while
    another thread sits in accept/recvfrom on it), then close it."""
    sock = getattr(server, "sock")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@contextmanager
def tls_servers(lab: Lab, certs: Dict[str, Cert]) -> Iterator[Dict[str, str]]:
    """One HTTPS server per fault certificate in the cloud; yields fault name -> address."""
    cloud = LabNamespace(lab.topology.cloud)
    servers = []
    try:
        for fault, cert in certs.items():
            address = TLS_FAULT_ADDRESSES[fault]
            lab.topology.add_cloud_address(address)
            servers.append(cloud.run(HttpsServer, address, 443, cert.cert, cert.key))
        yield dict(TLS_FAULT_ADDRESSES)
    finally:
        for server in servers:
            _stop(server)


@contextmanager
def servfail_dns(lab: Lab, broken: str) -> Iterator[DnsServer]:
    """The node's only nameserver answers every lab name but `broken`, which gets SERVFAIL (as a
    forwarder whose upstream failed says)."""
    cloud = LabNamespace(lab.topology.cloud)
    lab.topology.add_cloud_address(SERVFAIL_DNS_ADDR)
    server = cloud.run(DnsServer, SERVFAIL_DNS_ADDR, 53)
    server.zone.update({name: {"A": list(rec.addresses)} for name, rec in lab.hosts.items()})
    server.zone[broken] = "SERVFAIL"
    server.zone["*"] = "NXDOMAIN"
    try:
        with lab.node_resolver(SERVFAIL_DNS_ADDR):
            yield server
    finally:
        _stop(server)


@contextmanager
def node_resolv_conf(lab: Lab, nameservers: Sequence[str], options: str = "timeout:1 attempts:1") -> Iterator[None]:
    """The node's resolv.conf lists these nameservers in this order."""
    lines = [f"nameserver {a}" for a in nameservers] + [f"options {options}"]
    lab.topology.node.write_etc("resolv.conf", "\n".join(lines) + "\n")
    try:
        yield
    finally:
        lab.topology.set_node_resolver(DNS_ADDR)


@contextmanager
def local_stub(lab: Lab, upstream: str = DNS_ADDR) -> Iterator[int]:
    """A dnsmasq on the node's loopback forwarding to `upstream`, and resolv.conf pointing only at
    it (as systemd-resolved or a NetworkManager dnsmasq leave a node). Yields its pid."""
    d = lab.workdir / "stub"
    d.mkdir(exist_ok=True)
    argv = ["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
            f"--listen-address={STUB_ADDR}", "--port=53", "--user=root", "--cache-size=0",
            f"--server={upstream}", f"--pid-file={d / 'stub.pid'}"]
    daemon = lab._daemon("node-stub", lab.topology.node, argv, pidfile=d / "stub.pid")
    daemon.ready = lambda: lab._listening("udp", STUB_ADDR, 53, lab.topology.node)
    lab.daemons[daemon.name] = daemon
    daemon.start()
    try:
        lab._wait_ready(daemon)
        with node_resolv_conf(lab, [STUB_ADDR]):
            yield daemon.pid or 0
    finally:
        daemon.stop()
        lab.daemons.pop(daemon.name, None)


@contextmanager
def system_trust_store(lab: Lab, extra_cas: Sequence[Path]) -> Iterator[Path]:
    """The node's system trust store (/etc/ssl/certs/ca-certificates.crt, what OpenSSL and
    edgecheck read without --ca-bundle) is certifi's public roots plus `extra_cas`, as after an
    administrator ran update-ca-certificates with an inspecting proxy's CA. `ip netns exec` binds
    /etc/netns/<node>/ssl over /etc/ssl for the node's commands only; the host's store is untouched."""
    import certifi

    root = lab.topology.node.etc_dir / "ssl"
    (root / "certs").mkdir(parents=True, exist_ok=True)
    if Path("/etc/ssl/openssl.cnf").is_file():
        shutil.copy("/etc/ssl/openssl.cnf", root / "openssl.cnf")
    bundle = root / "certs" / "ca-certificates.crt"
    bundle.write_text(Path(certifi.where()).read_text() + "".join(Path(p).read_text() for p in extra_cas))
    try:
        yield bundle
    finally:
        shutil.rmtree(root, ignore_errors=True)


def big_answer_addresses(count: int = 60) -> List[str]:
    """Enough A records to exceed 512 bytes (plain DNS over UDP) several times over."""
    return [f"198.51.100.{100 + i}" for i in range(count)]
