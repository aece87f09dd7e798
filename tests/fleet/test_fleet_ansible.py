"""The Ansible role and playbook, for real: ansible-core from PyPI, three SSH nodes, one fault.

The controller (its own lab namespace) runs packaging/ansible/site.yml against three node
namespaces, each with its own sshd and hostname; the nodes run the edgecheck zipapp (built with
packaging/build.sh zipapp) against the integration lab's DNS and endpoints. fleet-node-3's DNS is
black-holed by a DROP rule at the site (the cloud namespace), so the fleet summary must show
exactly fleet-node-3 under the DNS cause, and only it.

Runs, in order, against fresh nodes: check mode (nothing may be installed or written), a real
run (the summary), a second real run (the install reports no change: idempotent).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from tests.lab.lab import APISERVER_PUBLIC, RAVEN_ADDR, Lab, missing_prerequisites

from tests.fleet.fleetfixtures import validate_summary
from tests.fleet.htmlcheck import check_page_in_chromium, require_chromium
from tests.fleet.site_lab import SiteLab, prerequisites
from tests.prereq import require

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_VENV = REPO / ".venv-ansible"
ANSIBLE_CORE = "ansible-core>=2.16,<2.20"  # 2.16-2.19 run on the Python 3.11 controller of CI
PLAYBOOK = REPO / "packaging" / "ansible" / "site.yml"
FAULTY = "fleet-node-3"
DNS_REASONS = ("dns-timeout", "dns-error", "nxdomain")


def _require(missing: List[str]) -> None:
    require(missing, "Ansible site test")


def ansible_playbook() -> Path:
    """ansible-core in its own virtual environment (not a project dependency)."""
    binary = ANSIBLE_VENV / "bin" / "ansible-playbook"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(ANSIBLE_VENV)], check=True, timeout=300)
        subprocess.run([str(ANSIBLE_VENV / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", ANSIBLE_CORE], check=True, timeout=900)
    return binary


def build_zipapp(dist: Path) -> Path:
    arch = os.uname().machine
    proc = subprocess.run(["sh", str(REPO / "packaging" / "build.sh"), "zipapp"], cwd=REPO, capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, ARCHES=arch, DIST=str(dist)))
    assert proc.returncode == 0, proc.stderr
    return dist / f"edgecheck-{arch}.pyz"


@pytest.fixture(scope="module")
def site() -> Iterator[SiteLab]:
    _require(missing_prerequisites() + prerequisites())
    workdir = Path(tempfile.mkdtemp(prefix="eclab-fleet-"))
    os.chmod(workdir, 0o755)
    lab = Lab(regions=("cn-hangzhou",))
    site = SiteLab(lab, workdir)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        lab.start(servers=("dns", "web", "ntp", "ike", "tcp"))
        site.start()
        yield site
    finally:
        site.stop()
        lab.stop()
        signal.signal(signal.SIGTERM, previous)
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Runs:
    def __init__(self, site: SiteLab, playbook: Path, zipapp: Path, logs: Path) -> None:
        self.site = site
        self.logs = logs  # kept by pytest after the run (its tmp_path_factory)
        self.playbook = playbook
        self.zipapp = zipapp
        self.dir = site.workdir / "ansible"
        self.dir.mkdir()
        self.fleet_dir = self.dir / "fleet"
        self.results: Dict[str, subprocess.CompletedProcess] = {}
        self.after_check: List[str] = []  # what existed on the nodes and the controller after --check
        self._configure()
        self.controller = self.controller_vars()

    def _configure(self) -> None:
        d = self.dir
        for sub in ("home", "local-tmp", "remote-tmp", "controller-cache"):
            (d / sub).mkdir(mode=0o700)
        (d / "ansible.cfg").write_text("\n".join([
            "[defaults]",
            f"inventory = {d / 'inventory.yml'}",
            "forks = 10",
            f"local_tmp = {d / 'local-tmp'}",
            f"remote_tmp = {d / 'remote-tmp'}",  # nodes share this machine's file system
            "retry_files_enabled = False",
            "interpreter_python = /usr/bin/python3",
            "nocows = 1",
            "[ssh_connection]",
            f"ssh_args = -F {self.site.ssh_config} -o ControlMaster=no",
            "pipelining = True",
            "",
        ]))
        lab = self.site.lab
        hosts = {n.name: {"ansible_host": n.address} for n in self.site.nodes}
        per_node = str(self.site.workdir) + "/{{ inventory_hostname }}"
        inventory = {"edge_nodes": {"hosts": hosts, "vars": {
            "ansible_user": "root",
            # Nodes share this machine's file system: every node path is its own.
            "edgecheck_install_dir": per_node + "/opt",
            "edgecheck_cache_dir": per_node + "/cache",
            "edgecheck_report_path": per_node + "/report/preflight.json",
            "edgecheck_python": "/usr/bin/python3",
            # The site's inputs: the lab's cluster.
            "edgecheck_region": "cn-hangzhou",
            "edgecheck_mode": "public",
            "edgecheck_phase": "join",
            "edgecheck_k8s_version": "1.28",
            "edgecheck_apiserver": APISERVER_PUBLIC,
            "edgecheck_apiserver_ca": str(lab.cluster_ca.cert),
            "edgecheck_raven_gateways": [RAVEN_ADDR],
            "edgecheck_timeout": 2,
            "edgecheck_ca_bundle": str(lab.ca.cert),
            "edgecheck_site": "lab site",
        }}}
        (d / "inventory.yml").write_text(json.dumps(inventory, indent=2))  # JSON is YAML

    def env(self) -> Dict[str, str]:
        d = self.dir
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TERM")}
        return {
            **keep,
            "HOME": str(d / "home"),
            "ANSIBLE_CONFIG": str(d / "ansible.cfg"),
            "ANSIBLE_HOME": str(d / "home" / ".ansible"),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def controller_vars(self) -> Dict[str, object]:
        """The role's default runs `<python> <zipapp> fleet` on the controller: the same zipapp."""
        return {"edgecheck_controller_environment": {"EDGECHECK_CACHE_DIR": str(self.dir / "controller-cache")}}

    def play(self, label: str, *extra: str) -> subprocess.CompletedProcess:
        extra_vars = {
            "edgecheck_become": False,  # connected as root
            "edgecheck_dist_dir": str(self.zipapp.parent),
            "edgecheck_zipapp_src": str(self.zipapp),
            "edgecheck_fleet_dir": str(self.fleet_dir),
            **self.controller,
        }
        argv = [str(self.playbook), str(PLAYBOOK), "-e", json.dumps(extra_vars), *extra]
        proc = self.site.on_controller(argv, self.env())
        (self.logs / f"{label}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        self.results[label] = proc
        return proc


def task_results(output: str, task: str) -> Dict[str, str]:
    """host -> ok / changed / skipping / failed for one task in default-callback output."""
    m = re.search(r"^TASK \[[^\]]*" + re.escape(task) + r"[^\]]*\] \*+\n(.*?)(?=^TASK |^PLAY RECAP|^RUNNING HANDLER)",
                  output, re.S | re.M)
    assert m, f"task {task!r} not in the output:\n{output[-4000:]}"
    out = {}
    for status, host in re.findall(r"^(ok|changed|skipping|failed|fatal): \[([^\]]+?)(?: -> [^\]]+)?\]", m.group(1), re.M):
        out[host] = status
    return out


@pytest.fixture(scope="module")
def runs(site: SiteLab, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    playbook = ansible_playbook()
    zipapp = build_zipapp(tmp_path_factory.mktemp("dist"))
    runs = Runs(site, playbook, zipapp, tmp_path_factory.mktemp("ansible-logs"))
    faulty = next(n for n in site.nodes if n.name == FAULTY)
    with site.dns_blackhole(faulty):
        runs.play("check", "--check")
        runs.after_check = sorted(str(p) for p in site.workdir.glob("fleet-node-*/*") if p.name in ("opt", "cache", "report"))
        runs.after_check += sorted(str(p) for p in runs.fleet_dir.glob("**/*"))
        runs.play("first")
        runs.play("second")
    return runs


def _explain(runs: Runs, label: str) -> str:
    proc = runs.results[label]
    return f"rc={proc.returncode}\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"


def test_nodes_have_their_own_hostname_over_ssh(site: SiteLab) -> None:
    assert site.nodes
    for node in site.nodes:
        proc = site.ssh(node, "hostname")
        assert proc.returncode == 0 and proc.stdout.strip() == node.name, (proc.stderr, site.sshd_log(node))


def test_check_mode_installs_and_writes_nothing(runs: Runs) -> None:
    proc = runs.results["check"]
    assert proc.returncode == 0, _explain(runs, "check")
    copy = task_results(proc.stdout, "Copy the edgecheck zipapp")
    assert copy == {n.name: "changed" for n in runs.site.nodes}, _explain(runs, "check")  # would change
    assert task_results(proc.stdout, "Run edgecheck") == {n.name: "skipping" for n in runs.site.nodes}
    assert runs.after_check == []  # no install dir, cache, report, fetched report or summary


def test_every_node_is_checked_and_the_summary_names_exactly_the_faulty_node(runs: Runs) -> None:
    proc = runs.results["first"]
    assert proc.returncode == 0, _explain(runs, "first")  # not ready is an answer, not a failed play
    assert task_results(proc.stdout, "Run edgecheck") == {n.name: "ok" for n in runs.site.nodes}
    assert re.search(r"fleet-node-3 +: ok=\d+ +changed=\d+ +unreachable=0 +failed=0", proc.stdout), proc.stdout[-2000:]

    # Each node's own report, fetched to the controller, says who ran it.
    for node in runs.site.nodes:
        report = json.loads((runs.fleet_dir / "reports" / f"{node.name}.json").read_text())
        assert report["host"]["hostname"] == node.name
        assert report["ready"] is (node.name != FAULTY), [(c["id"], c["status"], c["reason"]) for c in report["checks"]
                                                           if c["status"] == "fail"]

    summary = validate_summary(json.loads((runs.fleet_dir / "fleet.json").read_text()))
    assert summary["counts"]["nodes"] == 3 and summary["counts"]["not_ready"] == 1
    assert summary["site"] == "lab site" and summary["exit_code"] == 1
    assert [(n["hostname"], n["ready"]) for n in summary["nodes"]] == [
        ("fleet-node-3", False), ("fleet-node-1", True), ("fleet-node-2", True)]
    dns_causes = [c for c in summary["causes"] if c["reason"] in DNS_REASONS]
    assert dns_causes, json.dumps(summary["causes"], indent=1)[:3000]
    # Exactly the faulty node under the DNS cause(s) — with or without `findings` in the reports.
    assert all(c["nodes"] == [FAULTY] for c in dns_causes), dns_causes
    assert {c["reason"] for c in dns_causes} == {"dns-timeout"}
    assert all(c["nodes"] == [FAULTY] for c in summary["causes"]), summary["causes"]
    assert summary["flags"]["mixed"] == {} and not summary["flags"]["mixed_versions"]

    # The controller's text summary (shown by the play) and the HTML file.
    assert "edgecheck fleet (lab site): 3 nodes, 2 ready, 1 NOT READY" in proc.stdout
    html = (runs.fleet_dir / "fleet.html").read_text()
    assert 'class="matrix"' in html and ">fleet-node-3</th>" in html


def test_second_run_is_idempotent(runs: Runs) -> None:
    proc = runs.results["second"]
    assert proc.returncode == 0, _explain(runs, "second")
    for task in ("Create the install directory", "Create the zipapp's cache directory", "Copy the edgecheck zipapp",
                 "Create the report directory"):
        assert task_results(proc.stdout, task) == {n.name: "ok" for n in runs.site.nodes}, (task, _explain(runs, "second"))
    assert "edgecheck fleet (lab site): 3 nodes, 2 ready, 1 NOT READY" in proc.stdout


def test_the_site_summary_renders_in_chromium(runs: Runs) -> None:
    """The test fleet's own HTML summary, as a person opens it; screenshots kept with the logs."""
    require_chromium()
    summary = json.loads((runs.fleet_dir / "fleet.json").read_text())
    shown = check_page_in_chromium(runs.fleet_dir / "fleet.html", runs.logs, {
        "columns": [c["id"] for c in summary["causes"]],
        "rows": [FAULTY],
        "nodes": 3,
    }, "site")
    assert shown["title"] == "edgecheck fleet (lab site): 3 nodes, 2 ready, 1 NOT READY"
    assert (runs.logs / "site-screen.png").stat().st_size > 10_000
