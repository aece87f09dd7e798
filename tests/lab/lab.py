"""The lab: topology + real servers in the cloud namespace + fault switches + the CLI runner.

Cloud namespace, all from Debian packages, each with its own config file, log and pid file in
the lab's work dir (never a distro default config):
- dnsmasq      10.199.0.1:53   authoritative for every catalog hostname (from the plan), NXDOMAIN
                               for anything else, never forwards (no-resolv, no upstream at all);
- dnsmasq      10.199.0.53:53  a "forwarder with no upstream": answers REFUSED to everything;
- nginx        :443 (lab CA), :80 on every endpoint address; a wrong-CA server; a plain-HTTP
               server on :443; the API server on :6443 signed by a separate cluster CA;
- chronyd -x   one per NTP address (`local stratum 10`, no sources, never touches the clock) and
               one more serving a skewed time (SOCK refclock fed "+300 s", see refclock_feeder);
- charon       (strongSwan) on UDP 500/4500, no connections configured: any IKE_SA_INIT gets a
               NO_PROPOSAL_CHOSEN notify back — an answer;
- listener.py  Raven TCP 10280-10284 and tunnel server 10262/10263;
- tinyproxy    10.199.0.3:8888, an HTTP(S) proxy with a domain filter.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from tests.lab import pki
from tests.lab.plan import REPO, AddressAllocator, HostRecord, allocate, collect_hosts, edgecheck_env, inside
from tests.lab.topology import CLOUD_ADDR, NODE_ADDR, LabError, Netns, Topology, kill_pids, tool, which

HERE = Path(__file__).resolve().parent
CHARON = "/usr/lib/ipsec/charon"

# Fixed lab addresses (all owned by the cloud namespace).
DNS_ADDR = CLOUD_ADDR
REFUSING_DNS_ADDR = "10.199.0.53"
PROXY_ADDR = "10.199.0.3"
PROXY_PORT = 8888
DEAD_PROXY_PORT = 8899  # allowed through the perimeter firewall, nothing listens
APISERVER_PUBLIC = "203.0.113.6"
APISERVER_DEDICATED = "192.168.0.6"  # an internal SLB in the VPC block of seed 003's example
CLOSED_ADDR = "203.0.113.99"  # address is up, no port open: the kernel answers RST
RAVEN_ADDR = "203.0.113.20"
TUNNEL_ADDR = "203.0.113.30"
ROGUE_PUBLIC = "198.51.100.10"  # nginx with a certificate from a CA nobody trusts
PLAIN_PUBLIC = "198.51.100.11"  # nginx speaking plain HTTP on 443
NTP_SKEWED_ADDR = "198.51.100.123"
MUTE_TLS_ADDR = "198.51.100.12"  # completes TLS with the lab certificate, then never answers HTTP
NTP_SKEW_SECONDS = 300.0
SPARE_OUTSIDE = ("100.127.0.10", "192.0.2.250")  # healthy servers outside every per-endpoint block
RAVEN_TCP_PORTS = (10280, 10281, 10282, 10283, 10284)
TUNNEL_TCP_PORTS = (10262, 10263)
PROXY_ENV_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
                  "ALL_PROXY", "all_proxy", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")
EDGECHECK_ENV_PREFIX = "EDGECHECK_"

REQUIRED_BINARIES = {
    # binary -> Debian package that ships it (what CI must install)
    "ip": "iproute2",
    "iptables": "iptables",
    "nft": "nftables",
    "openssl": "openssl",
    "dnsmasq": "dnsmasq-base",
    "nginx": "nginx (nginx-light pulls it in)",
    "chronyd": "chrony",
    CHARON: "strongswan-charon",
    "tinyproxy": "tinyproxy-bin",
    "unshare": "util-linux",
    "mount": "mount",
    "ss": "iproute2",
    "sysctl": "procps",
    "curl": "curl",
    # The healthy scenarios expect every tool check to pass (SPEC section 2, system tools).
    "netstat": "net-tools",
    "crontab": "cron",
    "lspci": "pciutils",
    "socat": "socat",
    "ebtables": "iptables (ebtables-nft) or ebtables",
    "conntrack": "conntrack",
}


def missing_prerequisites() -> List[str]:
    missing = []
    for binary, package in REQUIRED_BINARIES.items():
        if not which(binary):
            missing.append(f"{binary} (Debian package {package})")
    for module in ("dns.resolver", "ntplib", "jsonschema"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"python module {module}")
    if os.geteuid() != 0:
        missing.append("root (network namespaces need CAP_SYS_ADMIN/CAP_NET_ADMIN)")
    return missing


@dataclass
class Daemon:
    name: str
    ns: Netns
    argv: List[str]
    env: Optional[Dict[str, str]]
    log: Path
    pidfile: Optional[Path] = None
    ready: Optional[Callable[[], bool]] = None
    popen: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> Optional[int]:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                self.ns.exec_argv(self.argv), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.env, start_new_session=True,
            )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        if self.popen is None:
            return
        pids = [self.popen.pid]
        if self.pidfile and self.pidfile.exists():
            try:
                pids.append(int(self.pidfile.read_text().split()[0]))
            except (ValueError, IndexError):
                pass
        kill_pids(sorted(set(pids)))
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.popen = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class RunResult:
    argv: List[str]
    returncode: int
    stdout: str
    stderr: str
    report: Optional[Dict[str, Any]]

    def check(self, check_id: str) -> Dict[str, Any]:
        assert self.report is not None, f"no JSON report:\n{self.stderr}"
        for c in self.report["checks"]:
            if c["id"] == check_id:
                return c
        ids = "\n  ".join(c["id"] for c in self.report["checks"])
        raise AssertionError(f"no check {check_id!r} in the report; checks:\n  {ids}")

    def checks(self, predicate: Callable[[Dict[str, Any]], bool] = lambda c: True) -> List[Dict[str, Any]]:
        assert self.report is not None, f"no JSON report:\n{self.stderr}"
        return [c for c in self.report["checks"] if predicate(c)]

    def describe(self) -> str:
        lines = [f"$ {' '.join(self.argv)}", f"exit {self.returncode}"]
        if self.report:
            for c in self.report["checks"]:
                lines.append(f"  {c['status']:4} {c['reason']:30} {c['id']}  {c['message'][:140]}")
        if self.stderr.strip():
            lines.append("stderr: " + self.stderr.strip()[-2000:])
        return "\n".join(lines)


@dataclass
class Lab:
    regions: Sequence[str] = ("cn-hangzhou",)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="eclab-")))
    topology: Topology = field(default_factory=Topology)
    hosts: Dict[str, HostRecord] = field(default_factory=dict)
    daemons: Dict[str, Daemon] = field(default_factory=dict)
    dns_overrides: Dict[str, Optional[List[str]]] = field(default_factory=dict)
    rogue_addresses: Dict[str, str] = field(default_factory=dict)  # block -> wrong-CA server address
    plain_addresses: Dict[str, str] = field(default_factory=dict)  # block -> plain-HTTP-on-443 address
    ntp_addresses: List[str] = field(default_factory=list)

    # ---------------------------------------------------------------- build / teardown

    def start(self, servers: Optional[Sequence[str]] = None) -> None:
        """Build everything; on any failure tear down what was built and re-raise."""
        try:
            self._build(servers)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill every daemon by pid, delete namespaces (killing stragglers), remove files. Idempotent."""
        for daemon in reversed(list(self.daemons.values())):
            daemon.stop()
        self.topology.destroy()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _build(self, servers: Optional[Sequence[str]]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)  # nginx workers (nobody) read nothing here, but tinyproxy logs
        if not self.hosts:
            self.hosts = collect_hosts(self.regions)
        self._allocate()
        self.topology.build()
        for address in self.all_cloud_addresses():
            self.topology.add_cloud_address(address)
        self.topology.set_node_resolver(DNS_ADDR)
        self.topology.set_cloud_resolver(DNS_ADDR)
        self._make_pki()
        wanted = set(servers) if servers is not None else None
        for name, factory in self._server_factories():
            if wanted is None or name in wanted:
                for daemon in factory():
                    self.daemons[daemon.name] = daemon
                    daemon.start()
        for daemon in self.daemons.values():
            self._wait_ready(daemon)

    def _allocate(self) -> None:
        fixed = [DNS_ADDR, REFUSING_DNS_ADDR, PROXY_ADDR, APISERVER_PUBLIC, APISERVER_DEDICATED, CLOSED_ADDR,
                 RAVEN_ADDR, TUNNEL_ADDR, ROGUE_PUBLIC, PLAIN_PUBLIC, NTP_SKEWED_ADDR, MUTE_TLS_ADDR, *SPARE_OUTSIDE]
        alloc = AddressAllocator(fixed)
        allocate(self.hosts, alloc)
        # A wrong-CA and a plain-HTTP twin inside every block a dedicated name lives in, so a TLS
        # fault on such a name is not masked by the (earlier) CIDR check.
        for rec in self.hosts.values():
            blocks = [c for c in rec.cidrs if ipaddress.ip_network(c).prefixlen < 32]
            if blocks and blocks[0] not in self.rogue_addresses:
                self.rogue_addresses[blocks[0]] = alloc.in_block(blocks[0], 200)
                self.plain_addresses[blocks[0]] = alloc.in_block(blocks[0], 200)
        self.ntp_addresses = sorted({a for r in self.hosts.values() if "ntp" in r.probes for a in r.addresses})

    def all_cloud_addresses(self) -> List[str]:
        out = [REFUSING_DNS_ADDR, PROXY_ADDR, APISERVER_PUBLIC, APISERVER_DEDICATED, CLOSED_ADDR, RAVEN_ADDR,
               TUNNEL_ADDR, ROGUE_PUBLIC, PLAIN_PUBLIC, NTP_SKEWED_ADDR, MUTE_TLS_ADDR, *SPARE_OUTSIDE,
               *self.rogue_addresses.values(), *self.plain_addresses.values()]
        for rec in self.hosts.values():
            out.extend(rec.addresses)
        return list(dict.fromkeys(out))

    def web_addresses(self) -> List[str]:
        """Healthy HTTPS/HTTP endpoint addresses (not NTP-only names)."""
        out = [a for r in self.hosts.values() if r.probes & {"https", "http"} for a in r.addresses]
        return list(dict.fromkeys(out + list(SPARE_OUTSIDE)))

    def _make_pki(self) -> None:
        d = self.workdir / "pki"
        d.mkdir()
        names = sorted(self.hosts)
        self.ca = pki.make_ca(d, "lab-ca", "edgecheck lab CA")
        self.server_cert = pki.make_server_cert(d, "endpoints", self.ca, names)
        self.cluster_ca = pki.make_ca(d, "cluster-ca", "edgecheck lab cluster CA")
        self.apiserver_cert = pki.make_server_cert(
            d, "apiserver", self.cluster_ca, ["kubernetes", "kubernetes.default"], [APISERVER_PUBLIC, APISERVER_DEDICATED])
        self.rogue_ca = pki.make_ca(d, "rogue-ca", "Untrusted middlebox CA")
        self.rogue_cert = pki.make_server_cert(d, "rogue", self.rogue_ca, names)

    # ---------------------------------------------------------------- servers

    def _server_factories(self) -> List[tuple]:
        return [
            ("dns", self._dns_daemons),
            ("web", self._nginx_daemons),
            ("ntp", self._chrony_daemons),
            ("ike", self._charon_daemons),
            ("tcp", self._listener_daemons),
            ("proxy", self._proxy_daemons),
        ]

    def _daemon(self, name: str, ns: Netns, argv: List[str], *, env: Optional[Dict[str, str]] = None,
                pidfile: Optional[Path] = None, ready: Optional[Callable[[], bool]] = None) -> Daemon:
        return Daemon(name, ns, argv, env, self.workdir / f"{name}.log", pidfile, ready)

    def _dns_daemons(self) -> List[Daemon]:
        d = self.workdir / "dns"
        d.mkdir(exist_ok=True)
        self.write_dns_records()
        main_conf = d / "dnsmasq.conf"
        main_conf.write_text("\n".join([
            "# Authoritative for the lab's names only; nothing is ever forwarded.",
            "no-resolv", "no-hosts", "no-poll",
            f"addn-hosts={d / 'records.hosts'}",
            "address=/#/",  # every name not in records.hosts: NXDOMAIN, never sent upstream
            f"listen-address={DNS_ADDR}", "bind-interfaces", "port=53",
            "cache-size=0", "local-ttl=0", "user=root",
            f"pid-file={d / 'dnsmasq.pid'}", f"log-facility={d / 'dnsmasq-queries.log'}", "log-queries", "",
        ]))
        refusing_conf = d / "dnsmasq-refusing.conf"
        refusing_conf.write_text("\n".join([
            "# A forwarder that lost its upstream: no records, no servers -> REFUSED to every query.",
            "no-resolv", "no-hosts", "no-poll",
            f"listen-address={REFUSING_DNS_ADDR}", "bind-interfaces", "port=53", "user=root",
            f"pid-file={d / 'dnsmasq-refusing.pid'}", "",
        ]))
        cloud = self.topology.cloud
        return [
            self._daemon("dnsmasq", cloud, ["dnsmasq", "-k", f"--conf-file={main_conf}"],
                         pidfile=d / "dnsmasq.pid", ready=lambda: self._listening("udp", DNS_ADDR, 53)),
            self._daemon("dnsmasq-refusing", cloud, ["dnsmasq", "-k", f"--conf-file={refusing_conf}"],
                         pidfile=d / "dnsmasq-refusing.pid",
                         ready=lambda: self._listening("udp", REFUSING_DNS_ADDR, 53)),
        ]

    def write_dns_records(self) -> None:
        lines = []
        for name in sorted(self.hosts):
            addresses = self.dns_overrides.get(name, self.hosts[name].addresses)
            for address in addresses or ():  # None / []: the record is missing -> NXDOMAIN
                lines.append(f"{address} {name}")
        path = self.workdir / "dns" / "records.hosts"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, path)

    def _nginx_daemons(self) -> List[Daemon]:
        d = self.workdir / "nginx"
        for sub in ("tmp", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        body = 'location / { default_type text/plain; return 200 "edgecheck lab endpoint\\n"; }'

        def listens(addresses: Sequence[str], port: int, ssl: bool) -> str:
            return "\n    ".join(f"listen {a}:{port}{' ssl' if ssl else ''};" for a in addresses)

        rogue = [ROGUE_PUBLIC, *self.rogue_addresses.values()]
        plain = [PLAIN_PUBLIC, *self.plain_addresses.values()]
        web = self.web_addresses()
        conf = f"""
worker_processes 1;
pid {d / 'nginx.pid'};
error_log {d / 'logs' / 'error.log'} warn;
events {{ worker_connections 512; }}
http {{
  access_log {d / 'logs' / 'access.log'};
  client_body_temp_path {d / 'tmp' / 'body'};
  proxy_temp_path {d / 'tmp' / 'proxy'};
  ssl_protocols TLSv1.2 TLSv1.3;
  # Every catalog endpoint: lab CA, one certificate with a SAN per hostname.
  server {{
    {listens(web, 443, True)}
    {listens(web, 80, False)}
    ssl_certificate {self.server_cert.cert};
    ssl_certificate_key {self.server_cert.key};
    {body}
  }}
  # Wrong CA: same names, signed by a CA the node does not trust.
  server {{
    {listens(rogue, 443, True)}
    {listens(rogue, 80, False)}
    ssl_certificate {self.rogue_cert.cert};
    ssl_certificate_key {self.rogue_cert.key};
    {body}
  }}
  # Not TLS at all on 443 (a misrouted port / plain-HTTP middlebox).
  server {{
    {listens(plain, 443, False)}
    {listens(plain, 80, False)}
    {body}
  }}
  # API server: separate cluster CA, port 6443.
  server {{
    {listens([APISERVER_PUBLIC, APISERVER_DEDICATED], 6443, True)}
    ssl_certificate {self.apiserver_cert.cert};
    ssl_certificate_key {self.apiserver_cert.key};
    location / {{ default_type application/json; return 401 '{{"kind":"Status","code":401}}'; }}
  }}
}}
"""
        (d / "nginx.conf").write_text(conf)
        argv = ["nginx", "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "logs" / "error.log"),
                "-g", "daemon off;"]
        first = web[0]
        return [self._daemon("nginx", self.topology.cloud, argv, pidfile=d / "nginx.pid",
                             ready=lambda: self._listening("tcp", first, 443)
                             and self._listening("tcp", APISERVER_PUBLIC, 6443))]

    def _chrony_daemons(self) -> List[Daemon]:
        daemons = []
        servers = [(a, None) for a in self.ntp_addresses] + [(NTP_SKEWED_ADDR, NTP_SKEW_SECONDS)]
        for i, (address, skew) in enumerate(servers):
            d = self.workdir / f"chrony{i}"
            d.mkdir(mode=0o700)
            lines = [
                "# Lab NTP server: no sources, never adjusts the host clock (-x), serves its own time.",
                f"pidfile {d / 'chronyd.pid'}",
                f"bindcmdaddress {d / 'chronyd.sock'}",
                "cmdport 0",
                f"bindaddress {address}",
                "port 123",
                "allow all",
            ]
            if skew is None:
                lines.append("local stratum 10")
            else:
                # A reference clock that says true time is `skew` seconds ahead; with -x chronyd
                # keeps that offset to itself and serves the skewed time to clients.
                lines.append(f"refclock SOCK {d / 'refclock.sock'} refid SKEW poll 0 dpoll 0 filter 2")
            (d / "chrony.conf").write_text("\n".join(lines) + "\n")
            name = f"chronyd-{address}"
            daemons.append(self._daemon(
                name, self.topology.cloud, ["chronyd", "-x", "-d", "-u", "root", "-f", str(d / "chrony.conf")],
                pidfile=d / "chronyd.pid", ready=lambda a=address: self._listening("udp", a, 123)))
            if skew is not None:
                daemons.append(self._daemon(
                    "refclock-feeder", self.topology.cloud,
                    [sys.executable, str(HERE / "refclock_feeder.py"), str(d / "refclock.sock"), str(skew)]))
        return daemons

    def _charon_daemons(self) -> List[Daemon]:
        d = self.workdir / "strongswan"
        (d / "run").mkdir(parents=True)
        conf = d / "strongswan.conf"
        conf.write_text(f"""
# Only what answering IKE_SA_INIT needs. No connections are configured, so every IKE_SA_INIT is
# answered with a NO_PROPOSAL_CHOSEN notify — which is an answer on UDP 4500.
charon {{
  load_modular = no
  load = random nonce aes sha1 sha2 hmac kdf gmp kernel-netlink socket-default
  port = 500
  port_nat_t = 4500
  install_routes = no
  install_virtual_ip = no
  filelog {{
    lab {{
      path = {d / 'charon.log'}
      default = 1
      ike = 2
      net = 2
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
}}
""")
        env = dict(os.environ, STRONGSWAN_CONF=str(conf))
        # charon hard-codes /var/run/charon.pid: give it a private /run (its own mount namespace)
        # backed by the lab dir, so the pid file lives there and the host's /run is untouched.
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                f"{tool('mount')} --bind {d / 'run'} /run && exec {CHARON}"]
        return [self._daemon("charon", self.topology.cloud, argv, env=env, pidfile=d / "run" / "charon.pid",
                             ready=lambda: self._listening("udp", "0.0.0.0", 4500))]

    def _listener_daemons(self) -> List[Daemon]:
        specs = [f"tcp:{RAVEN_ADDR}:{p}" for p in RAVEN_TCP_PORTS] + [f"tcp:{TUNNEL_ADDR}:{p}" for p in TUNNEL_TCP_PORTS]
        specs.append(f"tls-mute:{MUTE_TLS_ADDR}:443:{self.server_cert.cert}:{self.server_cert.key}")
        return [self._daemon("tcp-listeners", self.topology.cloud, [sys.executable, str(HERE / "listener.py"), *specs],
                             ready=lambda: self._listening("tcp", TUNNEL_ADDR, TUNNEL_TCP_PORTS[-1]))]

    def _proxy_daemons(self) -> List[Daemon]:
        d = self.workdir / "tinyproxy"
        d.mkdir()
        (d / "filter").write_text("")
        conf = d / "tinyproxy.conf"
        conf.write_text("\n".join([
            f"Port {PROXY_PORT}", f"Listen {PROXY_ADDR}", "Timeout 15", "MaxClients 50",
            f'PidFile "{d / "tinyproxy.pid"}"', f'LogFile "{d / "tinyproxy.log"}"', "LogLevel Info",
            f"Allow {NODE_ADDR}", "ConnectPort 443", "ConnectPort 6443",
            f'Filter "{d / "filter"}"', "FilterDefaultDeny No", "FilterExtended On", "",
        ]))
        return [self._daemon("tinyproxy", self.topology.cloud, ["tinyproxy", "-d", "-c", str(conf)],
                             pidfile=d / "tinyproxy.pid", ready=lambda: self._listening("tcp", PROXY_ADDR, PROXY_PORT))]

    def _listening(self, proto: str, address: str, port: int, ns: Optional[Netns] = None) -> bool:
        ns = ns or self.topology.cloud
        flag = "-t" if proto == "tcp" else "-u"
        out = ns.run(["ss", "-Hln", flag], check=False).stdout
        return any(line.split()[3] in (f"{address}:{port}", f"*:{port}") for line in out.splitlines()
                   if len(line.split()) > 4)

    def _wait_ready(self, daemon: Daemon, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not daemon.running():
                raise LabError(f"{daemon.name} exited (rc={daemon.popen.returncode if daemon.popen else None}):\n"
                               f"{daemon.log_tail()}")
            if daemon.ready is None or daemon.ready():
                return
            if time.monotonic() > deadline:
                raise LabError(f"{daemon.name} not ready after {timeout:.0f}s:\n{daemon.log_tail()}")
            time.sleep(0.1)

    # ---------------------------------------------------------------- lookups

    def host(self, name: str) -> HostRecord:
        return self.hosts[name]

    def addresses_of(self, name: str) -> List[str]:
        return list(self.hosts[name].addresses)

    def rogue_for(self, name: str) -> str:
        """A wrong-CA server address that still satisfies the name's expected CIDRs."""
        return self._twin(name, self.rogue_addresses, ROGUE_PUBLIC)

    def plain_for(self, name: str) -> str:
        return self._twin(name, self.plain_addresses, PLAIN_PUBLIC)

    def _twin(self, name: str, table: Dict[str, str], public: str) -> str:
        cidrs = self.hosts[name].cidrs
        if not cidrs:
            return public
        for block, address in table.items():
            if block in cidrs:
                return address
        raise LabError(f"{name}: its routes are single addresses ({cidrs}); no in-CIDR twin possible")

    def outside_for(self, name: str) -> str:
        """A healthy server address outside the name's expected CIDRs."""
        cidrs = self.hosts[name].cidrs
        return next(a for a in SPARE_OUTSIDE if not inside(a, cidrs))

    def wait_ntp_skew(self, timeout: float = 30.0) -> None:
        """The skewed chronyd needs a few refclock samples before it serves the offset."""
        script = ("import ntplib,sys\n"
                  "try: print(ntplib.NTPClient().request(sys.argv[1], version=4, timeout=1).offset)\n"
                  "except Exception: print('nan')\n")
        deadline = time.monotonic() + timeout
        while True:
            out = self.topology.node.run([sys.executable, "-c", script, NTP_SKEWED_ADDR], check=False).stdout.strip()
            try:
                if abs(float(out) - NTP_SKEW_SECONDS) < 1.0:
                    return
            except ValueError:
                pass
            if time.monotonic() > deadline:
                raise LabError(f"skewed NTP server not serving +{NTP_SKEW_SECONDS}s (last offset {out})")
            time.sleep(0.5)

    # ---------------------------------------------------------------- faults (all restore themselves)

    @contextmanager
    def dns(self, overrides: Dict[str, Optional[List[str]]]) -> Iterator[None]:
        """Change records (None = record missing). dnsmasq re-reads addn-hosts on SIGHUP."""
        saved = dict(self.dns_overrides)
        self.dns_overrides.update(overrides)
        try:
            self._reload_dns()
            yield
        finally:
            self.dns_overrides = saved
            self._reload_dns()

    def _reload_dns(self) -> None:
        self.write_dns_records()
        daemon = self.daemons.get("dnsmasq")
        if daemon and daemon.running():
            os.kill(daemon.pid, signal.SIGHUP)
            self._wait_dns_consistent()

    def _wait_dns_consistent(self, timeout: float = 5.0) -> None:
        """Block until the server answers with the current records (SIGHUP is asynchronous)."""
        expected = {n: sorted(self.dns_overrides.get(n, self.hosts[n].addresses) or []) for n in self.hosts}
        script = (
            "import dns.resolver,json,sys\n"
            "r=dns.resolver.Resolver(configure=False); r.nameservers=[sys.argv[1]]; r.lifetime=1\n"
            "out={}\n"
            "for n in sys.argv[2:]:\n"
            "  try: out[n]=sorted(a.address for a in r.resolve(n,'A'))\n"
            "  except dns.resolver.NXDOMAIN: out[n]=[]\n"
            "print(json.dumps(out))\n"
        )
        deadline = time.monotonic() + timeout
        while True:
            proc = self.topology.node.run([sys.executable, "-c", script, DNS_ADDR, *sorted(self.hosts)], check=False)
            if proc.returncode == 0 and json.loads(proc.stdout) == expected:
                return
            if time.monotonic() > deadline:
                raise LabError(f"dnsmasq did not pick up the records: {proc.stdout} {proc.stderr}")
            time.sleep(0.1)

    @contextmanager
    def cloud_firewall(self, rules: Sequence[Sequence[str]]) -> Iterator[None]:
        """iptables rules inside the cloud namespace (e.g. ["INPUT", "-d", ip, "-j", "DROP"])."""
        with self.topology.iptables_rules(self.topology.cloud, rules):
            yield

    @contextmanager
    def node_firewall(self, rules: Sequence[Sequence[str]]) -> Iterator[None]:
        with self.topology.iptables_rules(self.topology.node, rules):
            yield

    @contextmanager
    def node_resolver(self, nameserver: str) -> Iterator[None]:
        self.topology.set_node_resolver(nameserver)
        try:
            yield
        finally:
            self.topology.set_node_resolver(DNS_ADDR)

    @contextmanager
    def stopped(self, daemon_name: str) -> Iterator[None]:
        """The server is down (killed by pid) for the block, then started again with the same config."""
        daemon = self.daemons[daemon_name]
        daemon.stop()
        try:
            yield
        finally:
            daemon.start()
            self._wait_ready(daemon)

    @contextmanager
    def proxy_filter(self, hostnames: Sequence[str]) -> Iterator[None]:
        """tinyproxy refuses CONNECT/GET to these names (403). Restarted to load the filter."""
        path = self.workdir / "tinyproxy" / "filter"
        path.write_text("".join(f"^{h.replace('.', '[.]')}$\n" for h in hostnames))
        self._restart("tinyproxy")
        try:
            yield
        finally:
            path.write_text("")
            self._restart("tinyproxy")

    def _restart(self, daemon_name: str) -> None:
        daemon = self.daemons[daemon_name]
        daemon.stop()
        daemon.start()
        self._wait_ready(daemon)

    @contextmanager
    def node_listeners(self, specs: Sequence[str]) -> Iterator[Daemon]:
        """Processes holding ports on the node (e.g. "tcp:0.0.0.0:10250", "udp:0.0.0.0:8472")."""
        daemon = self._daemon(f"node-listeners-{len(self.daemons)}", self.topology.node,
                              [sys.executable, str(HERE / "listener.py"), *specs])
        last = specs[-1].split(":")
        daemon.ready = lambda: self._listening(last[0], last[1], int(last[2]), self.topology.node)
        self.daemons[daemon.name] = daemon
        daemon.start()
        try:
            self._wait_ready(daemon)
            yield daemon
        finally:
            daemon.stop()
            self.daemons.pop(daemon.name, None)

    # ---------------------------------------------------------------- the CLI under test

    def run_edgecheck(self, args: Sequence[str], *, env: Optional[Dict[str, str]] = None,
                      ca_bundle: bool = True, timeout: float = 90.0, fmt: str = "json") -> RunResult:
        """`ip netns exec <node> python3 -m edgecheck run ARGS --format json --ca-bundle <lab CA>`."""
        cmd = [sys.executable, "-m", "edgecheck", "run", *args, "--format", fmt]
        if ca_bundle:
            cmd += ["--ca-bundle", str(self.ca.cert)]
        argv = self.topology.node.exec_argv(cmd)
        run_env = {k: v for k, v in edgecheck_env().items()
                   if k not in PROXY_ENV_VARS and not k.startswith(EDGECHECK_ENV_PREFIX)}
        run_env.update(env or {})
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=run_env, timeout=timeout)
        try:
            report = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            report = None
        return RunResult(argv, proc.returncode, proc.stdout, proc.stderr, report)
