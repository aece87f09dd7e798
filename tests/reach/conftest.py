"""Fixtures for the listen/reach tests: one three-namespace lab per session (see topo.py).

Needs root, iproute2 and iptables/ip6tables; the joined-node case also needs openssl and nginx.
A missing prerequisite skips here and fails under CI=true (tests/conftest.py turns skips into
failures there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Iterator

import pytest

from tests.reach.topo import NODE4, NODE6, ReachLab, missing_tools

TOKEN = "reach-test-token-0123456789"


@pytest.fixture(scope="session")
def reach_lab() -> Iterator[ReachLab]:
    if os.geteuid() != 0:
        pytest.skip("the reach lab needs root (network namespaces)")
    missing = missing_tools(["ss"])
    if missing:
        pytest.skip(f"the reach lab needs {', '.join(missing)} (iproute2, iptables)")
    lab = ReachLab()
    try:
        yield lab
    finally:
        lab.close()


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def components(reach_lab: ReachLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    missing = [t for t in ("openssl", "nginx") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"the joined-node case needs {', '.join(missing)} (Debian: openssl nginx-light)")
    d = tmp_path_factory.mktemp("joined")
    (d / "logs").mkdir()
    ca_key, ca_crt, key, csr, crt, ext = (d / n for n in ("ca.key", "ca.crt", "node.key", "node.csr", "node.crt",
                                                          "node.ext"))
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *curve, "-days", "2", "-subj", "/CN=cluster-ca", "-keyout", str(ca_key),
             "-out", str(ca_crt), "-addext", "basicConstraints=critical,CA:TRUE")
    ext.write_text(f"subjectAltName=IP:{NODE4}\nextendedKeyUsage=serverAuth\n")
    _openssl("req", *curve, "-subj", "/CN=edge-node-kubelet", "-keyout", str(key), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(crt))
    body = 'location / { default_type text/plain; return 200 "ok\\n"; }'
    conf = d / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {d / 'nginx.pid'};
error_log {d / 'logs' / 'error.log'} warn;
events {{ worker_connections 64; }}
http {{
  access_log {d / 'logs' / 'access.log'};
  client_body_temp_path {d / 'body'};
  ssl_certificate {crt};
  ssl_certificate_key {key};
  server {{ listen {NODE4}:10250 ssl; listen [{NODE6}]:10250 ssl; {body} }}
  server {{ listen {NODE4}:10255; {body} }}
  server {{ listen {NODE4}:9100; {body} }}
  server {{ listen {NODE4}:9445 ssl; {body} }}
}}
""")
    proc = reach_lab.node.spawn(["nginx", "-p", str(d), "-c", str(conf), "-e", str(d / "logs" / "error.log"),
                                 "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not all(f":{p} " in reach_lab.listening(reach_lab.node) for p in (10250, 10255, 9100, 9445)):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)
