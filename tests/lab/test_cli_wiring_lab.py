"""CLI wiring that needs real servers: --strict (run and agent), the order of the TLS trust
sources, and NO_PROXY taken from the environment. The real CLI runs in the lab's node namespace.

Trust precedence is a security property (README, "Usage"): --ca-bundle (or EDGECHECK_CA_BUNDLE),
then REQUESTS_CA_BUNDLE, then SSL_CERT_FILE, then the system store. Every case gives each source
a different CA, and only one of them signed the lab's servers: a source consulted in the wrong
order turns a pass into a failure or the other way round, and the evidence names the file used.
The system store is replaced for one run by bind-mounting a CA over it in a private mount
namespace (nothing changes outside that one process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest

from tests.lab import pki
from tests.lab.lab import EDGECHECK_ENV_PREFIX, PROXY_ADDR, PROXY_PORT, PROXY_ENV_VARS, RAVEN_ADDR, Lab, RunResult
from tests.lab.plan import REPO, edgecheck_env
from tests.lab.scenarios import REGION, base_args, drop_udp, host_matching
from tests.schema_check import assert_valid_report

PUBLIC_JOIN = ("public", "join", "1.28")
SYSTEM_STORE = "/etc/ssl/certs/ca-certificates.crt"


def node_cli(lab: Lab, argv: Sequence[str], *, env: Optional[Dict[str, str]] = None,
             system_store: Optional[Path] = None) -> subprocess.CompletedProcess:
    """`python3 -m edgecheck ARGV` in the node namespace; with system_store, that CA file is the
    system trust store for this one process."""
    command: List[str] = [sys.executable, "-m", "edgecheck", *argv]
    if system_store is not None:
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   f'mount --bind "$0" {SYSTEM_STORE} && exec "$@"', str(system_store), *command]
    run_env = {k: v for k, v in edgecheck_env().items()
               if k not in PROXY_ENV_VARS and k != "SSL_CERT_DIR" and not k.startswith(EDGECHECK_ENV_PREFIX)}
    run_env.update(env or {})
    return subprocess.run(lab.topology.node.exec_argv(command), capture_output=True, text=True, cwd=REPO,
                          env=run_env, timeout=120, stdin=subprocess.DEVNULL)


def as_result(proc: subprocess.CompletedProcess) -> RunResult:
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None
    return RunResult(list(proc.args), proc.returncode, proc.stdout, proc.stderr, report)


# ============================================================================================ --strict

@pytest.fixture(scope="module")
def only_warnings(lab: Lab):
    """The healthy lab with UDP 4500 to the Raven gateway silently dropped: IKE gets no answer,
    a warning (no-response); nothing fails."""
    with drop_udp(lab, RAVEN_ADDR, 4500):
        yield base_args(lab, PUBLIC_JOIN) + ["--ca-bundle", str(lab.ca.cert)]


def _warned_but_ready(report: Dict[str, Any]) -> None:
    assert report["summary"]["fail"] == 0 and report["summary"]["warn"] >= 1, report["summary"]
    ike = [c for c in report["checks"] if c["id"] == f"endpoint:{RAVEN_ADDR}:4500/udp"]
    assert [(c["status"], c["reason"]) for c in ike] == [("warn", "no-response")]


def test_run_strict_turns_warnings_into_exit_1(lab: Lab, only_warnings: List[str]) -> None:
    plain = as_result(node_cli(lab, ["run", *only_warnings, "--format", "json"]))
    report = assert_valid_report(plain.report)
    _warned_but_ready(report)
    assert plain.returncode == 0 and report["params"]["strict"] is False, plain.describe()

    strict = as_result(node_cli(lab, ["run", *only_warnings, "--format", "json", "--strict"]))
    report = assert_valid_report(strict.report)
    _warned_but_ready(report)
    assert strict.returncode == 1 and report["params"]["strict"] is True, strict.describe()

    from_env = node_cli(lab, ["run", *only_warnings], env={"EDGECHECK_STRICT": "1"})
    assert from_env.returncode == 1, from_env.stderr
    assert from_env.stdout.startswith("NOT READY (--strict: warnings fail)  0 failed, "), from_env.stdout[:300]


def test_agent_strict_turns_warnings_into_exit_1(lab: Lab, only_warnings: List[str], tmp_path: Path) -> None:
    args = ["agent", *only_warnings, "--state-dir", str(tmp_path / "state"), "--textfile", "off"]
    plain = node_cli(lab, args)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    _warned_but_ready(json.loads((tmp_path / "state" / "report.json").read_text()))
    strict = node_cli(lab, [*args, "--strict"])
    assert strict.returncode == 1, strict.stdout + strict.stderr
    report = assert_valid_report((tmp_path / "state" / "report.json").read_text())
    _warned_but_ready(report)
    assert report["params"]["strict"] is True


# ==================================================================================== trust order

@pytest.fixture(scope="module")
def cas(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """good: signed the lab's servers. The others did not, and each is a different CA."""
    d = tmp_path_factory.mktemp("trust")
    return {"good": lab.ca.cert, "rogue": lab.rogue_ca.cert, "cluster": lab.cluster_ca.cert,
            "other": pki.make_ca(d, "other-ca", "edgecheck trust-order test CA").cert}


def _public_web_checks(result: RunResult) -> List[Dict[str, Any]]:
    """The HTTPS checks that use the public trust (not the API server's --apiserver-ca)."""
    web = [c for c in result.checks(lambda c: "trust" in (c.get("evidence") or {}))
           if c["evidence"]["trust"]["origin"] != "--apiserver-ca"]
    assert len(web) >= 3, result.describe()
    return web


# (case, --ca-bundle, EDGECHECK_CA_BUNDLE, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, system store) -> winner, passes
TRUST_CASES = [
    ("flag-beats-all", "good", None, "rogue", "other", "cluster", ("--ca-bundle", "good")),
    ("flag-beats-all-the-other-way", "rogue", None, "good", "good", "good", ("--ca-bundle", "rogue")),
    ("env-flag-beats-requests", None, "good", "rogue", "other", "cluster", ("--ca-bundle", "good")),
    ("requests-beats-ssl-cert-file", None, None, "good", "rogue", "other", ("REQUESTS_CA_BUNDLE", "good")),
    ("requests-beats-ssl-cert-file-the-other-way", None, None, "rogue", "good", "good", ("REQUESTS_CA_BUNDLE", "rogue")),
    ("ssl-cert-file-beats-system", None, None, None, "good", "rogue", ("SSL_CERT_FILE", "good")),
    ("ssl-cert-file-beats-system-the-other-way", None, None, None, "rogue", "good", ("SSL_CERT_FILE", "rogue")),
    ("system-last", None, None, None, None, "good", ("system", "good")),
    ("system-last-the-other-way", None, None, None, None, "rogue", ("system", "rogue")),
]


@pytest.mark.parametrize("case, flag, env_flag, requests_ca, ssl_cert_file, system, winner", TRUST_CASES,
                         ids=[c[0] for c in TRUST_CASES])
def test_trust_sources_are_consulted_in_order(lab: Lab, cas: Dict[str, Path], case: str, flag: Optional[str],
                                              env_flag: Optional[str], requests_ca: Optional[str],
                                              ssl_cert_file: Optional[str], system: str, winner: tuple) -> None:
    args = ["run", *base_args(lab, PUBLIC_JOIN), "--format", "json"]
    if flag:
        args += ["--ca-bundle", str(cas[flag])]
    env = {}
    for variable, ca in (("EDGECHECK_CA_BUNDLE", env_flag), ("REQUESTS_CA_BUNDLE", requests_ca),
                         ("SSL_CERT_FILE", ssl_cert_file)):
        if ca:
            env[variable] = str(cas[ca])
    result = as_result(node_cli(lab, args, env=env, system_store=cas[system]))
    assert_valid_report(result.report)
    origin, ca = winner
    expected_file = SYSTEM_STORE if origin == "system" else str(cas[ca])
    for check in _public_web_checks(result):
        trust = check["evidence"]["trust"]
        # The system store may be found as /usr/lib/ssl/cert.pem, OpenSSL's link to the same file.
        assert (trust["origin"], os.path.realpath(trust["cafile"])) == (origin, expected_file), check
        if ca == "good" and origin == "system":
            # The lab CA verifies from the system store but is no public root: SPEC 7.1 interception.
            assert (check["status"], check["reason"]) == ("warn", "tls-intercepted"), check
        elif ca == "good":
            assert (check["status"], check["reason"]) == ("pass", "ok"), check
        else:
            assert (check["status"], check["reason"]) == ("fail", "tls-verify-failed"), check
    expected_params = "system trust store" if origin == "system" else origin
    assert result.report["params"]["trust"] == expected_params


# ========================================================================================= NO_PROXY

def test_no_proxy_from_the_environment_sends_that_name_direct(lab: Lab) -> None:
    """The proxy refuses one name (403); NO_PROXY names it: it goes direct and passes, while the
    other names still go through the proxy."""
    direct = host_matching(lab, r"dockerauth-ee\.{region}\.aliyuncs\.com")
    proxy = f"http://{PROXY_ADDR}:{PROXY_PORT}"
    args = ["run", *base_args(lab, PUBLIC_JOIN), "--format", "json", "--ca-bundle", str(lab.ca.cert)]
    with lab.proxy_filter([direct]):
        result = as_result(node_cli(lab, args, env={"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy, "NO_PROXY": direct}))
        refused = as_result(node_cli(lab, args, env={"HTTPS_PROXY": proxy, "HTTP_PROXY": proxy}))
    assert_valid_report(result.report)
    check = result.check(f"endpoint:{direct}:443/tcp")
    assert (check["status"], check["reason"], check["evidence"]["route"]) == ("pass", "ok", "direct"), check
    proxied = result.check(f"endpoint:{host_matching(lab, r'registry-{region}.ack.aliyuncs.com')}:443/tcp")
    assert (proxied["status"], proxied["evidence"]["route"]) == ("pass", "proxy"), proxied
    # Without NO_PROXY the same name goes to the proxy, which refuses it: the filter is real.
    check = refused.check(f"endpoint:{direct}:443/tcp")
    assert (check["status"], check["reason"]) == ("fail", "proxy-error"), check
    assert REGION in direct
