"""A path-MTU black hole through the real `edgecheck run` CLI, on the routed path with a narrow
link (topology.py): node -- cpe ==1280== isp -- server, the isp's ICMP "fragmentation needed"
toward the black-holed addresses dropped.

The node's resolver is a DNS server on the server side that knows the targets file's names
(every catalog name is NXDOMAIN there: those checks fail fast and are not what this test is about).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, Iterator

import pytest

from tests.lab.plan import REPO, edgecheck_env
from tests.pathtrust.conftest import serve_chain
from tests.probes.servers import DnsServer
from tests.schema_check import assert_valid_report

DNS = "10.81.0.53"
RAVEN = "10.81.0.20"
TIMEOUT = 2.0

TARGETS = """
[[endpoint]]
id = "behind-small-link"
name = "Registry behind a small link (long certificate chain)"
host = "big.test"
ports = [443]

[[endpoint]]
id = "behind-small-link-http"
name = "Package mirror behind a small link"
host = "big.test"
ports = [80]

[[endpoint]]
id = "large-response"
name = "Mirror with a small certificate and a large response"
host = "good.test"
ports = [8443]
probe = "https"
"""

HEALED = """
[[endpoint]]
id = "healed-path"
name = "The same chain where the router's ICMP gets through"
host = "ok.test"
ports = [4443]
probe = "https"
"""


def _flush_learned_mtu(lab) -> None:
    lab.forget_pmtu()


def _run_cli(lab, pki, targets, *extra: str) -> Dict[str, Any]:
    argv = ["ip", "netns", "exec", lab.node.name, sys.executable, "-m", "edgecheck", "run", "--region", "cn-hangzhou",
            "--targets-file", str(targets), "--ca-bundle", pki["root"].cert, "--timeout", str(TIMEOUT),
            "--format", "json", *extra]
    env = {k: v for k, v in edgecheck_env().items() if not k.startswith("EDGECHECK_") and "proxy" not in k.lower()}
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    wall = time.monotonic() - start
    assert proc.stdout.strip(), proc.stderr
    report = json.loads(proc.stdout)
    return {"report": report, "wall": wall, "proc": proc, "by_id": {c["id"]: c for c in report["checks"]}}


@pytest.fixture(scope="module")
def cli_run(path_lab, pki, tmp_path_factory) -> Iterator[Dict[str, Any]]:
    lab = path_lab["lab"]
    d = tmp_path_factory.mktemp("pmtu-cli")
    # ok.test: the long chain again, for its own name, on the healthy address.
    leaf, *rest = pki["chain"]
    ok_leaf = pki["pki"].issue(rest[0], "ok-leaf", sans=["ok.test"], rsa=True)
    healed = serve_chain(lab.server, path_lab["ok4"], 4443, ok_leaf, rest, pki["dir"])
    lab.server.add_address(f"{DNS}/32")
    dns = lab.server.run(DnsServer, DNS, 53)
    dns.zone.update({"big.test": {"A": [path_lab["hole4"]]}, "good.test": {"A": [path_lab["hole4"]]},
                     "ok.test": {"A": [path_lab["ok4"]]}, "*": "NXDOMAIN"})
    etc = f"/etc/netns/{lab.node.name}"
    os.makedirs(etc, exist_ok=True)
    with open(f"{etc}/resolv.conf", "w") as fh:
        fh.write(f"nameserver {DNS}\noptions timeout:1 attempts:1\n")
    with open(f"{etc}/hosts", "w") as fh:
        fh.write("127.0.0.1 localhost\n")
    targets, healed_targets = d / "targets.toml", d / "healed.toml"
    targets.write_text(TARGETS)
    healed_targets.write_text(HEALED)
    try:
        _flush_learned_mtu(lab)
        out = _run_cli(lab, pki, targets, "--raven-gateway", RAVEN)
        out["healed"] = lambda: _run_cli(lab, pki, healed_targets)
        yield out
    finally:
        import shutil

        _flush_learned_mtu(lab)
        shutil.rmtree(etc, ignore_errors=True)
        healed.close()
        dns.close()


@pytest.mark.parametrize("check_id,stage", [("endpoint:big.test:443/tcp", "tls"), ("endpoint:big.test:80/tcp", "http"),
                                            ("endpoint:good.test:8443/tcp", "http")])
def test_black_hole_is_path_mtu_with_the_sizes(cli_run, check_id, stage):
    assert_valid_report(cli_run["report"])
    assert "Traceback" not in cli_run["proc"].stderr
    check = cli_run["by_id"][check_id]
    assert (check["status"], check["reason"]) == ("fail", "path-mtu"), check
    ev = check["evidence"]["path_mtu"]
    assert ev["stage"] == stage and ev["black_hole"] is True
    assert ev["largest_working"] == 1280 and ev["smallest_failing"] == 1400, ev
    assert ev["egress_route"]["interface_mtu"] == 1500 and ev["egress_route"]["interface"], ev
    assert "packets of up to 1280 bytes arrive, packets of 1400 bytes and more are lost" in check["message"]
    what = "the TLS handshake" if stage == "tls" else "the HTTP response"
    assert f"connects but {what} stalls" in check["message"]
    rem = check["remediation"]
    assert "--set-mss 1240" in rem and f"ip link set dev {ev['egress_route']['interface']} mtu 1280" in rem
    assert "type 3 code 4" in rem
    assert f"Raven gateway {RAVEN}" in rem and "pod packets of up to" in rem  # Raven's IPsec on such a path
    # The retry lives inside the probe budget: the check ends with its timeout, not later.
    assert check["duration_ms"] <= TIMEOUT * 1000 + 700, check["duration_ms"]


def test_the_same_chain_on_a_path_that_reports_its_mtu_passes(cli_run):
    check = cli_run["healed"]()["by_id"]["endpoint:ok.test:4443/tcp"]
    assert (check["status"], check["reason"]) == ("pass", "ok"), check
    assert "path_mtu" not in check["evidence"]


def test_one_finding_for_the_black_hole_and_the_run_stays_bounded(cli_run):
    report = cli_run["report"]
    findings = [f for f in report["findings"] if f["reason"] == "path-mtu"]
    assert len(findings) == 1 and findings[0]["cause"] == "path-mtu:largest_working=1280", findings
    assert set(findings[0]["checks"]) == {"endpoint:big.test:443/tcp", "endpoint:big.test:80/tcp",
                                          "endpoint:good.test:8443/tcp"}
    nameserver = cli_run["by_id"][f"dns:nameserver:{DNS}"]
    assert (nameserver["status"], nameserver["reason"]) == ("pass", "ok"), nameserver
    # SPEC 6: about one probe timeout plus overhead, with the MSS retries inside it.
    assert cli_run["wall"] < 2 * TIMEOUT + 4, cli_run["wall"]
