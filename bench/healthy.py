"""A healthy run at the floor (issue 17): the in-suite lab's healthy plan, timed as a whole
process and by phase, against a sequential curl/nc/chronyd script probing the same targets.

    sudo python3 -m bench.healthy [--repeat 5] [--combo public,join,1.24]

Starts the integration lab (tests/lab/lab.py: real dnsmasq, nginx, chronyd, charon in a "cloud"
namespace), then in the lab's node namespace, interleaved, `--repeat` times each:
- `edgecheck run` (the real CLI) as the packages start it: `python3 -S` (no site: the .pyz wrapper
  runs `python3 -I -S`), the project and its dependencies on PYTHONPATH;
- the same CLI under a driver that times its phases (interpreter start, imports, plan, probes,
  diagnosis, render; the driver measures from inside the process, the interpreter is the rest);
- a bash script probing the plan's network targets one after another: curl (HTTPS/HTTP, with the
  same CA file), `nc -z` (TCP), `nc -u -z` (UDP 4500), `chronyd -Q` (NTP, one sample).
Twice: with --ca-bundle the lab CA alone, and with the system bundle plus the lab CA appended (so
the certificate-parsing cost of a real node is counted; curl gets the same file).
Prints medians, the ratio edgecheck / script, the median engine time of an HTTPS check and the
peak RSS. No packet leaves the lab's namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DRIVER = r"""
import json, sys, time
T = {"start": time.monotonic()}
import edgecheck.cli as cli
from edgecheck import engine, runner, report as reports
import edgecheck.diagnosis as diagnosis
T["imports"] = time.monotonic() - T["start"]

def timed(module, name, key):
    original = getattr(module, name)
    def wrapper(*args, **kwargs):
        began = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            T[key] = T.get(key, 0.0) + time.monotonic() - began
    setattr(module, name, wrapper)

timed(runner, "prepare", "plan"); timed(engine, "run_checks", "probes")
timed(diagnosis, "diagnose", "diagnosis"); timed(reports, "render", "render")
try:
    cli.cli_entry(sys.argv[1:])
except SystemExit:
    pass
T["inside"] = time.monotonic() - T["start"]
sys.stderr.write("EDGECHECK-PHASES " + json.dumps(T) + "\n")
"""


ALONE = r"""
import json, sys, time, dataclasses
from edgecheck import runner
from edgecheck.engine import run_checks
argv = sys.argv[2:]
opts = {"ca_bundle": sys.argv[1], "raven_gateways": []}
for key, value in zip(argv[::2], argv[1::2]):
    key = key[2:].replace("-", "_")
    if key == "raven_gateway":
        opts["raven_gateways"].append(value)
    else:
        opts[key] = value
prepared = runner.prepare(opts)
https = [t for t in prepared.plan.targets if t.probe == "https" and t.skip is None]
ctx = dataclasses.replace(prepared.ctx, deadline=time.monotonic() + 60, targets=tuple(https))
run_checks(https, ctx, max_in_flight=1)
print(json.dumps([r.duration_ms for r in run_checks(https, ctx, max_in_flight=1)]))
"""


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _env(pycache: str) -> Dict[str, str]:
    """As on a node: bytecode cached after the first run (the .pyz extracts its tree into a cache
    directory where Python writes __pycache__); here into a private prefix, not the source tree."""
    site = sysconfig.get_paths()["purelib"]
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith("EDGECHECK_") and k != "PYTHONDONTWRITEBYTECODE"
            and k.upper() not in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY", "REQUESTS_CA_BUNDLE",
                                  "SSL_CERT_FILE")}
    keep["PYTHONPATH"] = os.pathsep.join([str(REPO), site])
    keep["PYTHONPYCACHEPREFIX"] = pycache
    return keep


def _timed(argv: List[str], env: Dict[str, str]) -> Tuple[float, int, str, str]:
    """(wall seconds, peak RSS in KiB of the process, stdout, stderr). `ip netns exec` execs the
    command, so the child's own rusage (wait4) is the command's."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    box: Dict[str, str] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: box.__setitem__(k, f.read()))
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    _, _, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    for r in readers:
        r.join()
    proc.returncode = 0  # reaped by wait4 above
    return wall, int(usage.ru_maxrss), box.get("out", ""), box.get("err", "")


def script_for(plan: Dict[str, Any], bundle: str, cluster_ca: str, timeout: float) -> str:
    lines = ["#!/bin/bash", "fail=0"]
    for t in plan["targets"]:
        tgt, probe = t.get("target") or {}, t["probe"]
        if t["kind"] != "endpoint" or t.get("skip") or not tgt.get("host"):
            continue
        host, port = tgt["host"], tgt["port"]
        ca = cluster_ca if t.get("trust") == "cluster" else bundle
        if probe == "https":
            cmd = f"curl -sS -o /dev/null --max-time {timeout:g} --cacert {ca} https://{host}:{port}/"
        elif probe == "http":
            cmd = f"curl -sS -o /dev/null --max-time {timeout:g} http://{host}:{port}/"
        elif probe == "tcp":
            cmd = f"nc -z -w {int(timeout)} {host} {port}"
        elif probe == "ike":
            cmd = f"nc -u -z -w 1 {host} {port}"
        elif probe == "ntp":
            cmd = f"chronyd -Q -t {int(timeout)} 'server {host} iburst maxsamples 1' 2>/dev/null"
        else:
            continue
        lines.append(f"{cmd} || {{ fail=$((fail+1)); echo 'failed: {probe} {host}:{port}' >&2; }}")
    lines.append("exit $fail")
    return "\n".join(lines) + "\n"


def measure(lab: Any, args: List[str], bundle: str, script: Path, repeat: int) -> Dict[str, Any]:
    node = lab.topology.node
    env = _env(str(script.parent / "pycache"))
    cli = node.exec_argv([sys.executable, "-S", "-m", "edgecheck", "run", *args, "--ca-bundle", bundle,
                          "--format", "json"])
    driver = node.exec_argv([sys.executable, "-S", "-c", DRIVER, "run", *args, "--ca-bundle", bundle,
                             "--format", "json"])
    bash = node.exec_argv(["bash", str(script)])
    out: Dict[str, Any] = {"edgecheck": [], "script": [], "phases": [], "https_ms": [], "rss": [], "statuses": set(),
                           "layers": []}
    _timed(cli, env)  # warm the page cache
    for _ in range(repeat):
        wall, rss, stdout, err = _timed(cli, env)
        report = json.loads(stdout)
        out["edgecheck"].append(wall)
        out["rss"].append(rss)
        out["statuses"] |= {f"{c['status']}/{c['reason']}" for c in report["checks"]}
        https = [c for c in report["checks"] if c["kind"] == "endpoint" and "tls" in c["evidence"]]
        out["https_ms"] += [c["duration_ms"] for c in https]
        out["layers"] += [(c["evidence"].get("dns_ms") or 0, c["evidence"]["tls"]["ms"], c["evidence"]["http"]["ms"])
                          for c in https]
        out["checks"] = len(report["checks"])
        wall_s, _, _, err_s = _timed(bash, env)
        out["script"].append(wall_s)
        out["script_errors"] = err_s.strip()
        wall_d, _, _, err_d = _timed(driver, env)
        _, _, alone, _ = _timed(node.exec_argv([sys.executable, "-S", "-c", ALONE, bundle, *args]), env)
        out.setdefault("alone", []).extend(json.loads(alone or "[]"))
        phases = json.loads(next(line for line in err_d.splitlines() if line.startswith("EDGECHECK-PHASES"))[17:])
        phases["interpreter"] = wall_d - phases["inside"]
        phases["wall"] = wall_d
        out["phases"].append(phases)
    return out


def show(label: str, m: Dict[str, Any]) -> None:
    e, s = _median(m["edgecheck"]), _median(m["script"])
    keys = ("interpreter", "imports", "plan", "probes", "diagnosis", "render")
    phases = {k: _median([p.get(k, 0.0) for p in m["phases"]]) * 1000 for k in keys}
    rest = _median([p["wall"] for p in m["phases"]]) * 1000 - sum(phases.values())
    print(f"\n[{label}] {m['checks']} checks, x{len(m['edgecheck'])} interleaved")
    print(f"  edgecheck run (whole process)  median {e * 1000:7.1f} ms  (min {min(m['edgecheck']) * 1000:.1f})")
    print(f"  sequential curl/nc/chronyd     median {s * 1000:7.1f} ms  (min {min(m['script']) * 1000:.1f})")
    print(f"  ratio edgecheck / script       {e / s:.2f}")
    print("  phases (driver run, medians):  " + ", ".join(f"{k} {v:.1f} ms" for k, v in phases.items())
          + f", exit and the rest {rest:.1f} ms")
    layers = m["layers"]
    print(f"  HTTPS checks: median engine time {_median(m['https_ms']):.0f} ms "
          f"(n={len(m['https_ms'])}, max {max(m['https_ms'])} ms); of which DNS {_median([x[0] for x in layers]):.0f}, "
          f"TLS handshake {_median([x[1] for x in layers]):.0f}, HTTP {_median([x[2] for x in layers]):.0f} ms")
    if m.get("alone"):
        print(f"  the same HTTPS checks one at a time (engine, max_in_flight=1): median {_median(m['alone']):.1f} ms")
    print(f"  peak RSS {max(m['rss']) / 1024:.1f} MiB; statuses {sorted(m['statuses'])}")
    if m.get("script_errors"):
        print(f"  script errors: {m['script_errors']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--combo", default="public,join,1.24")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    from tests.lab.lab import Lab
    from tests.lab.scenarios import base_args

    combo = tuple(args.combo.split(","))
    lab = Lab(regions=("cn-hangzhou",))
    lab.start()
    try:
        run_args = base_args(lab, combo)  # type: ignore
        selection = list(run_args)
        for option in ("--timeout", "--apiserver-ca"):
            i = selection.index(option)
            del selection[i:i + 2]
        targets = lab.topology.node.run([sys.executable, "-m", "edgecheck", "targets", *selection, "--format", "json"])
        plan = json.loads(targets.stdout)
        system = Path("/etc/ssl/certs/ca-certificates.crt")
        with tempfile.TemporaryDirectory(prefix="ecp-healthy-") as d:
            bundles = {"--ca-bundle lab CA": str(lab.ca.cert)}
            if system.is_file():
                both = Path(d) / "system-plus-lab.pem"
                both.write_text(system.read_text() + Path(lab.ca.cert).read_text())
                bundles[f"--ca-bundle system bundle ({system}) + lab CA"] = str(both)
            for label, bundle in bundles.items():
                script = Path(d) / "sequential.sh"
                script.write_text(script_for(plan, bundle, str(lab.cluster_ca.cert), 2.0))
                show(label, measure(lab, run_args, bundle, script, args.repeat))
    finally:
        lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
