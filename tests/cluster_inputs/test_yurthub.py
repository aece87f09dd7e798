"""YurtHub's local check: a loopback server answering like YurtHub, and dead or hung ones."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator, Tuple

import pytest

from edgecheck.checks.yurthub import check_yurthub, decide_yurthub
from edgecheck.cluster.discovery import Discovery, YurtHubInstall
from edgecheck.cluster.inputs import _components
from edgecheck.diagnosis import remediation
from edgecheck.diagnosis.scene import Scene
from edgecheck.model import CheckResult, Reason, Status
from edgecheck.plan import Selection, build_plan
from edgecheck.probes.budget import Budget
from edgecheck.probes.yurthub import HttpOutcome, YurtHubProbe, parse_server_health, probe_yurthub
from edgecheck.runcontext import RunContext

# Shaped as pkg/yurthub/server/server.go answers: healthz "OK", readyz "OK" or 500 + reason.
METRICS_HEALTHY = (
    "# HELP node_yurthub_server_healthy_status healthy status of remote servers. 1: healthy, 0: unhealthy\n"
    "# TYPE node_yurthub_server_healthy_status gauge\n"
    'node_yurthub_server_healthy_status{server="https://47.96.0.10:6443"} 1\n'
    "go_goroutines 42\n"
)
INSTALL = YurtHubInstall(name="yurthub", how="static pod /etc/kubernetes/manifests/yurthub.yaml",
                         path="/etc/kubernetes/manifests/yurthub.yaml", servers=("https://47.96.0.10:6443",))


def yurthub_target(install=INSTALL, kubelet_uses_yurthub=True, port=None):
    """The plan's target for this install, as a joined node's discovery hands it over."""
    from edgecheck.catalog import load_catalog
    from edgecheck.model import Phase

    components = _components(Discovery(None, install, kubelet_uses_yurthub, ()))
    if port is not None:
        components = tuple(dataclasses.replace(c, port=port) for c in components)
    plan = build_plan(load_catalog(), Selection("cn-hangzhou", phase=Phase.RUNNING, components=components))
    found = [t for t in plan.targets if t.id.startswith("component:")]
    return found[0] if found else None


def checked(port: int, install=INSTALL) -> CheckResult:
    return check_yurthub(yurthub_target(install, port=port), RunContext(timeout=2.0))


def advice(check: CheckResult) -> str:
    return remediation(check, Scene())


class FakeYurtHub:
    """A loopback HTTP server with YurtHub's paths; each path's (status, body) is settable."""

    def __init__(self, routes: Dict[str, Tuple[int, str]]):
        self.routes = routes
        self.paths_seen = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                fake.paths_seen.append(self.path)
                status, body = fake.routes.get(self.path, (404, "404 page not found\n"))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub() -> Iterator[FakeYurtHub]:
    server = FakeYurtHub({"/v1/healthz": (200, "OK"), "/v1/readyz": (200, "OK"), "/metrics": (200, METRICS_HEALTHY)})
    yield server
    server.close()


def budget(seconds: float = 2.0) -> Budget:
    return Budget(time.monotonic() + seconds)


def dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_yurthub_answering_like_yurthub_passes(hub):
    probe = probe_yurthub(budget(), "127.0.0.1", hub.port)
    assert probe.healthz.ok and probe.readyz is not None and probe.readyz.ok
    assert probe.server_health == (("https://47.96.0.10:6443", 1.0),)
    assert hub.paths_seen == ["/v1/healthz", "/v1/readyz", "/metrics"]
    r = checked(hub.port)
    assert (r.status, r.reason) == (Status.PASS, Reason.OK), r.message
    assert "healthz OK; ready; heartbeat through https://47.96.0.10:6443 healthy" in r.message
    assert r.evidence.to_json()["yurthub"]["server_healthy_status"] == {"https://47.96.0.10:6443": 1.0}
    assert r.id == "component:yurthub" and advice(r) == ""


def test_dead_yurthub_fails():
    r = checked(dead_port())
    probe = r.evidence.find(YurtHubProbe)
    assert probe.healthz.error == "refused" and probe.readyz is None
    assert (r.status, r.reason) == (Status.FAIL, Reason.COMPONENT_UNHEALTHY)
    assert "refuses connections" in r.message and "cut off from the cloud" in r.message
    assert "crictl ps -a --name yurt-hub" in advice(r) and advice(r).startswith("Start or fix yurthub")


def test_hung_yurthub_is_bounded_by_the_budget():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel completes the handshake; nobody ever answers
    try:
        start = time.monotonic()
        probe = probe_yurthub(budget(0.5), "127.0.0.1", listener.getsockname()[1])
        took = time.monotonic() - start
    finally:
        listener.close()
    assert probe.healthz.error == "timeout"
    assert took < 0.5 + 1.0  # bounded by the budget (plus scheduling slack on a shared machine)
    status, reason, message = decide_yurthub("yurthub", probe)
    assert (status, reason) == (Status.FAIL, Reason.COMPONENT_UNHEALTHY) and "does not answer in time" in message


def test_not_ready_yurthub_fails_with_its_reason(hub):
    hub.routes["/v1/readyz"] = (500, "yurt-hub-cfg configmap is not synced\n")
    r = checked(hub.port)
    assert (r.status, r.reason) == (Status.FAIL, Reason.COMPONENT_UNHEALTHY)
    assert "not ready" in r.message and "yurt-hub-cfg configmap is not synced" in r.message
    assert "see the API server check" in advice(r)


def test_old_yurthub_without_readyz_passes(hub):
    del hub.routes["/v1/readyz"]
    r = checked(hub.port)
    assert r.status is Status.PASS and "no readyz" in r.message


def test_failing_heartbeat_fails_and_partial_warns(hub):
    hub.routes["/metrics"] = (200, METRICS_HEALTHY.replace("} 1", "} 0"))
    r = checked(hub.port)
    assert r.status is Status.FAIL and "heartbeat" in r.message and "cache" in r.message
    hub.routes["/metrics"] = (200, METRICS_HEALTHY.replace("} 1", "} 0") +
                              'node_yurthub_server_healthy_status{server="https://47.96.0.11:6443"} 1\n')
    r = checked(hub.port)
    assert r.status is Status.WARN and "https://47.96.0.10:6443" in r.message


def test_healthz_not_ok(hub):
    hub.routes["/v1/healthz"] = (500, "boom")
    r = checked(hub.port)
    assert (r.status, r.reason) == (Status.FAIL, Reason.COMPONENT_UNHEALTHY) and "HTTP 500" in r.message


def test_loopback_only():
    with pytest.raises(ValueError, match="loopback only"):
        probe_yurthub(budget(), "192.0.2.1", 10267)
    assert INSTALL.probe_address() == ("127.0.0.1", 10267)
    assert dataclasses.replace(INSTALL, bind_address="0.0.0.0", serve_port=20267).probe_address() == ("127.0.0.1", 20267)
    assert dataclasses.replace(INSTALL, bind_address="192.168.1.5").probe_address() is None
    t = yurthub_target(dataclasses.replace(INSTALL, bind_address="192.168.1.5"))
    assert t.skip is not None and t.skip.reason is Reason.NOT_APPLICABLE and "loopback only" in t.skip.message
    # kubelet goes through a YurtHub edgecheck did not find: probed where YurtHub serves by default
    t = yurthub_target(None, kubelet_uses_yurthub=True)
    assert (t.host, t.port, t.skip) == ("127.0.0.1", 10267, None)


def test_no_yurthub_no_check():
    assert yurthub_target(None, kubelet_uses_yurthub=False) is None


def test_systemd_advice_names_the_unit():
    install = dataclasses.replace(INSTALL, how="systemd unit /etc/systemd/system/yurthub.service",
                                  path="/etc/systemd/system/yurthub.service")
    probe = YurtHubProbe("127.0.0.1", 10267, HttpOutcome("/v1/healthz", error="refused"))
    status, reason, message = decide_yurthub("yurthub", probe)
    from edgecheck.model import Evidence
    r = CheckResult(yurthub_target(install), status, reason, message, evidence=Evidence(probe))
    assert "journalctl -u yurthub.service" in advice(r)


def test_parse_server_health_edge_hub_name():
    text = ('node_edge_hub_server_healthy_status{server="https://a:6443"} 0\n'
            'node_yurthub_server_healthy_status{server="https://b:6443"} 1\n')
    assert parse_server_health(text, "edge-hub") == (("https://a:6443", 0.0),)
    assert parse_server_health(text) == (("https://b:6443", 1.0),)
