"""YurtHub's local check: a loopback server answering like YurtHub, and dead or hung ones."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator, Optional, Tuple

import pytest

from edgecheck.discovery import YurtHubInstall
from edgecheck.model import Status
from edgecheck.probes.budget import Budget
from edgecheck.yurthub import (
    COMPONENT_UNHEALTHY, HttpOutcome, YurtHubProbe, decide_yurthub, parse_server_health, probe_address, probe_yurthub,
)

# Shaped as pkg/yurthub/server/server.go answers: healthz "OK", readyz "OK" or 500 + reason.
METRICS_HEALTHY = (
    "# HELP node_yurthub_server_healthy_status healthy status of remote servers. 1: healthy, 0: unhealthy\n"
    "# TYPE node_yurthub_server_healthy_status gauge\n"
    'node_yurthub_server_healthy_status{server="https://47.96.0.10:6443"} 1\n'
    "go_goroutines 42\n"
)
INSTALL = YurtHubInstall(name="yurthub", how="static pod /etc/kubernetes/manifests/yurthub.yaml",
                         path="/etc/kubernetes/manifests/yurthub.yaml", servers=("https://47.96.0.10:6443",))


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
    verdict = decide_yurthub(probe, INSTALL, kubelet_uses_yurthub=True)
    assert verdict.status is Status.PASS and verdict.reason == "ok"
    assert "healthz OK; ready; heartbeat through https://47.96.0.10:6443 healthy" in verdict.message
    assert probe.evidence()["server_healthy_status"] == {"https://47.96.0.10:6443": 1.0}


def test_dead_yurthub_fails_refused():
    probe = probe_yurthub(budget(), "127.0.0.1", dead_port())
    assert probe.healthz.error == "refused" and probe.readyz is None
    verdict = decide_yurthub(probe, INSTALL, kubelet_uses_yurthub=True)
    assert verdict.status is Status.FAIL and verdict.reason == "refused"
    assert "refuses connections" in verdict.message and "cut off from the cloud" in verdict.message
    assert "crictl ps -a --name yurt-hub" in verdict.remediation


def test_hung_yurthub_is_a_timeout_within_the_budget():
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
    assert decide_yurthub(probe, None, kubelet_uses_yurthub=True).reason == "timeout"


def test_not_ready_yurthub_fails_with_its_reason(hub):
    hub.routes["/v1/readyz"] = (500, "yurt-hub-cfg configmap is not synced\n")
    verdict = decide_yurthub(probe_yurthub(budget(), "127.0.0.1", hub.port), INSTALL, True)
    assert verdict.status is Status.FAIL and verdict.reason == COMPONENT_UNHEALTHY
    assert "not ready" in verdict.message and "yurt-hub-cfg configmap is not synced" in verdict.message


def test_old_yurthub_without_readyz_passes(hub):
    del hub.routes["/v1/readyz"]
    verdict = decide_yurthub(probe_yurthub(budget(), "127.0.0.1", hub.port), INSTALL, True)
    assert verdict.status is Status.PASS and "no readyz" in verdict.message


def test_failing_heartbeat_fails_and_partial_warns(hub):
    hub.routes["/metrics"] = (200, METRICS_HEALTHY.replace("} 1", "} 0"))
    verdict = decide_yurthub(probe_yurthub(budget(), "127.0.0.1", hub.port), INSTALL, True)
    assert verdict.status is Status.FAIL and "heartbeat" in verdict.message and "cache" in verdict.message
    hub.routes["/metrics"] = (200, METRICS_HEALTHY.replace("} 1", "} 0") +
                              'node_yurthub_server_healthy_status{server="https://47.96.0.11:6443"} 1\n')
    verdict = decide_yurthub(probe_yurthub(budget(), "127.0.0.1", hub.port), INSTALL, True)
    assert verdict.status is Status.WARN and "https://47.96.0.10:6443" in verdict.message


def test_healthz_not_ok(hub):
    hub.routes["/v1/healthz"] = (500, "boom")
    verdict = decide_yurthub(probe_yurthub(budget(), "127.0.0.1", hub.port), INSTALL, True)
    assert verdict.status is Status.FAIL and verdict.reason == COMPONENT_UNHEALTHY and "HTTP 500" in verdict.message


def test_loopback_only():
    with pytest.raises(ValueError, match="loopback only"):
        probe_yurthub(budget(), "192.0.2.1", 10267)
    assert probe_address(None) == ("127.0.0.1", 10267)
    assert probe_address(INSTALL) == ("127.0.0.1", 10267)
    from dataclasses import replace
    assert probe_address(replace(INSTALL, bind_address="0.0.0.0", serve_port=20267)) == ("127.0.0.1", 20267)
    assert probe_address(replace(INSTALL, bind_address="192.168.1.5")) is None
    verdict = decide_yurthub(None, replace(INSTALL, bind_address="192.168.1.5"), True)
    assert verdict.status is Status.SKIP and "loopback only" in verdict.message


def test_no_yurthub_is_not_applicable():
    verdict = decide_yurthub(None, None, kubelet_uses_yurthub=False)
    assert verdict.status is Status.SKIP and verdict.reason == "not-applicable"


def test_systemd_remediation_names_the_unit():
    from dataclasses import replace
    install = replace(INSTALL, how="systemd unit /etc/systemd/system/yurthub.service",
                      path="/etc/systemd/system/yurthub.service")
    probe = YurtHubProbe("127.0.0.1", 10267, HttpOutcome("/v1/healthz", error="refused"))
    assert "journalctl -u yurthub.service" in decide_yurthub(probe, install, True).remediation


def test_parse_server_health_edge_hub_name():
    text = ('node_edge_hub_server_healthy_status{server="https://a:6443"} 0\n'
            'node_yurthub_server_healthy_status{server="https://b:6443"} 1\n')
    assert parse_server_health(text, "edge-hub") == (("https://a:6443", 0.0),)
    assert parse_server_health(text) == (("https://b:6443", 1.0),)
