"""Cluster inputs end to end in the lab, through the real CLI: `--kubeconfig`, the console's URL
form of `--apiserver`, and a joined-node file tree (`--node-root`) each give a verified API server
check against the lab's look-alike, with where the address came from named in the report."""

from __future__ import annotations

from typing import Any, Dict

from tests.cluster_inputs import nodetrees as trees
from tests.cluster_inputs.fixtures import TOKEN, b64, kubeconfig, write
from tests.lab.lab import APISERVER_PUBLIC, Lab
from tests.lab.scenarios import base_args
from tests.schema_check import assert_valid_report

SERVER = f"https://{APISERVER_PUBLIC}:6443"
CHECK_ID = f"endpoint:{APISERVER_PUBLIC}:6443/tcp"
RUNNING = ("public", "running", "1.28")


def assert_verified_pass(check: Dict[str, Any]) -> None:
    assert (check["status"], check["reason"]) == ("pass", "ok"), check
    assert "certificate verified" in check["message"], check
    assert check["evidence"]["tls"]["verified"] is True, check


def test_kubeconfig_gives_a_verified_apiserver_check(lab: Lab, tmp_path) -> None:
    path = write(str(tmp_path), "kubeconfig", kubeconfig(SERVER, ca_data=b64(str(lab.cluster_ca.cert))))
    result = lab.run_edgecheck(base_args(lab, RUNNING, apiserver=None) + ["--kubeconfig", path,
                                                                          "--node-root", str(tmp_path / "empty")])
    assert_valid_report(result.report)
    assert_verified_pass(result.check(CHECK_ID))
    params = result.report["params"]
    assert params["apiserver"] == f"{APISERVER_PUBLIC}:6443"
    assert params["apiserver_source"].startswith(f"kubeconfig {path}")
    assert params["apiserver_ca_source"] == f"certificate-authority-data in {path}"
    assert TOKEN not in result.stdout + result.stderr  # the user's token is never read into anything


def test_console_url_form_is_accepted(lab: Lab) -> None:
    result = lab.run_edgecheck(base_args(lab, ("public", "join", "1.28"), apiserver=SERVER))
    assert_verified_pass(result.check(CHECK_ID))
    assert result.report["params"]["apiserver_source"] == "--apiserver"


def test_joined_node_tree_gives_a_discovered_verified_apiserver_check(lab: Lab, tmp_path) -> None:
    root = str(tmp_path / "node")
    trees.yurtadm_static_pod_node(root, str(lab.cluster_ca.cert), servers=SERVER)
    result = lab.run_edgecheck(base_args(lab, RUNNING, apiserver=None) + ["--node-root", root])
    assert_valid_report(result.report)
    assert_verified_pass(result.check(CHECK_ID))
    params = result.report["params"]
    assert params["apiserver_source"] == (
        "discovered: yurthub static pod /etc/kubernetes/manifests/yurthub.yaml (--server-addr)")
    assert params["apiserver_ca_source"] == "/var/lib/yurthub/pki/ca.crt"
    # YurtHub is on this node's configuration but not running in the lab node: its local check says so.
    yurthub = result.check("component:yurthub")
    assert (yurthub["status"], yurthub["reason"]) == ("fail", "component-unhealthy"), yurthub
    assert "refuses connections" in yurthub["message"] and "crictl" in yurthub["remediation"], yurthub
    text = lab.run_edgecheck(base_args(lab, RUNNING, apiserver=None) + ["--node-root", root], fmt="text")
    assert f"API server {APISERVER_PUBLIC}:6443 from discovered: yurthub static pod" in " ".join(text.stdout.split())


def test_nothing_found_keeps_the_skip_and_says_where_it_looked(lab: Lab, tmp_path) -> None:
    result = lab.run_edgecheck(base_args(lab, RUNNING, apiserver=None) + ["--node-root", str(tmp_path)])
    (skip,) = result.checks(lambda c: c["id"].startswith("endpoint:apiserver"))
    assert (skip["status"], skip["reason"]) == ("skip", "missing-input"), skip
    assert "Nothing found on this node" in skip["message"] and "/etc/kubernetes/kubelet.conf" in skip["message"]
    assert not result.checks(lambda c: c["id"].startswith("component:"))
