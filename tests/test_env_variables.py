"""Every EDGECHECK_* variable the README names works, each through the real entry point that reads
it: one parametrised test whose cases come from the README itself. A variable added to the README
without a case here fails, and so does a variable the product reads that the README does not name.

Each case sets a value different from the default and checks its effect, so a variable the code
silently ignores fails. CLI cases run the real CLI in an empty network namespace (tests/emptyns.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Set
from unittest import mock

import click
import pytest

from edgecheck.cli import main
from edgecheck.reach import protocol as wire
from tests import emptyns
from tests.cluster_inputs import nodetrees
from tests.cluster_inputs.fixtures import b64, kubeconfig, make_ca
from tests.packaging import nspawn_helpers
from tests.schema_check import assert_valid_report

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
VARIABLE = re.compile(r"\bEDGECHECK_[A-Z0-9_]*[A-Z0-9]\b")
README_VARIABLES = sorted(set(VARIABLE.findall(README)))
REGION = ("--region", "cn-hangzhou")
RUN = ("run", *REGION, "--timeout", "1")


def plan(env: Dict[str, str], *args: str) -> dict:
    proc = emptyns.cli("targets", "--format", "json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ids(doc: dict) -> List[str]:
    out = [t["id"] for t in doc["targets"]]
    assert out
    return out


def report(env: Dict[str, str], *args: str, code: int = 1) -> dict:
    proc = emptyns.cli(*RUN, "--format", "json", *args, env=env)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    return assert_valid_report(proc.stdout)


def ca_file(tmp_path: Path) -> str:
    return make_ca(str(tmp_path), "env-ca")


# ------------------------------------------------------------------------------- one case each

def case_region(tmp_path: Path) -> None:
    assert plan({"EDGECHECK_REGION": "cn-beijing"})["params"]["region"] == "cn-beijing"


def case_mode(tmp_path: Path) -> None:
    doc = plan({"EDGECHECK_MODE": "dedicated"}, *REGION)
    assert doc["params"]["mode"] == "dedicated"
    assert "endpoint:registry-cn-hangzhou-vpc.ack.aliyuncs.com:443/tcp" in ids(doc)


def case_phase(tmp_path: Path) -> None:
    doc = plan({"EDGECHECK_PHASE": "running"}, *REGION)
    inbound = [t for t in doc["targets"] if t["kind"] == "inbound"]
    assert doc["params"]["phase"] == "running" and inbound
    assert {t["expect"] for t in inbound} == {"listening"}


def case_k8s_version(tmp_path: Path) -> None:
    doc = plan({"EDGECHECK_K8S_VERSION": "1.24"}, *REGION)
    assert doc["params"]["k8s_version"] == "1.24"
    assert "endpoint:cs-anony.cn-hangzhou.aliyuncs.com:80/tcp" in ids(doc)  # port 80 rules before 1.26


def case_apiserver(tmp_path: Path) -> None:
    doc = plan({"EDGECHECK_APISERVER": "203.0.113.4:443"}, *REGION)
    assert "endpoint:203.0.113.4:443/tcp" in ids(doc) and doc["params"]["apiserver_source"] == "--apiserver"


def case_kubeconfig(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig("https://203.0.113.5:6443", ca_data=b64(ca_file(tmp_path))))
    doc = plan({"EDGECHECK_KUBECONFIG": str(config)}, *REGION)
    assert "endpoint:203.0.113.5:6443/tcp" in ids(doc)
    assert str(config) in doc["params"]["apiserver_source"]


def case_node_root(tmp_path: Path) -> None:
    root = tmp_path / "node"
    nodetrees.kubeadm_node(str(root), ca_file(tmp_path), server="https://203.0.113.7:6443")
    doc = plan({"EDGECHECK_NODE_ROOT": str(root)}, *REGION, "--phase", "running")
    assert "endpoint:203.0.113.7:6443/tcp" in ids(doc)
    assert doc["params"]["apiserver_source"].startswith("discovered: "), doc["params"]


def case_raven_gateway(tmp_path: Path) -> None:
    doc = plan({"EDGECHECK_RAVEN_GATEWAY": "203.0.113.1,203.0.113.2"}, *REGION)
    assert doc["params"]["raven_gateways"] == ["203.0.113.1", "203.0.113.2"]
    assert {"endpoint:203.0.113.1:4500/udp", "endpoint:203.0.113.2:4500/udp"} <= set(ids(doc))


def case_tunnel_server(tmp_path: Path) -> None:
    doc = plan({"EDGECHECK_TUNNEL_SERVER": "203.0.113.3"}, *REGION, "--k8s-version", "1.24")
    assert "endpoint:203.0.113.3:10262/tcp" in ids(doc)


def case_network_plugin(tmp_path: Path) -> None:
    doc = plan({"EDGECHECK_NETWORK_PLUGIN": "terway-edge"}, *REGION)
    assert doc["params"]["network_plugin"] == "terway-edge"
    assert "inbound:10250/tcp" in ids(doc) and "inbound:8472/udp" not in ids(doc)


def case_self_host_ntp(tmp_path: Path) -> None:
    ntp = [t for t in plan({"EDGECHECK_SELF_HOST_NTP": "true"}, *REGION)["targets"] if t["probe"] == "ntp"]
    assert ntp and {t["skip"]["reason"] for t in ntp} == {"not-applicable"}


def case_targets_file(tmp_path: Path) -> None:
    files = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.toml"
        path.write_text(f'[[endpoint]]\nid = "own-{name}"\nname = "Mirror {name}"\n'
                        f'host = "{name}.mirror.example.test"\nports = [443]\n')
        files.append(str(path))
    doc = plan({"EDGECHECK_TARGETS_FILE": ":".join(files)}, *REGION)
    assert {"endpoint:a.mirror.example.test:443/tcp", "endpoint:b.mirror.example.test:443/tcp"} <= set(ids(doc))


def case_timeout(tmp_path: Path) -> None:
    proc = emptyns.cli("run", *REGION, "--format", "json", env={"EDGECHECK_TIMEOUT": "0.7"})
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["params"]["timeout"] == 0.7


def case_format(tmp_path: Path) -> None:
    proc = emptyns.cli(*RUN, env={"EDGECHECK_FORMAT": "prometheus"})
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("# HELP edgecheck_ready ") and "\nedgecheck_ready 0\n" in proc.stdout


def case_output(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = emptyns.cli(*RUN, env={"EDGECHECK_OUTPUT": str(out)})
    assert proc.returncode == 1, proc.stderr
    assert_valid_report(out.read_text())


def case_ca_bundle(tmp_path: Path) -> None:
    ca = ca_file(tmp_path)
    params = report({"EDGECHECK_CA_BUNDLE": ca})["params"]
    assert (params["trust"], params["ca_bundle"]) == ("--ca-bundle", ca)


def case_apiserver_ca(tmp_path: Path) -> None:
    ca = ca_file(tmp_path)
    params = report({"EDGECHECK_APISERVER_CA": ca}, "--apiserver", "203.0.113.4")["params"]
    assert params["apiserver_ca"] == ca


def case_source_cidr(tmp_path: Path) -> None:
    params = report({"EDGECHECK_SOURCE_CIDR": "198.51.100.0/24,203.0.113.0/24"})["params"]
    assert params["source_cidrs"] == ["198.51.100.0/24", "203.0.113.0/24"]


def listen_document(env: Dict[str, str]) -> dict:
    # In the empty namespace nothing can reach the ports, so listen exits 1 after its duration.
    proc = emptyns.cli("listen", *REGION, "--format", "json", env={"EDGECHECK_DURATION": "0.5", **env})
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout)


def case_token(tmp_path: Path) -> None:
    token = "env-token-0123456789"
    doc = listen_document({"EDGECHECK_TOKEN": token})
    assert doc["token_fingerprint"] == wire.key_fingerprint(wire.derive_key(token))
    assert token not in json.dumps(doc)


def case_duration(tmp_path: Path) -> None:
    doc = listen_document({"EDGECHECK_DURATION": "0.7"})
    assert (doc["duration_s"], doc["stop_reason"]) == (0.7, "duration"), doc


def case_strict(tmp_path: Path) -> None:
    # What --strict does to the exit code needs a run with only warnings: the lab
    # (tests/lab/test_cli_wiring_lab.py). Here: the variable reaches the run.
    assert report({"EDGECHECK_STRICT": "1"})["params"]["strict"] is True
    assert report({})["params"]["strict"] is False


def case_debug(tmp_path: Path) -> None:
    injected = ("-c", "import edgecheck.plan as p\n"
                      "def boom(*a, **k):\n    raise RuntimeError('injected fault')\n"
                      "p.build_plan = boom\nfrom edgecheck.cli import cli_entry\ncli_entry()\n")
    proc = emptyns.cli("targets", *REGION, python=injected, env={"EDGECHECK_DEBUG": "1"})
    assert proc.returncode == 70 and "Traceback (most recent call last)" in proc.stderr, proc.stderr


def case_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = emptyns.cli("agent", *REGION, "--phase", "join", "--timeout", "1", "--textfile", "off",
                       env={"EDGECHECK_STATE_DIR": str(state)})
    assert proc.returncode == 1, proc.stderr
    assert assert_valid_report((state / "report.json").read_text())["params"]["phase"] == "join"


def case_textfile(tmp_path: Path) -> None:
    prom = tmp_path / "edgecheck.prom"
    proc = emptyns.cli("agent", *REGION, "--phase", "join", "--timeout", "1", "--state-dir", str(tmp_path / "s"),
                       env={"EDGECHECK_TEXTFILE": str(prom)})
    assert proc.returncode == 1, proc.stderr
    assert "\nedgecheck_ready 0\n" in prom.read_text()


def case_cache_dir(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("edgecheck_bootstrap", REPO / "packaging" / "zipapp" / "bootstrap.py")
    assert spec and spec.loader
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    env = {"CACHE_DIRECTORY": "/var/cache/edgecheck", "HOME": "/home/u"}
    assert bootstrap.cache_candidates(env)[0] == "/var/cache/edgecheck"
    assert bootstrap.cache_candidates({**env, "EDGECHECK_CACHE_DIR": str(tmp_path)})[0] == str(tmp_path)


def case_python(tmp_path: Path) -> None:
    fake = tmp_path / "fake-python"
    fake.write_text('#!/bin/sh\n[ "$1 $2 $3" = "-I -S -c" ] && exit 0\necho "fake python: $*"\n')
    fake.chmod(0o755)
    proc = subprocess.run(["sh", str(REPO / "packaging" / "common" / "edgecheck.sh"), "--version"],
                          env={"PATH": "/usr/bin:/bin", "EDGECHECK_PYTHON": str(fake)},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.startswith("fake python: -I -S "), proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("edgecheck.pyz --version"), proc.stdout


def case_nspawn_cache(tmp_path: Path) -> None:
    assert nspawn_helpers.rootfs_cache({"EDGECHECK_NSPAWN_CACHE": str(tmp_path)}) == tmp_path
    assert nspawn_helpers.rootfs_cache({}) is None


def case_debian_mirror(tmp_path: Path) -> None:
    with mock.patch.dict(os.environ, {"EDGECHECK_DEBIAN_MIRROR": "http://mirror.example.test/debian/"}):
        assert nspawn_helpers.host_debian_mirror() == "http://mirror.example.test/debian"


CASES: Dict[str, Callable[[Path], None]] = {
    "EDGECHECK_REGION": case_region,
    "EDGECHECK_MODE": case_mode,
    "EDGECHECK_PHASE": case_phase,
    "EDGECHECK_K8S_VERSION": case_k8s_version,
    "EDGECHECK_APISERVER": case_apiserver,
    "EDGECHECK_KUBECONFIG": case_kubeconfig,
    "EDGECHECK_NODE_ROOT": case_node_root,
    "EDGECHECK_RAVEN_GATEWAY": case_raven_gateway,
    "EDGECHECK_TUNNEL_SERVER": case_tunnel_server,
    "EDGECHECK_NETWORK_PLUGIN": case_network_plugin,
    "EDGECHECK_SELF_HOST_NTP": case_self_host_ntp,
    "EDGECHECK_TARGETS_FILE": case_targets_file,
    "EDGECHECK_TIMEOUT": case_timeout,
    "EDGECHECK_FORMAT": case_format,
    "EDGECHECK_OUTPUT": case_output,
    "EDGECHECK_CA_BUNDLE": case_ca_bundle,
    "EDGECHECK_APISERVER_CA": case_apiserver_ca,
    "EDGECHECK_SOURCE_CIDR": case_source_cidr,
    "EDGECHECK_TOKEN": case_token,
    "EDGECHECK_DURATION": case_duration,
    "EDGECHECK_STRICT": case_strict,
    "EDGECHECK_DEBUG": case_debug,
    "EDGECHECK_STATE_DIR": case_state_dir,
    "EDGECHECK_TEXTFILE": case_textfile,
    "EDGECHECK_CACHE_DIR": case_cache_dir,
    "EDGECHECK_PYTHON": case_python,
    # The test suite's own knobs (README, "Testing the agent under systemd").
    "EDGECHECK_NSPAWN_CACHE": case_nspawn_cache,
    "EDGECHECK_DEBIAN_MIRROR": case_debian_mirror,
}


@pytest.mark.parametrize("variable", README_VARIABLES)
def test_every_variable_in_the_readme(variable, tmp_path):
    case = CASES.get(variable)
    assert case is not None, f"the README names {variable}, but tests/test_env_variables.py has no case for it"
    case(tmp_path)


def test_the_readme_list_is_what_the_cases_cover():
    assert len(README_VARIABLES) >= 20, README_VARIABLES
    assert sorted(CASES) == README_VARIABLES


def _cli_variables() -> Set[str]:
    found: Set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else list(envvar or ()))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(main)
    return found


def test_every_variable_the_product_reads_is_in_the_readme():
    cli = _cli_variables()
    assert {"EDGECHECK_REGION", "EDGECHECK_STATE_DIR", "EDGECHECK_DEBUG"} <= cli, cli
    sources = [p for p in (REPO / "edgecheck").rglob("*.py")]
    sources += [REPO / "systemd" / "edgecheck.env.example", REPO / "packaging" / "common" / "edgecheck.sh"]
    read = {v for p in sources for v in VARIABLE.findall(p.read_text())}
    assert len(read) >= 20, read
    assert sorted((cli | read) - set(README_VARIABLES)) == []
