"""Cluster inputs end to end in the lab: a kubeconfig and a joined-node tree each give the real CLI
the API server and its CA, and the API server check against the lab's look-alike is verified.

Until the CLI reads --kubeconfig and discovers by itself (issue 14, wired by the lead), the test
passes what the new modules found as --apiserver (in the URL form) and --apiserver-ca.
"""

from __future__ import annotations

from typing import Any, Dict

from edgecheck.discovery import discover
from edgecheck.kubeconfig import ca_file_for, load_kubeconfig

from cluster_inputs.fixtures import TOKEN, b64, kubeconfig, write
from cluster_inputs import nodetrees as trees

from .lab import APISERVER_PUBLIC, Lab
from .scenarios import base_args

SERVER = f"https://{APISERVER_PUBLIC}:6443"
CHECK_ID = f"endpoint:{APISERVER_PUBLIC}:6443/tcp"


def assert_verified_pass(check: Dict[str, Any]) -> None:
    assert (check["status"], check["reason"]) == ("pass", "ok"), check
    assert "certificate verified" in check["message"], check
    assert check["evidence"]["tls"]["verified"] is True, check


def test_kubeconfig_gives_a_verified_apiserver_check(lab: Lab, tmp_path) -> None:
    path = write(str(tmp_path), "kubeconfig", kubeconfig(SERVER, ca_data=b64(str(lab.cluster_ca.cert))))
    cluster = load_kubeconfig(path)
    with ca_file_for(cluster.ca_file, cluster.ca_pem) as cafile:
        assert cafile is not None
        result = lab.run_edgecheck(base_args(lab, ("public", "running", "1.28"), apiserver=cluster.server,
                                             apiserver_ca=cafile))
    assert_verified_pass(result.check(CHECK_ID))
    assert TOKEN not in result.stdout + result.stderr


def test_joined_node_tree_gives_a_verified_apiserver_check(lab: Lab, tmp_path) -> None:
    root = str(tmp_path / "node")
    trees.yurtadm_static_pod_node(root, str(lab.cluster_ca.cert), servers=SERVER)
    found = discover(root).found
    assert found is not None and found.source.endswith("yurthub.yaml (--server-addr)")
    assert found.ca_file is not None
    result = lab.run_edgecheck(base_args(lab, ("public", "running", "1.28"), apiserver=found.server,
                                         apiserver_ca=found.ca_file))
    assert_verified_pass(result.check(CHECK_ID))
