"""Fixtures for the path and trust tests: real servers in test namespaces only.

- `pki`: certificates made with the openssl CLI (long chain, expired, not yet valid, wrong name,
  self-signed, unknown issuer, a "corporate" inspecting CA, a "public" CA).
- `path_lab`: node -- cpe ==1280== isp -- server (topology.py), TLS servers with the long chain on
  a black-holed address pair and on a healthy (ICMP allowed) address pair.
- `tls_lab`: node -- server, one TLS server per certificate fault.
- `dns_lab`: node -- far, real dnsmasq: authoritative data, a validating forwarder that answers
  SERVFAIL, a dropped address, a closed address, TCP 53 dropped on one address, and local stubs
  on the node's loopback.

Missing prerequisites skip locally and fail under CI (CI must never pass by skipping).
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from typing import Dict, Iterator, List, Optional

import pytest

from tests.pathtrust.pki import Cert, Pki
from tests.pathtrust.topology import PathLab
from tests.probes.netns import Netns
from tests.probes.servers import HttpsServer, TcpServer, read_request, server_context

SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
TOOLS = {"ip": "iproute2", "iptables": "iptables", "ip6tables": "iptables", "openssl": "openssl",
         "dnsmasq": "dnsmasq-base"}


def _which(name: str) -> Optional[str]:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def require(*tools: str) -> None:
    missing = [f"{t} (Debian package {TOOLS.get(t, t)})" for t in tools if not _which(t)]
    if os.geteuid() != 0:
        missing.append("root (network namespaces)")
    if not missing:
        return
    message = "path/trust lab prerequisites missing: " + "; ".join(missing)
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message + " (CI is set: these tests must run, not skip)", pytrace=False)
    pytest.skip(message)


def _sbin_path() -> None:
    # `ip netns exec dnsmasq` etc. need sbin on PATH; a CI PATH may lack it.
    path = os.environ.get("PATH", "")
    for d in SBIN:
        if d not in path.split(os.pathsep):
            path += os.pathsep + d
    os.environ["PATH"] = path


# ---------------------------------------------------------------------------------- certificates
@pytest.fixture(scope="session")
def pki() -> Iterator[Dict[str, object]]:
    require("openssl")
    d = tempfile.mkdtemp(prefix="ecp-pki-")
    try:
        p = Pki(d)
        now = datetime.datetime.now(datetime.timezone.utc)
        day = datetime.timedelta(days=1)
        root = p.root("lab-root", rsa=True)
        chain = p.chain(root, 4, "big", ["big.test"], rsa=True)
        other_root = p.root("stranger-root")
        corp_root = p.root("corp-inspection-root")
        corp_int = p.issue(corp_root, "corp-int", ca=True, cn="Corp TLS Inspection Issuing CA")
        public_root = p.root("fake-public-root")
        yield {
            "dir": d, "pki": p, "root": root,
            "chain": chain, "chain_pem": p.bundle("big-chain", chain),
            "good": p.issue(root, "good", sans=["good.test"]),
            "expired": p.issue(root, "expired", sans=["expired.test"], start=now - 30 * day, end=now - 2 * day),
            "future": p.issue(root, "future", sans=["future.test"], start=now + 2 * day, end=now + 30 * day),
            "wrongname": p.issue(root, "wrongname", sans=["somebody-else.test"]),
            "selfsigned": p.self_signed_leaf("selfsigned", ["selfsigned.test"]),
            "stranger": p.issue(other_root, "stranger", sans=["stranger.test"]),
            "corp_root": corp_root, "corp_int": corp_int,
            "intercepted": p.issue(corp_int, "intercepted", sans=["registry.test"]),
            "public_root": public_root,
            "public": p.issue(public_root, "publicleaf", sans=["registry.test"]),
        }
    finally:
        shutil.rmtree(d, ignore_errors=True)


def serve_chain(ns: Netns, address: str, port: int, leaf: Cert, chain: List[Cert], directory: str) -> HttpsServer:
    path = os.path.join(directory, f"serve-{leaf.name}.pem")
    with open(path, "w") as fh:
        for c in [leaf, *chain]:
            fh.write(c.pem())
    return ns.run(HttpsServer, address, port, path, leaf.key)


# ---------------------------------------------------------------------------------- path lab
BLACKHOLE_INDEX, HEALTHY_INDEX, SLOW_INDEX = 10, 11, 12


class SlowTlsServer(TcpServer):
    """A TLS server that waits `delay` seconds before its handshake: slow but healthy."""

    def __init__(self, address: str, port: int, cert: str, key: str, delay: float) -> None:
        self.context = server_context(cert, key)
        self.delay = delay
        super().__init__(address, port)

    def _handle(self, conn: socket.socket) -> None:
        time.sleep(self.delay)
        try:
            conn.settimeout(5)
            with self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1024)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


class BigResponseServer(TcpServer):
    """HTTP(S) server whose response (status line, headers and 8 kB body) goes out in one write:
    its first segment is full-size, so the status line itself is lost behind a black hole."""

    def __init__(self, address: str, port: int, cert: Optional[str] = None, key: Optional[str] = None) -> None:
        self.context = server_context(cert, key)
        super().__init__(address, port)

    def _handle(self, conn: socket.socket) -> None:
        body = b"x" * 8192
        try:
            conn.settimeout(5)
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            if read_request(conn) is None:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


@pytest.fixture(scope="session")
def path_lab(pki) -> Iterator[Dict[str, object]]:
    require("ip", "iptables", "ip6tables")
    _sbin_path()
    lab = PathLab()
    servers: list = []
    try:
        hole4, hole6 = lab.add_endpoint(BLACKHOLE_INDEX)
        ok4, ok6 = lab.add_endpoint(HEALTHY_INDEX)
        slow4, _ = lab.add_endpoint(SLOW_INDEX)
        lab.black_hole(hole4, hole6)
        leaf, *rest = pki["chain"]
        for address in (hole4, hole6, ok4, ok6):
            servers.append(serve_chain(lab.server, address, 443, leaf, rest, pki["dir"]))
        servers.append(lab.server.run(SlowTlsServer, slow4, 443, pki["good"].cert, pki["good"].key, 0.8))
        # Small handshake (one EC certificate, under 1280 bytes), large response: the HTTP stage stalls.
        servers.append(lab.server.run(BigResponseServer, hole4, 80))
        servers.append(lab.server.run(BigResponseServer, hole4, 8443, pki["good"].cert, pki["good"].key))
        yield {"lab": lab, "hole4": hole4, "hole6": hole6, "ok4": ok4, "ok6": ok6, "slow4": slow4,
               "context": ssl.create_default_context(cafile=pki["root"].cert), "cafile": pki["root"].cert}
    finally:
        for s in servers:
            s.close()
        lab.close()


# ---------------------------------------------------------------------------------- TLS faults
TLS_ADDRESSES = {"good": "10.83.0.1", "expired": "10.83.0.2", "future": "10.83.0.3", "wrongname": "10.83.0.4",
                 "selfsigned": "10.83.0.5", "stranger": "10.83.0.6", "intercepted": "10.83.0.7",
                 "public": "10.83.0.8"}


@pytest.fixture(scope="session")
def tls_lab(pki) -> Iterator[Dict[str, object]]:
    require("ip")
    node, far = Netns(), None
    servers: list = []
    try:
        far = Netns()
        node.link(far, "10.83.1.1/24", "10.83.1.2/24")
        node.exec("ip", "route", "add", "10.83.0.0/24", "via", "10.83.1.2")
        for name, address in TLS_ADDRESSES.items():
            far.add_address(f"{address}/32")
            chain = [pki["corp_int"]] if name == "intercepted" else []
            servers.append(serve_chain(far, address, 443, pki[name], chain, pki["dir"]))
        yield {"node": node, "far": far, "addresses": TLS_ADDRESSES}
    finally:
        for s in servers:
            s.close()
        if far is not None:
            far.close()
        node.close()


# ---------------------------------------------------------------------------------- DNS lab
GOOD1, GOOD2, NO_TCP, DROPPED, CLOSED, STRIPPER = (
    "10.82.0.1", "10.82.0.2", "10.82.0.3", "10.82.0.4", "10.82.0.5", "10.82.0.6")
BIG_RECORDS = 60  # 60 A records: about 990 bytes, over the 512 bytes of plain UDP DNS
ROOT_DS = "20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"


class DnsLab:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.node, self.far = Netns(), None
        try:
            self.far = Netns()
            self._build()
        except Exception:
            self.close()
            raise

    def _write(self, name: str, text: str) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as fh:
            fh.write(text)
        return path

    def _dnsmasq(self, ns: Netns, name: str, args: List[str]) -> subprocess.Popen:
        log = os.path.join(self.dir, f"{name}.log")
        proc = ns.spawn([_which("dnsmasq") or "dnsmasq", "--keep-in-foreground", "--user=root",
                         f"--pid-file={os.path.join(self.dir, name + '.pid')}", f"--log-facility={log}",
                         "--log-queries", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc

    def _build(self) -> None:
        node, far = self.node, self.far
        node.link(far, "10.82.1.1/24", "10.82.1.2/24")
        node.exec("ip", "route", "add", "10.82.0.0/24", "via", "10.82.1.2")
        for a in (GOOD1, GOOD2, NO_TCP, DROPPED, CLOSED, STRIPPER):
            far.add_address(f"{a}/32")
        far.iptables("-A", "INPUT", "-p", "tcp", "--dport", "53", "-d", NO_TCP, "-j", "DROP")
        far.iptables("-A", "INPUT", "-p", "udp", "--dport", "53", "-d", DROPPED, "-j", "DROP")
        hosts = ["10.82.5.1 www.plan.test"] + [f"10.82.6.{i} big.plan.test" for i in range(1, BIG_RECORDS + 1)]
        hosts_file = self._write("hosts", "\n".join(hosts) + "\n")
        # The authoritative lab server, also a validating forwarder for fail.test whose upstream
        # strips DNSSEC: validation fails and it answers SERVFAIL (a real SERVFAIL cause).
        auth = self._write("auth.conf", "\n".join([
            "no-resolv", "no-hosts", f"addn-hosts={hosts_file}", "bind-interfaces", "except-interface=lo",
            f"listen-address={GOOD1},{GOOD2},{NO_TCP},{DROPPED}", "local=/plan.test/",
            "dnssec", f"trust-anchor=.,{ROOT_DS}", f"trust-anchor=fail.test,{ROOT_DS}",
            f"server=/fail.test/{STRIPPER}", ""]))
        stripper = self._write("stripper.conf", "\n".join([
            "no-resolv", "no-hosts", "bind-interfaces", "except-interface=lo", f"listen-address={STRIPPER}",
            "address=/fail.test/10.82.7.1", ""]))
        self.procs = [self._dnsmasq(far, "auth", [f"--conf-file={auth}"]),
                      self._dnsmasq(far, "stripper", [f"--conf-file={stripper}"])]
        # Local stubs on the node's loopback.
        stub_conf = self._write("stub.conf", f"server={GOOD2}\nserver=/elsewhere.test/10.82.0.9\n")
        ready = "--address=/ready.test/127.0.0.9"  # answered by the stub itself: readiness probe
        self.procs.append(self._dnsmasq(node, "stub", [
            ready, "--bind-interfaces", "--listen-address=127.0.0.1", "--no-resolv", "--no-hosts",
            f"--server={GOOD1}", f"--conf-file={stub_conf}"]))
        stub2_resolv = self._write("stub2-upstreams.conf", f"nameserver {DROPPED}\nnameserver {GOOD1}\n")
        self.procs.append(self._dnsmasq(node, "stub2", [
            ready, "--bind-interfaces", "--listen-address=127.0.0.2", "--no-hosts", "--conf-file=/dev/null",
            f"--resolv-file={stub2_resolv}", "--strict-order"]))
        self.procs.append(self._dnsmasq(node, "resolved", [  # stands in for systemd-resolved's stub
            ready, "--bind-interfaces", "--listen-address=127.0.0.53", "--no-resolv", "--no-hosts",
            "--conf-file=/dev/null", f"--server={GOOD1}"]))
        self.resolved_file = self._write("resolved-resolv.conf",
                                         f"# systemd-resolved upstreams\nnameserver {GOOD1}\nnameserver {DROPPED}\n")
        self._wait_ready()

    def _wait_ready(self, timeout: float = 15.0) -> None:
        import dns.message
        import dns.query
        deadline = time.monotonic() + timeout
        targets = [(GOOD1, "www.plan.test"), (STRIPPER, "a.fail.test"), ("127.0.0.1", "ready.test"),
                   ("127.0.0.2", "ready.test"), ("127.0.0.53", "ready.test")]
        for address, qname in targets:
            while True:
                for p in self.procs:
                    if p.poll() is not None:
                        raise RuntimeError(f"a lab dnsmasq exited: see {self.dir}/*.log")
                try:
                    q = dns.message.make_query(qname, "A")
                    self.node.run(dns.query.udp, q, address, timeout=0.5)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"dnsmasq on {address} did not answer in {timeout} s")
                    time.sleep(0.1)

    def resolv_conf(self, name: str, nameservers: List[str], options: str = "timeout:1 attempts:1") -> str:
        lines = [f"nameserver {a}" for a in nameservers]
        if options:
            lines.append(f"options {options}")
        return self._write(name, "\n".join(lines) + "\n")

    def close(self) -> None:
        for ns in (self.far, self.node):
            if ns is not None:
                ns.close()  # kills the dnsmasq processes it spawned (by pid), deletes the namespace


@pytest.fixture(scope="session")
def dns_lab() -> Iterator[DnsLab]:
    require("ip", "iptables", "dnsmasq")
    _sbin_path()
    d = tempfile.mkdtemp(prefix="ecp-dns-")
    lab = DnsLab(d)
    try:
        yield lab
    finally:
        lab.close()
        shutil.rmtree(d, ignore_errors=True)
