"""The .deb under a real systemd: installed with dpkg in a booted Debian container, used as an
operator would, then upgraded and purged.

One container per module (systemd-nspawn, systemd as PID 1, --private-network, --volatile=overlay;
see nspawn_helpers.py), joined to the integration lab (tests/lab) as its edge node, so the agent's
checks have DNS, HTTPS, an API server and NTP servers to talk to and can come out READY. The lab's
faults (a DROP rule, a closed address) make runs fail or hang on purpose. No packet leaves the
lab: the container's only link is the lab's veth.

The tests run in file order and share the container: install -> configure and enable -> runs
(timer, hardening, files, journal, hang, lock, port owners) -> upgrade -> purge.

Run alone (root):  .venv/bin/python -m pytest -q tests/packaging/test_deb_under_systemd.py
Keep the debootstrap root between runs with EDGECHECK_NSPAWN_CACHE=/var/cache/edgecheck-nspawn.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from tests.packaging.packaging_helpers import VERSION, build_deb_from_copy
from tests.packaging.nspawn_helpers import (SUITE, Container, RootfsRecipe, ensure_rootfs, host_debian_mirror,
                            missing_prerequisites, require, rootfs_cache, which)

STATE = "/var/lib/edgecheck"
REPORT = f"{STATE}/report.json"
LOCK = f"{STATE}/agent.lock"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
PROM = f"{TEXTFILE_DIR}/edgecheck.prom"
CONFIG = "/etc/default/edgecheck"
SERVICE = "edgecheck.service"
TIMER = "edgecheck.timer"
DIST_IN_CONTAINER = "/srv/dist"
REGION = "cn-hangzhou"
LAB_SERVERS = ("dns", "web", "ntp")
EXIT_BUSY = 75
NEWER_VERSION = f"{VERSION}.post1"  # > VERSION for dpkg and PEP 440

# Test-only drop-ins (the shipped timer waits 2 min after boot, then 5 min between runs).
TIMER_DROPIN = "/etc/systemd/system/edgecheck.timer.d/test-interval.conf"
TIMEOUT_DROPIN = "/etc/systemd/system/edgecheck.service.d/test-timeout.conf"
PORT_OWNERS_DROPIN = "/etc/systemd/system/edgecheck.service.d/port-owners.conf"
INTERVAL_S = 3
HANG_TIMEOUT_S = 8  # TimeoutStartSec for the hang test: well above a normal run here (~2 s)

# Something holding every inbound port of the running phase, as another user (nobody): the
# stand-in for kubelet, node-exporter and flannel.
LISTENERS = "edge-listeners.service"
LISTENER_TCP = (10250, 10255, 9100, 9445)
LISTENER_UDP = (8472,)
LISTENERS_PY = f"""
import signal, socket
held = []
for port in {LISTENER_TCP!r}:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    held.append(s)
for port in {LISTENER_UDP!r}:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    held.append(u)
signal.pause()
"""
LISTENERS_UNIT = """[Unit]
Description=Stand-in for kubelet, node-exporter and flannel (edgecheck test)

[Service]
User=nobody
Group=nogroup
ExecStart=/usr/bin/python3 /usr/local/lib/edge-listeners.py
"""

# chronyd without clock control (-x: the container has no CAP_SYS_TIME, and Debian's unit is
# skipped without it) and without sources, so `chronyc -n tracking` has a daemon to answer it.
CHRONY_CONF = "bindcmdaddress 127.0.0.1\ncmdport 323\n"
CHRONY_DROPIN = """[Unit]
ConditionCapability=
[Service]
ExecStart=
ExecStart=!/usr/sbin/chronyd -x -f /etc/chrony/test.conf
"""

RUN_LINE = re.compile(r"^(READY|NOT READY) \(fail (\d+), warn (\d+), pass (\d+), skip (\d+)\) in [0-9.]+s; "
                      rf"report {re.escape(REPORT)}; metrics {re.escape(PROM)}$")
BUSY_LINE = f"another edgecheck agent run holds {LOCK}; skipped this run"
CHANGE_PREFIXES = ("first run (no previous report): ", "readiness changed: ", "failing checks changed ")
AGENT_PREFIX = "edgecheck agent: "


# ------------------------------------------------------------------------------------------------
# Fixtures: the root file system (per session), the node (per module)


@pytest.fixture(scope="session")
def rootfs() -> Iterator[Path]:
    """The debootstrap root: built once per session, or kept in $EDGECHECK_NSPAWN_CACHE."""
    require(missing_prerequisites(), "systemd-nspawn container")
    recipe = RootfsRecipe(SUITE, host_debian_mirror())
    cache = rootfs_cache(os.environ)
    started = time.monotonic()
    if cache:
        root, built = ensure_rootfs(recipe, cache)
        print(f"\nrootfs {root}: {'built' if built else 'cached'} in {time.monotonic() - started:.1f}s")
        yield root
        return
    parent = Path(tempfile.mkdtemp(prefix="edgecheck-rootfs-", dir="/var/tmp"))
    try:
        root, _ = ensure_rootfs(recipe, parent)
        print(f"\nrootfs {root}: built in {time.monotonic() - started:.1f}s")
        yield root
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _lab_prerequisites() -> List[str]:
    from tests.lab.lab import missing_prerequisites as lab_missing

    # Only the servers this module starts (DNS, web, NTP) and the tools the lab itself uses.
    wanted = ("ip", "iptables", "openssl", "dnsmasq", "nginx", "chronyd", "ss", "sysctl")
    missing = [m for m in lab_missing() if m.split(" ")[0] in wanted or m.startswith(("root", "python"))]
    if not which("promtool"):
        missing.append("promtool (Debian package prometheus)")
    return missing


@dataclass
class Node:
    """The booted container with the lab around it, and what the tests learnt along the way."""

    ct: Container
    lab: Any
    deb: Path
    notes: Dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- operator actions

    def set_config(self, **values: str) -> None:
        """Edit /etc/default/edgecheck like an operator: the shipped comments stay, our
        assignments go at the end (replacing earlier ones of ours)."""
        text = self.ct.read(CONFIG)
        kept = [l for l in text.splitlines() if not re.match(r"^[A-Z_]+=", l)]
        current = dict(l.split("=", 1) for l in text.splitlines() if re.match(r"^[A-Z_]+=", l))
        current.update(values)
        lines = kept + [f"{k}={v}" for k, v in current.items() if v is not None and v != ""]
        self.ct.write(CONFIG, "\n".join(lines) + "\n")

    def healthy_config(self) -> Dict[str, str]:
        from tests.lab.lab import APISERVER_PUBLIC

        return {
            "EDGECHECK_REGION": REGION,
            "EDGECHECK_APISERVER": f"{APISERVER_PUBLIC}:6443",
            "EDGECHECK_APISERVER_CA": "/etc/edgecheck/cluster-ca.pem",
            "EDGECHECK_CA_BUNDLE": "/etc/edgecheck/lab-ca.pem",
            "EDGECHECK_TIMEOUT": "2",
        }

    def start_service(self, timeout: float = 120.0) -> Dict[str, str]:
        """`systemctl start edgecheck.service` (waits for the oneshot); its result properties.

        reset-failed first: it also clears systemd's start rate counter (StartLimitBurst=5 in
        10 s by default), which these back-to-back starts would hit and an operator would not."""
        self.ct.systemctl("reset-failed", SERVICE, check=False)
        self.ct.systemctl("start", SERVICE, check=False, timeout=timeout)
        return self.ct.show(SERVICE, "InvocationID", "Result", "ExecMainStatus", "ExecMainCode", "ActiveState")

    def report(self) -> Dict[str, Any]:
        return json.loads(self.ct.read(REPORT))

    def runs(self) -> "List[Run]":
        return journal_runs(self.ct.journal(f"--unit={SERVICE}"))

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; journal:\n"
                                     + self.ct.run(["journalctl", "--no-pager", "-u", SERVICE, "-u", TIMER, "-n", "40"],
                                                   check=False).stdout)
            time.sleep(0.2)

    def main_pid_of_listeners(self) -> int:
        return int(self.ct.show(LISTENERS, "MainPID")["MainPID"])

    def as_user(self, user: str, argv: List[str], **kw: Any) -> subprocess.CompletedProcess:
        group = self.ct.run(["id", "-gn", user]).stdout.strip()
        return self.ct.run(["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--", *argv], **kw)


@dataclass
class Run:
    invocation: str
    lines: List[Dict[str, Any]] = field(default_factory=list)  # the agent's journal entries
    systemd: List[str] = field(default_factory=list)  # PID 1's messages about this invocation

    @property
    def messages(self) -> List[str]:
        return [str(e["MESSAGE"]) for e in self.lines]

    @property
    def run_lines(self) -> List[str]:
        return [m[len(AGENT_PREFIX):] for m in self.messages if RUN_LINE.match(m[len(AGENT_PREFIX):])]

    def line(self, prefix: str) -> Optional[Dict[str, Any]]:
        return next((e for e in self.lines if str(e["MESSAGE"]).startswith(AGENT_PREFIX + prefix)), None)


def journal_runs(entries: List[Dict[str, Any]]) -> List[Run]:
    """The service's invocations in journal order, with the agent's lines and PID 1's messages."""
    runs: Dict[str, Run] = {}
    for e in entries:
        if e.get("SYSLOG_IDENTIFIER") == "edgecheck":
            inv = str(e.get("_SYSTEMD_INVOCATION_ID", ""))
            runs.setdefault(inv, Run(inv)).lines.append(e)
        elif e.get("UNIT") == SERVICE and e.get("INVOCATION_ID"):
            inv = str(e["INVOCATION_ID"])
            runs.setdefault(inv, Run(inv)).systemd.append(str(e.get("MESSAGE", "")))
    return list(runs.values())


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def node(rootfs: Path, dist: Path, tmp_path_factory) -> Iterator[Node]:  # noqa: F811
    require(_lab_prerequisites(), "lab")
    from tests.packaging.nspawn_lab import start_lab

    deb = dist / f"edgecheck_{VERSION}-1_{_debarch()}.deb"
    assert deb.is_file(), sorted(p.name for p in dist.iterdir())
    extra = tmp_path_factory.mktemp("nspawn-extra")
    ct = Container(rootfs, tmp_path_factory.mktemp("nspawn"), binds_ro=[(str(dist), DIST_IN_CONTAINER),
                                                                         (str(extra), "/srv/extra")])
    lab = None
    # The upgrade test's newer build (about 30 s of build.sh) runs while the other tests do.
    builder = ThreadPoolExecutor(max_workers=1)
    newer = builder.submit(build_deb_from_copy, tmp_path_factory.mktemp("newer-dist"), version=NEWER_VERSION,
                           arches=os.uname().machine)
    # A SIGTERM (CI timeout) must still stop the container: let pytest unwind the finalizers.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.monotonic()
    try:
        ct.start()
        lab = start_lab(ct, [REGION], LAB_SERVERS)
        n = Node(ct, lab, deb, notes={"extra": extra, "newer": newer})
        _prepare_node(n)
        print(f"\ncontainer {ct.name}: booted in {ct.boot_seconds:.2f}s, lab and node ready after "
              f"{time.monotonic() - started:.1f}s")
        yield n
    finally:
        ct.stop()  # first: the lab's teardown must not find the container's processes in its netns
        if lab is not None:
            lab.stop()
        signal.signal(signal.SIGTERM, previous)
        builder.shutdown(wait=True)
    assert ct.leftovers() == []


def _debarch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def _prepare_node(n: Node) -> None:
    """What the node has besides edgecheck: a prometheus user, chronyd, the port holders, CAs."""
    ct = n.ct
    # As Debian's prometheus packages create it (adduser --system --group, home /var/lib/prometheus).
    ct.run(["useradd", "--system", "--user-group", "--home-dir", "/var/lib/prometheus", "--no-create-home",
            "--shell", "/usr/sbin/nologin", "prometheus"])
    ct.write("/etc/chrony/test.conf", CHRONY_CONF)
    ct.write("/etc/systemd/system/chrony.service.d/test-no-clock-control.conf", CHRONY_DROPIN)
    ct.write("/usr/local/lib/edge-listeners.py", LISTENERS_PY)
    ct.write(f"/etc/systemd/system/{LISTENERS}", LISTENERS_UNIT)
    ct.write("/etc/edgecheck/lab-ca.pem", Path(n.lab.ca.cert).read_text())
    ct.write("/etc/edgecheck/cluster-ca.pem", Path(n.lab.cluster_ca.cert).read_text())
    ct.systemctl("daemon-reload")
    ct.systemctl("restart", "chrony.service", LISTENERS)

    def listening() -> bool:
        tcp = ct.run(["ss", "-Hltn"], check=False).stdout
        udp = ct.run(["ss", "-Hlun"], check=False).stdout
        return all(f":{p} " in tcp for p in LISTENER_TCP) and all(f":{p} " in udp for p in LISTENER_UDP)

    n.wait_for(listening, "the stand-in listeners", timeout=30)
    n.wait_for(lambda: ct.run(["chronyc", "-n", "tracking"], check=False).returncode == 0, "chronyd", timeout=30)


# ------------------------------------------------------------------------------------------------
# Step fixtures (module scope: each step happens once, in this order)


@pytest.fixture(scope="module")
def installed(node: Node) -> subprocess.CompletedProcess:
    proc = node.ct.run(["dpkg", "-i", f"{DIST_IN_CONTAINER}/{node.deb.name}"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def timer_runs(node: Node, installed) -> List[Run]:
    """Configure the region (and the lab's API server and CAs), enable --now the timer with a
    short interval, and let it fire twice. The timer is stopped (still enabled) afterwards so the
    next tests decide when runs happen."""
    node.set_config(**node.healthy_config())
    # An empty OnBootSec= resets *every* monotonic trigger of the timer (a second empty
    # assignment would drop the first new one), so: reset once, then set both.
    node.ct.write(TIMER_DROPIN, "[Timer]\nOnBootSec=\nOnBootSec=1s\n"
                                f"OnUnitActiveSec={INTERVAL_S}s\nRandomizedDelaySec=0\nAccuracySec=1ms\n")
    node.ct.systemctl("daemon-reload")
    node.ct.systemctl("enable", "--now", TIMER)
    node.wait_for(lambda: len([r for r in node.runs() if r.run_lines]) >= 2, "two timer runs", timeout=90)
    node.ct.systemctl("stop", TIMER)
    node.wait_for(lambda: node.ct.show(SERVICE, "ActiveState")["ActiveState"] != "activating", "the last run to end")
    return node.runs()


# ------------------------------------------------------------------------------------------------
# 1. install: timer present, not enabled


def test_install_creates_user_and_units_but_leaves_the_timer_disabled(node: Node, installed):
    ct = node.ct
    assert "Setting up edgecheck" in installed.stdout
    timer = ct.show(TIMER, "LoadState", "UnitFileState", "ActiveState")
    assert timer == {"LoadState": "loaded", "UnitFileState": "disabled", "ActiveState": "inactive"}, timer
    assert ct.show(SERVICE, "LoadState")["LoadState"] == "loaded"
    assert "edgecheck.timer" not in ct.systemctl("list-timers", "--all").stdout
    user = ct.run(["getent", "passwd", "edgecheck"]).stdout.strip().split(":")
    assert user[5:] == ["/var/lib/edgecheck", "/usr/sbin/nologin"] and int(user[2]) < 1000, user
    acl = ct.run(["getfacl", "--omit-header", "--absolute-names", TEXTFILE_DIR]).stdout
    assert "user:edgecheck:rwx" in acl.split(), acl
    assert not ct.exists(STATE)  # systemd creates it at the first start
    assert ct.run(["edgecheck", "--version"]).stdout.strip() == f"edgecheck, version {VERSION}"


def test_service_without_region_is_a_usage_error_and_marks_the_unit_failed(node: Node, installed):
    """Before configuration a manual start fails loudly (exit 2), which is what `failed` is for."""
    result = node.start_service()
    assert result["Result"] == "exit-code" and result["ExecMainStatus"] == "2", result
    run = next(r for r in node.runs() if r.invocation == result["InvocationID"])
    assert any("EDGECHECK_REGION" in m for m in run.messages), run.messages
    node.ct.systemctl("reset-failed", SERVICE)


# ------------------------------------------------------------------------------------------------
# 2. the timer fires; the first runs are READY


def test_timer_fires_after_the_region_is_set(node: Node, timer_runs: List[Run]):
    agent_runs = [r for r in timer_runs if r.run_lines]
    assert len(agent_runs) >= 2
    first = agent_runs[0]
    assert first.line("first run (no previous report): READY") is not None, first.messages
    assert all(r.run_lines[0].startswith("READY ") for r in agent_runs), [r.run_lines for r in agent_runs]
    timer = node.ct.show(TIMER, "UnitFileState", "LastTriggerUSec")
    assert timer["UnitFileState"] == "enabled" and timer["LastTriggerUSec"] not in ("", "n/a"), timer
    # started by the timer, not by us: PID 1 says so for each invocation
    for r in agent_runs:
        assert any(m.startswith("Starting edgecheck.service") for m in r.systemd), r.systemd
    report = node.report()
    assert report["ready"] is True and report["params"]["region"] == REGION and report["params"]["phase"] == "running"


# ------------------------------------------------------------------------------------------------
# 3. hardening as systemd applies it, and what the checks still see


def test_unit_hardening_as_systemd_loaded_it(node: Node, installed):
    props = node.ct.show(SERVICE, "User", "Group", "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities",
                         "ProtectSystem", "ProtectHome", "PrivateDevices", "PrivateTmp", "ProtectProc", "ProtectClock",
                         "RestrictNamespaces", "MemoryDenyWriteExecute", "SystemCallFilter", "SystemCallErrorNumber",
                         "TimeoutStartUSec", "SuccessExitStatus", "StateDirectory", "CacheDirectory", "ReadWritePaths",
                         "MemoryMax", "TasksMax", "Type", "Nice")
    assert props["User"] == "edgecheck" and props["Group"] == "edgecheck"
    assert props["NoNewPrivileges"] == "yes" and props["CapabilityBoundingSet"] == "" and props["AmbientCapabilities"] == ""
    assert (props["ProtectSystem"], props["ProtectHome"], props["PrivateDevices"], props["ProtectProc"]) == \
        ("strict", "yes", "yes", "invisible")
    assert props["RestrictNamespaces"] == "yes" and props["MemoryDenyWriteExecute"] == "yes"
    allowed = set(props["SystemCallFilter"].split())
    assert {"adjtimex", "clock_adjtime"} <= allowed  # the read-only clock calls, allowed back explicitly
    assert not {"settimeofday", "clock_settime", "reboot", "mount", "ptrace"} & allowed
    assert props["TimeoutStartUSec"] == "2min" and props["Type"] == "oneshot"
    assert set(props["SuccessExitStatus"].split()) >= {"1", "75"}
    assert TEXTFILE_DIR in props["ReadWritePaths"]
    # Set as configured, but NOT enforced on this host's cgroup v1 (no delegated memory/pids
    # controller in the container): only the configuration is checked.
    assert props["MemoryMax"] == str(256 * 1024 * 1024) and props["TasksMax"] == "64"


def _check(report: Dict[str, Any], check_id: str) -> Dict[str, Any]:
    for c in report["checks"]:
        if c["id"] == check_id:
            return c
    raise AssertionError(f"no check {check_id}: {[c['id'] for c in report['checks']]}")


def test_checks_see_what_they_need_under_the_hardening(node: Node, timer_runs):
    """The report of a timer run: sockets, the kernel clock, chronyd, tools and every endpoint."""
    report = node.report()
    listener_user = "nobody"
    for port in LISTENER_TCP:
        c = _check(report, f"inbound:{port}/tcp")
        ev = c["evidence"]
        assert c["status"] == "pass" and ev["socket_table"] == "psutil", c
        # README: without privileges the port check still sees the socket and its owner, not the process
        assert ev["owners_visible"] is False
        assert ev["sockets"] and all(s["pid"] is None and s.get("user") == listener_user for s in ev["sockets"]), ev
        assert "not visible without root (CAP_DAC_READ_SEARCH + CAP_SYS_PTRACE)" in c["message"] + json.dumps(ev)
    assert _check(report, "inbound:8472/udp")["status"] == "pass"
    clock = _check(report, "clock:local")
    kernel = clock["evidence"]["kernel"]
    assert "error" not in kernel and kernel.get("state"), clock  # adjtimex(2) answered under the filter
    chronyd = next(d for d in clock["evidence"]["daemons"] if d["name"] == "chronyd")
    assert "error" not in chronyd, clock  # chronyc ran and got an answer over 127.0.0.1:323
    # the host's kernel clock decides (unsynchronised here: warn); the lab's NTP servers agree with it
    assert clock["status"] in ("pass", "warn"), clock
    tools = {c["id"]: c for c in report["checks"] if c["kind"] == "tool"}
    for tool_id, exe in (("tool:iproute", "ip"), ("tool:chrony", "chronyc")):
        assert tools[tool_id]["status"] == "pass" and exe in tools[tool_id]["evidence"]["executables_found"], tools[tool_id]
    assert tools["tool:socat"]["status"] == "warn" and tools["tool:socat"]["reason"] == "tool-missing"
    endpoints = [c for c in report["checks"] if c["kind"] == "endpoint"]
    assert endpoints and all(c["status"] in ("pass", "skip") for c in endpoints), \
        [(c["id"], c["status"], c["reason"]) for c in endpoints if c["status"] not in ("pass", "skip")]
    assert report["summary"]["fail"] == 0


def test_clock_read_fails_visibly_when_the_unit_forbids_adjtimex(node: Node, timer_runs):
    """Negative control for the check above, and the reason the unit says ProtectClock=no:
    ProtectClock=yes filters adjtimex(2) out altogether, read-only calls included."""
    dropin = "/etc/systemd/system/edgecheck.service.d/test-protect-clock.conf"
    node.ct.write(dropin, "[Service]\nProtectClock=yes\n")
    node.ct.systemctl("daemon-reload")
    try:
        assert node.start_service()["Result"] == "success"
        clock = _check(node.report(), "clock:local")
    finally:
        node.ct.run(["rm", "-f", dropin])
        node.ct.systemctl("daemon-reload")
    assert clock["evidence"]["kernel"].get("error") == "adjtimex: Operation not permitted", clock["evidence"]
    assert node.start_service()["Result"] == "success"
    assert "error" not in _check(node.report(), "clock:local")["evidence"]["kernel"]


def test_clock_remediation_knows_chronyd_is_running(node: Node, timer_runs):
    """ProtectProc=invisible hides chronyd's process from the agent: an answering `chronyc
    tracking` must count as a running chronyd, or the advice says to install chrony."""
    clock = _check(node.report(), "clock:local")
    assert node.ct.show("chrony.service", "ActiveState")["ActiveState"] == "active"
    assert clock["reason"] == "clock-unsynchronised", clock  # this host's kernel clock is not synchronised
    assert "chronyd" in clock["evidence"]["running_time_daemons"], clock["evidence"]
    assert "chronyd is running but has not synchronised" in (clock.get("remediation") or ""), clock


# ------------------------------------------------------------------------------------------------
# 4. report and metrics files


def _stat(node: Node, path: str) -> Dict[str, str]:
    out = node.ct.run(["stat", "--format=%U %G %a %i", path]).stdout.split()
    return dict(zip(("user", "group", "mode", "inode"), out))


READER_PY = r"""
import json, os, sys, time
report, prom, stop = sys.argv[1:4]
reads = bad = 0
while not os.path.exists(stop):
    for path in (report, prom):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            bad += 1
            continue
        reads += 1
        ok = data.endswith(b"\n") and (json.loads(data)["schema"] == "edgecheck/report/v1" if path == report
                                       else b"edgecheck_ready" in data and b"edgecheck_last_run_timestamp_seconds" in data)
        bad += not ok
    time.sleep(0.001)
print(json.dumps({"reads": reads, "bad": bad}))
"""


def test_report_and_metrics_are_replaced_atomically_and_readable_by_prometheus(node: Node, timer_runs):
    ct = node.ct
    before = {p: _stat(node, p) for p in (REPORT, PROM)}
    for p, st in before.items():
        assert (st["user"], st["group"], st["mode"]) == ("edgecheck", "edgecheck", "644"), (p, st)
    assert _stat(node, STATE)["mode"] == "755" and _stat(node, STATE)["user"] == "edgecheck"
    # node_exporter runs as `prometheus`: it must list the directory and read both files
    ct.write("/usr/local/lib/reader.py", READER_PY)
    got = node.as_user("prometheus", ["cat", REPORT, PROM]).stdout
    assert '"schema": "edgecheck/report/v1"' in got and "edgecheck_ready" in got
    assert "edgecheck.prom" in node.as_user("prometheus", ["ls", TEXTFILE_DIR]).stdout
    # ... and must not be able to change them
    assert node.as_user("prometheus", ["sh", "-c", f": > {PROM}"], check=False).returncode != 0
    # A reader polling as `prometheus` through several runs never sees a partial or missing file.
    stop = "/tmp/edgecheck-reader-stop"
    reader = ct.popen(["setpriv", "--reuid=prometheus", "--regid=prometheus", "--init-groups", "--",
                       "python3", "/usr/local/lib/reader.py", REPORT, PROM, stop])
    try:
        for _ in range(3):
            assert node.start_service()["Result"] == "success"
    finally:
        ct.run(["touch", stop])
        out, err = reader.communicate(timeout=30)
        ct.run(["rm", "-f", stop])
    counts = json.loads(out.strip().splitlines()[-1])
    print(f"\nreader as prometheus during 3 runs: {counts}")
    assert counts["reads"] > 10 and counts["bad"] == 0, (counts, err)
    after = {p: _stat(node, p) for p in (REPORT, PROM)}
    for p in (REPORT, PROM):
        assert after[p]["inode"] != before[p]["inode"], f"{p} was rewritten in place, not replaced"
        assert (after[p]["user"], after[p]["mode"]) == ("edgecheck", "644")
    leftovers = ct.run(["find", STATE, TEXTFILE_DIR, "-name", ".*.tmp"]).stdout.split()
    assert leftovers == []


def test_metrics_pass_promtool(node: Node, timer_runs):
    prom = node.ct.read(PROM)
    proc = subprocess.run([which("promtool") or "promtool", "check", "metrics"], input=prom, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^edgecheck_ready(\{[^}]*\})? 1$", prom, re.M), prom[:2000]


# ------------------------------------------------------------------------------------------------
# 5. the journal: one line per run, a line when readiness changes; exit 1 is a successful run


def test_journal_has_one_line_per_run_and_one_when_readiness_changes(node: Node, timer_runs):
    from tests.lab.lab import CLOSED_ADDR

    node.set_config(EDGECHECK_APISERVER=f"{CLOSED_ADDR}:6443")  # nothing listens there: refused
    failing = node.start_service()
    node.set_config(**node.healthy_config())
    recovered = node.start_service()

    # "not ready" is a verdict, not a broken unit: exit 1 counts as success (SuccessExitStatus)
    assert (failing["ExecMainStatus"], failing["Result"], failing["ActiveState"]) == ("1", "success", "inactive"), failing
    assert (recovered["ExecMainStatus"], recovered["Result"]) == ("0", "success"), recovered
    runs = {r.invocation: r for r in node.runs()}
    bad = runs[failing["InvocationID"]]
    assert len(bad.run_lines) == 1 and bad.run_lines[0].startswith("NOT READY (fail 1,"), bad.messages
    change = bad.line("readiness changed: READY -> NOT READY; now failing: ")
    assert change is not None, bad.messages
    assert f"{CLOSED_ADDR}:6443/tcp (refused)" in str(change["MESSAGE"]), change["MESSAGE"]
    assert change["PRIORITY"] == "4"  # <4> prefix parsed by journald: warning
    good = runs[recovered["InvocationID"]]
    back = good.line("readiness changed: NOT READY -> READY; no longer failing: ")
    assert back is not None and back["PRIORITY"] == "5", good.messages
    # Every agent invocation so far: exactly one run line, and nothing but the known lines.
    for r in runs.values():
        if not r.lines or r.line("another edgecheck agent run holds") or any("EDGECHECK_REGION" in m for m in r.messages):
            continue
        assert len(r.run_lines) == 1, r.messages
        others = [m for m in r.messages if not RUN_LINE.match(m[len(AGENT_PREFIX):])]
        assert all(m[len(AGENT_PREFIX):].startswith(CHANGE_PREFIXES) for m in others), others
        assert all(str(e["PRIORITY"]) == "6" for e in r.lines if RUN_LINE.match(str(e["MESSAGE"])[len(AGENT_PREFIX):]))
        assert not any(m.startswith("<") for m in r.messages)  # the prefix is consumed, not printed


# ------------------------------------------------------------------------------------------------
# 6. a hung run is killed by TimeoutStartSec; the timer carries on


@pytest.fixture(scope="module")
def hung_run(node: Node, timer_runs) -> Dict[str, Any]:
    """A probe that cannot finish in time: the API server address is silently dropped by the
    lab's cloud firewall and the probe timeout is 60 s; TimeoutStartSec is cut to a few seconds
    with a drop-in. Started by the timer (short interval), observed while it hangs."""
    from tests.lab.lab import CLOSED_ADDR

    ct = node.ct
    out: Dict[str, Any] = {}
    ct.write(TIMEOUT_DROPIN, f"[Service]\nTimeoutStartSec={HANG_TIMEOUT_S}s\n")
    ct.systemctl("daemon-reload")
    before = {r.invocation for r in node.runs()}
    with node.lab.cloud_firewall([["INPUT", "-d", CLOSED_ADDR, "-p", "tcp", "--dport", "6443", "-j", "DROP"]]):
        node.set_config(EDGECHECK_APISERVER=f"{CLOSED_ADDR}:6443", EDGECHECK_TIMEOUT="60")
        ct.systemctl("start", TIMER)
        try:
            node.wait_for(lambda: ct.show(SERVICE, "ActiveState")["ActiveState"] == "activating", "a timer run")
            pid = node.wait_for(lambda: int(ct.show(SERVICE, "MainPID")["MainPID"]), "the run's main pid")
            node.wait_for(lambda: "python3" in ct.run(["cat", f"/proc/{pid}/comm"], check=False).stdout,
                          "the wrapper to exec python3", timeout=10)
            out["hung_invocation"] = ct.show(SERVICE, "InvocationID")["InvocationID"]
            out["status"] = ct.run(["cat", f"/proc/{pid}/status"]).stdout
            out["mountinfo"] = ct.run(["cat", f"/proc/{pid}/mountinfo"]).stdout
            out["comm"] = ct.run(["cat", f"/proc/{pid}/comm"]).stdout.strip()
            out["init_status"] = ct.run(["cat", "/proc/1/status"]).stdout
            # The hung process has read its configuration: the next run gets the healthy one.
            node.set_config(**node.healthy_config())
            hung_started = time.monotonic()

            def hung_run_ended() -> Optional[Run]:
                r = next((r for r in node.runs() if r.invocation == out["hung_invocation"]), None)
                return r if r is not None and any(m.startswith(("Failed", "Finished")) for m in r.systemd) else None

            # The journal, not `systemctl show`: the timer may start the next run right away.
            node.wait_for(hung_run_ended, "the hung run to end", timeout=HANG_TIMEOUT_S + 30)
            out["killed_after_s"] = time.monotonic() - hung_started

            def next_good_run() -> Optional[Run]:
                for r in node.runs():
                    if r.invocation not in before and r.invocation != out["hung_invocation"] and r.run_lines:
                        return r
                return None

            out["next_run"] = node.wait_for(next_good_run, "the next timer run", timeout=60)
        finally:
            ct.systemctl("stop", TIMER)
            node.wait_for(lambda: ct.show(SERVICE, "ActiveState")["ActiveState"] != "activating", "runs to end")
    out["runs"] = {r.invocation: r for r in node.runs()}
    ct.run(["rm", "-f", TIMEOUT_DROPIN])
    ct.systemctl("daemon-reload")
    ct.systemctl("reset-failed", SERVICE, check=False)
    return out


def _status_field(status: str, key: str) -> str:
    m = re.search(rf"^{key}:\s*(.*)$", status, re.M)
    assert m, f"{key} not in /proc/PID/status"
    return m.group(1).strip()


def test_the_running_agent_is_the_edgecheck_user_with_no_privileges(node: Node, hung_run):
    """Seen from outside while it runs: what the unit promised, applied by systemd."""
    status = hung_run["status"]
    uid = node.ct.run(["id", "-u", "edgecheck"]).stdout.strip()
    gid = node.ct.run(["id", "-g", "edgecheck"]).stdout.strip()
    assert hung_run["comm"] == "python3"
    assert _status_field(status, "Uid").split() == [uid] * 4
    assert _status_field(status, "Gid").split() == [gid] * 4
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(_status_field(status, cap), 16) == 0, (cap, status)
    assert _status_field(status, "NoNewPrivs") == "1"
    assert _status_field(status, "Seccomp") == "2"  # filter mode
    # the unit's own filters come on top of the ones nspawn gives every process in the container
    assert int(_status_field(status, "Seccomp_filters")) > int(_status_field(hung_run["init_status"], "Seccomp_filters"))
    # mountpoint -> options of the topmost mount there (later lines of mountinfo stack on earlier)
    options = {line.split()[4]: line.split()[5].split(",") for line in hung_run["mountinfo"].splitlines()}
    assert "ro" in options["/"], options["/"]  # ProtectSystem=strict
    for writable in (STATE, TEXTFILE_DIR, "/var/cache/edgecheck"):  # StateDirectory, ReadWritePaths, CacheDirectory
        assert "rw" in options[writable], (writable, options.get(writable))
    assert {"/home", "/root"} <= set(options)  # ProtectHome=yes mounts an inaccessible node over them


def test_hung_run_is_killed_by_the_start_timeout_and_the_timer_runs_again(node: Node, hung_run):
    hung = hung_run["runs"][hung_run["hung_invocation"]]
    assert any("start operation timed out. terminating" in m.lower() for m in hung.systemd), hung.systemd
    assert "edgecheck.service: Failed with result 'timeout'." in hung.systemd, hung.systemd
    assert hung.run_lines == []  # killed before it could write anything
    print(f"\nhung run killed {hung_run['killed_after_s']:.1f}s after the healthy config was restored")
    nxt = hung_run["next_run"]
    assert any(m.startswith("Starting edgecheck.service") for m in nxt.systemd)
    assert nxt.run_lines and nxt.run_lines[0].startswith("READY "), nxt.messages
    # the lock of the killed run did not outlive it
    assert nxt.line("another edgecheck agent run holds") is None


# ------------------------------------------------------------------------------------------------
# 7. two runs at once


def test_second_start_while_a_run_holds_the_lock_exits_75_and_counts_as_success(node: Node, hung_run):
    """A manual `edgecheck agent` (as the edgecheck user, slowed down by a dropped API server)
    holds the lock; the unit started meanwhile reports it and exits 75 = success."""
    from tests.lab.lab import CLOSED_ADDR

    ct = node.ct
    with node.lab.cloud_firewall([["INPUT", "-d", CLOSED_ADDR, "-p", "tcp", "--dport", "6443", "-j", "DROP"]]):
        env = " ".join(f"{k}={v}" for k, v in {**node.healthy_config(), "EDGECHECK_APISERVER": f"{CLOSED_ADDR}:6443",
                                               "EDGECHECK_TIMEOUT": "30", "HOME": STATE}.items())
        manual = ct.popen(["sh", "-c", f"echo $$; exec setpriv --reuid=edgecheck --regid=edgecheck --init-groups "
                                       f"-- env {env} edgecheck agent"])
        try:
            pid = int(manual.stdout.readline().strip())
            inode = _stat(node, LOCK)["inode"]
            node.wait_for(lambda: any(l.split()[4] == str(pid) and l.split()[5].endswith(f":{inode}")
                                      for l in ct.read("/proc/locks").splitlines() if "FLOCK" in l),
                          "the manual run to hold the lock", timeout=30)
            result = node.start_service()
        finally:
            ct.run(["sh", "-c", f"kill {pid}"], check=False)  # the builtin: no procps in the root
            manual.communicate(timeout=30)
    assert (result["ExecMainStatus"], result["Result"], result["ActiveState"]) == (str(EXIT_BUSY), "success", "inactive"), result
    run = next(r for r in node.runs() if r.invocation == result["InvocationID"])
    assert run.messages == [AGENT_PREFIX + BUSY_LINE], run.messages
    assert run.lines[0]["PRIORITY"] == "5"


# ------------------------------------------------------------------------------------------------
# 8. the optional port-owners drop-in


def test_port_owners_dropin_names_another_users_process(node: Node, hung_run):
    ct = node.ct
    ct.run(["install", "-D", "-m", "0644", "/usr/share/doc/edgecheck/examples/port-owners.conf", PORT_OWNERS_DROPIN])
    ct.systemctl("daemon-reload")
    try:
        props = ct.show(SERVICE, "CapabilityBoundingSet", "AmbientCapabilities", "ProtectProc")
        assert set(props["AmbientCapabilities"].split()) == {"cap_dac_read_search", "cap_sys_ptrace"}, props
        result = node.start_service()
        assert result["Result"] == "success", result
        report = node.report()
    finally:
        ct.run(["rm", "-f", PORT_OWNERS_DROPIN])
        ct.systemctl("daemon-reload")
    listener = node.main_pid_of_listeners()
    for port in LISTENER_TCP:
        c = _check(report, f"inbound:{port}/tcp")
        ev = c["evidence"]
        assert ev["owners_visible"] is True, c
        assert [s["pid"] for s in ev["sockets"]] == [listener], ev
        s = ev["sockets"][0]
        assert s["process"] == "python3" and s["user"] == "nobody" and s.get("unit") == LISTENERS, s
        assert f"pid {listener}" in c["message"], c["message"]
    # and without the drop-in, the next run is back to "not visible"
    assert node.start_service()["Result"] == "success"
    assert _check(node.report(), "inbound:10250/tcp")["evidence"]["owners_visible"] is False


# ------------------------------------------------------------------------------------------------
# 9. upgrade keeps the configuration; purge removes everything


@pytest.fixture(scope="module")
def newer_deb(node: Node) -> Path:
    """The same source with a higher version, built by packaging/build.sh (deb, this arch only);
    started in the background when the node came up."""
    deb = node.notes["newer"].result(timeout=900)
    shutil.copy(deb, node.notes["extra"] / deb.name)
    return deb


def test_upgrade_keeps_a_changed_configuration(node: Node, hung_run, newer_deb: Path):
    ct = node.ct
    config_before = ct.read(CONFIG)
    assert "EDGECHECK_REGION=cn-hangzhou" in config_before
    proc = ct.run(["dpkg", "-i", f"/srv/extra/{newer_deb.name}"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    new_version = NEWER_VERSION
    assert ct.run(["dpkg-query", "-W", "-f=${Version}", "edgecheck"]).stdout == f"{new_version}-1"
    assert ct.read(CONFIG) == config_before
    assert ct.run(["sh", "-c", "ls /etc/default/edgecheck.dpkg-* 2>/dev/null || true"]).stdout == ""
    assert ct.show(TIMER, "UnitFileState")["UnitFileState"] == "enabled"
    result = node.start_service()
    assert result["Result"] == "success" and result["ExecMainStatus"] == "0", result
    report = node.report()
    assert report["agent"]["version"] == new_version and report["ready"] is True


def test_remove_keeps_configuration_and_a_reinstall_is_usable(node: Node, hung_run, newer_deb):
    """`dpkg -r` stops and masks the units (their files are gone) and keeps the conffile; installing
    again unmasks them, so the operator's enabled timer is back without any action."""
    ct = node.ct
    config = ct.read(CONFIG)
    proc = ct.run(["dpkg", "-r", "edgecheck"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ct.read(CONFIG) == config  # a conffile: kept until purge
    assert ct.show(TIMER, "LoadState")["LoadState"] in ("masked", "not-found")
    proc = ct.run(["dpkg", "-i", f"/srv/extra/{newer_deb.name}"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    timer = ct.show(TIMER, "LoadState", "UnitFileState")
    assert timer == {"LoadState": "loaded", "UnitFileState": "enabled"}, timer
    assert ct.show(SERVICE, "LoadState")["LoadState"] == "loaded"
    result = node.start_service()
    assert result["Result"] == "success" and result["ExecMainStatus"] == "0", result


def test_purge_removes_state_files_and_units(node: Node, hung_run, newer_deb):
    ct = node.ct
    ct.systemctl("start", TIMER)  # an operator purges a node whose timer is running
    proc = ct.run(["dpkg", "--purge", "edgecheck"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ct.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "edgecheck"], check=False).stdout.strip() in ("", "un")
    for path in (STATE, "/var/cache/edgecheck", PROM, CONFIG, "/usr/bin/edgecheck", "/usr/lib/edgecheck",
                 "/lib/systemd/system/edgecheck.service", "/lib/systemd/system/edgecheck.timer",
                 "/etc/systemd/system/timers.target.wants/edgecheck.timer", "/usr/lib/sysusers.d/edgecheck.conf",
                 "/usr/lib/tmpfiles.d/edgecheck.conf"):
        assert not ct.exists(path), path
    for unit in (SERVICE, TIMER):
        props = ct.show(unit, "LoadState", "ActiveState")
        assert props == {"LoadState": "not-found", "ActiveState": "inactive"}, (unit, props)
    assert ct.run(["find", "/etc/systemd/system", "/var/lib/systemd/deb-systemd-helper-enabled",
                   "/var/lib/systemd/deb-systemd-helper-masked", "-name", "edgecheck*", "-not", "-path", "*.d"],
                  check=False).stdout.split() == []
    # no stale grant: the kept system user may no longer write into node_exporter's directory
    acl = ct.run(["getfacl", "--omit-header", "--absolute-names", TEXTFILE_DIR], check=False).stdout
    assert "user:edgecheck" not in acl, acl
    # Debian policy: the system user is kept (its uid may still own files elsewhere)
    assert ct.run(["getent", "passwd", "edgecheck"], check=False).returncode == 0
    assert ct.run(["find", "/", "-xdev", "-user", "edgecheck"], check=False).stdout.split() == []


# ------------------------------------------------------------------------------------------------
# Teardown guarantees


def test_container_teardown_leaves_nothing_even_when_the_test_fails(rootfs: Path, tmp_path):
    """A throwaway container stopped by an exception: no process, cgroup, mount or netns stays."""
    require(missing_prerequisites(), "systemd-nspawn container")
    from tests.packaging.nspawn_lab import ContainerNetns

    ct = Container(rootfs, tmp_path)
    netns = None
    with pytest.raises(RuntimeError, match="a failing test"):
        with ct:
            leader = ct.leader
            netns = ContainerNetns(f"eclab-{ct.name[-8:]}-n", leader)
            netns.create()
            cgroups = list(ct.cgroups)
            assert cgroups and all(d.is_dir() for d in cgroups)
            assert ct.run(["systemctl", "is-system-running"], check=False).stdout.strip() in ("running", "degraded")
            raise RuntimeError("a failing test")
    netns.delete()
    assert ct.leftovers() == []
    assert not any(d.exists() for d in cgroups)
    assert not Path(f"/run/netns/{netns.name}").exists()
    assert not Path(f"/proc/{leader}").exists() or "Z" in Path(f"/proc/{leader}/stat").read_text().rsplit(")", 1)[1][:3]
