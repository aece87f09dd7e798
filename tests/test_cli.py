"""The command line: options, environment variables, one-line errors with exit 2, no packets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests import emptyns


def edgecheck(*args: str, env: dict = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real CLI in an empty network namespace: a regression into probing cannot leave the host."""
    return emptyns.cli(*args, env=env, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve or send fails the test: planning commands must not touch the network."""

    def refuse(*_a, **_k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "sendto", refuse)
    monkeypatch.setattr(socket.socket, "send", refuse)


def invoke(args, monkeypatch):
    from click.testing import CliRunner

    from edgecheck.cli import main

    for key in list(os.environ):
        if key.startswith("EDGECHECK_"):
            monkeypatch.delenv(key)
    return CliRunner().invoke(main, args)


# --- plan output -----------------------------------------------------------------------------


def test_targets_json_lists_the_plan_without_touching_the_network(no_network, monkeypatch):
    result = invoke(["targets", "--region", "cn-hangzhou", "--mode", "dedicated", "--format", "json"], monkeypatch)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["schema"] == "edgecheck/plan/v1"
    assert doc["params"]["mode"] == "dedicated"
    by_id = {t["id"]: t for t in doc["targets"]}
    reg = by_id["endpoint:registry-cn-hangzhou-vpc.ack.aliyuncs.com:443/tcp"]
    assert reg["expected_cidrs"] == ["100.103.9.188/32", "100.103.7.181/32"]
    assert reg["target"] == {"host": "registry-cn-hangzhou-vpc.ack.aliyuncs.com", "port": 443, "protocol": "tcp"}
    assert by_id["endpoint:apiserver:6443/tcp"]["skip"]["reason"] == "missing-input"
    assert by_id["inbound:10250/tcp"]["expect"] == "free"
    assert by_id["tool:socat"]["tool"]["executables"] == ["socat"]


def test_targets_text_fits_80_columns(no_network, monkeypatch):
    result = invoke(["targets", "--region", "cn-zhangjiakou", "--k8s-version", "1.24"], monkeypatch)
    assert result.exit_code == 0
    assert "dockerauth-cn-zhangjiakou.aliyuncs.com:443/tcp" in result.output
    long_lines = [line for line in result.output.splitlines() if len(line) > 80 and " " in line.strip()]
    assert not long_lines


def test_regions_lists_every_catalog_region(no_network, monkeypatch):
    result = invoke(["regions", "--format", "json"], monkeypatch)
    assert result.exit_code == 0
    regions = {r["id"]: r for r in json.loads(result.output)}
    assert regions["cn-hangzhou"]["registry_routes"] == ["100.103.9.188/32", "100.103.7.181/32"]
    assert regions["cn-nanjing"]["registry_vpc_personal"] is True
    text = invoke(["regions"], monkeypatch).output
    assert "cn-hangzhou" in text and "me-central-1" in text


def test_environment_variables_select_the_plan(no_network, monkeypatch):
    from click.testing import CliRunner

    from edgecheck.cli import main

    env = {
        "EDGECHECK_REGION": "cn-beijing",
        "EDGECHECK_MODE": "public",
        "EDGECHECK_PHASE": "running",
        "EDGECHECK_K8S_VERSION": "1.24",
        "EDGECHECK_RAVEN_GATEWAY": "203.0.113.1,203.0.113.2",
        "EDGECHECK_TUNNEL_SERVER": "203.0.113.3",
        "EDGECHECK_APISERVER": "203.0.113.4:443",
        "EDGECHECK_NETWORK_PLUGIN": "terway-edge",
        "EDGECHECK_SELF_HOST_NTP": "true",
    }
    result = CliRunner().invoke(main, ["targets", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["params"]["raven_gateways"] == ["203.0.113.1", "203.0.113.2"]
    ids = [t["id"] for t in doc["targets"]]
    assert "endpoint:203.0.113.2:4500/udp" in ids
    assert "endpoint:203.0.113.3:10262/tcp" in ids
    assert "endpoint:203.0.113.4:443/tcp" in ids
    assert "inbound:8472/udp" not in ids
    ntp = [t for t in doc["targets"] if t["probe"] == "ntp"]
    inbound = [t for t in doc["targets"] if t["kind"] == "inbound"]
    assert ntp and all(t["skip"]["reason"] == "not-applicable" for t in ntp)
    assert inbound and all(t.get("expect") == "listening" for t in inbound)


def test_targets_file_is_merged_into_the_plan(tmp_path, no_network, monkeypatch):
    extra = tmp_path / "mirror.toml"
    extra.write_text(
        '[[endpoint]]\nid = "own-mirror"\nname = "Company registry mirror"\n'
        'host = "mirror.{region}.example.test"\nports = [443, 5000]\nprobe = "https"\n'
        'cidrs = ["10.20.0.0/16"]\n'
    )
    result = invoke(["targets", "--region", "cn-hangzhou", "--targets-file", str(extra), "--format", "json"], monkeypatch)
    assert result.exit_code == 0, result.output
    by_id = {t["id"]: t for t in json.loads(result.output)["targets"]}
    mirror = by_id["endpoint:mirror.cn-hangzhou.example.test:5000/tcp"]
    assert mirror["probe"] == "https" and mirror["expected_cidrs"] == ["10.20.0.0/16"]
    assert mirror["source"] == str(extra)


def test_help_is_fast_and_imports_no_network_library():
    code = (
        "import sys; from edgecheck.cli import main\n"
        "heavy = [m for m in ('dns', 'requests', 'psutil', 'ntplib', 'urllib3') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    start = time.monotonic()
    proc = edgecheck("--help")
    assert proc.returncode == 0 and "targets" in proc.stdout
    assert time.monotonic() - start < 5


def test_version():
    from edgecheck import __version__

    proc = edgecheck("--version")
    assert proc.returncode == 0 and __version__ in proc.stdout


# --- usage errors: one line, exit 2, nothing probed ------------------------------------------


@pytest.mark.parametrize("args, expected", [
    (["--region", "cn-hangzhou.evil.com"], "invalid region 'cn-hangzhou.evil.com'"),
    (["--region", "CN-Hangzhou"], "invalid region"),
    ([], "missing --region"),
    (["--region", "cn-hangzhou", "--k8s-version", "latest"], "invalid --k8s-version 'latest'"),
    (["--region", "cn-hangzhou", "--apiserver", "api.test:99999"], "port must be a number from 1 to 65535"),
    (["--region", "cn-hangzhou", "--raven-gateway", "bad host!"], "invalid --raven-gateway"),
    (["--region", "cn-hangzhou", "--targets-file", "/nonexistent/x.toml"], "/nonexistent/x.toml: cannot read targets file"),
])
@pytest.mark.parametrize("command", ["targets", "run"])
def test_bad_inputs_exit_2_with_one_line(command, args, expected):
    line = one_line_error(edgecheck(command, *args))
    assert expected in line


def test_bad_choice_is_exit_2():
    proc = edgecheck("targets", "--region", "cn-hangzhou", "--mode", "private")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "'private' is not one of" in proc.stderr


def test_run_with_bad_ca_bundle_is_exit_2():
    line = one_line_error(edgecheck("run", "--region", "cn-hangzhou", "--ca-bundle", "/nonexistent/ca.pem"))
    assert "--ca-bundle '/nonexistent/ca.pem' is not a readable file" in line


BAD_TARGET_FILES = [
    ("syntax", "[[endpoint]\nid = 'x'\n", "invalid TOML"),
    ("unknown key", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "h.test"\nports = [443]\ncolour = "red"\n', "endpoint 'x': unknown key 'colour'"),
    ("port text", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "h.test"\nports = ["https"]\n', "endpoint 'x': ports: port 'https' is not a number"),
    ("port range", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "h.test"\nports = [70000]\n', "endpoint 'x': ports: port 70000 is out of range 1-65535"),
    ("port zero", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "h.test"\nports = [0]\n', "port 0 is out of range"),
    ("bad cidr", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "h.test"\nports = [443]\ncidrs = ["10.0.0.1/8"]\n', "endpoint 'x': cidrs: '10.0.0.1/8' is not a valid CIDR block"),
    ("bad cidr text", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "h.test"\nports = [443]\ncidrs = ["ten/8"]\n', "'ten/8' is not a valid CIDR block"),
    ("duplicate in file", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "a.test"\nports = [443]\n[[endpoint]]\nid = "x"\nname = "n"\nhost = "b.test"\nports = [443]\n', "endpoint 'x': duplicate id"),
    ("duplicate of catalog", '[[endpoint]]\nid = "public-registry"\nname = "n"\nhost = "b.test"\nports = [443]\n', "endpoint 'public-registry': duplicate id"),
    ("no host", '[[endpoint]]\nid = "x"\nname = "n"\nports = [443]\n', "needs exactly one of 'host' or 'host_from'"),
    ("bad placeholder", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "{zone}.test"\nports = [443]\n', "unknown placeholder {zone}"),
    ("bad host", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "a b.test"\nports = [443]\n', "contains characters a hostname cannot have"),
    ("missing name", '[[endpoint]]\nid = "x"\nhost = "a.test"\nports = [443]\n', "endpoint 'x': missing required key 'name'"),
    ("top key", 'region = "cn-hangzhou"\n', "unknown top-level key 'region'"),
    ("udp no probe", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "a.test"\nports = [53]\nprotocol = "udp"\n', "need an explicit 'probe'"),
    ("bad mode", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "a.test"\nports = [443]\nmodes = ["hybrid"]\n', "modes: 'hybrid' is not one of public, dedicated"),
    ("bad version", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "a.test"\nports = [443]\nk8s = "1.26+"\n', "k8s: version rule '1.26+'"),
    ("bool port", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "a.test"\nports = [true]\n', "port True is not a number"),
    ("schema", 'schema = 2\n', "schema 2 is not supported"),
    ("inbound port", '[[inbound]]\nid = "x"\nname = "n"\nports = [-1]\nprotocol = "tcp"\n', "inbound 'x': ports: port -1 is out of range"),
]


@pytest.mark.parametrize("label, content, expected", BAD_TARGET_FILES, ids=[b[0] for b in BAD_TARGET_FILES])
def test_malformed_targets_file_is_one_line_exit_2(tmp_path, label, content, expected):
    path = tmp_path / "extra.toml"
    path.write_text(content)
    line = one_line_error(edgecheck("targets", "--region", "cn-hangzhou", "--targets-file", str(path)))
    assert line.startswith(f"edgecheck: error: {path}: "), line
    assert expected in line


def test_malformed_catalog_names_file_entry_and_problem():
    from edgecheck.catalog import CatalogError, parse_regions_document, parse_targets_document

    with pytest.raises(CatalogError, match=r"^targets/regions.toml: region 'cn-x': registry_routes: '100.1.1.1/24' is not a valid CIDR"):
        parse_regions_document("targets/regions.toml", '[region.cn-x]\nsource = "s"\nregistry_routes = ["100.1.1.1/24"]\n')
    with pytest.raises(CatalogError, match=r"^targets/endpoints.toml: endpoint 'x': missing required key 'source'"):
        parse_targets_document("targets/endpoints.toml", '[[endpoint]]\nid = "x"\nname = "n"\nhost = "a.test"\nports = [1]\n', builtin=True)


def test_internal_error_is_one_line_without_debug(tmp_path):
    # A catalog module that blows up stands in for a bug: one line, exit 70, traceback with --debug.
    pkg = tmp_path / "sitecustomize.py"
    pkg.write_text(
        "import edgecheck.plan as p\n"
        "def boom(*a, **k):\n    raise RuntimeError('simulated bug')\n"
        "p.build_plan = boom\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = edgecheck("targets", "--region", "cn-hangzhou", env=env)
    assert proc.returncode == 70
    assert proc.stderr.strip() == (
        "edgecheck: internal error: RuntimeError: simulated bug (run again with --debug for a traceback)"
    )
    proc = edgecheck("--debug", "targets", "--region", "cn-hangzhou", env=env)
    assert proc.returncode not in (0, 1, 2) and "Traceback" in proc.stderr
