"""YurtHub as a local check: is the node's proxy to the cloud up, ready, and heartbeating?

What YurtHub's endpoints on its serve port (10267, pkg/yurthub/util/util.go YurtHubPort; bound to
--bind-address, default 127.0.0.1) actually say, from openyurtio/openyurt (fbefb6b)
pkg/yurthub/server/server.go registerHandlers:

- GET /v1/healthz: always 200 "OK" once the server runs (func healthz). Liveness only: it says
  nothing about the cloud. yurtadm polls it the same way (pkg/yurtadm/util/yurthub/yurthub.go
  CheckYurthubHealthz: body == "OK").
- GET /v1/readyz (since OpenYurt v1.3; older builds answer 404): 200 "OK" when its client and
  server certificates are ready, the yurt-hub-cfg ConfigMap is synced and the filters' resources
  are synced (cmd/yurthub/app/config/config.go ReadinessCheck), else 500 with the reason. Until
  ready, YurtHub answers every request from kubelet and pods with 503
  (pkg/yurthub/proxy/proxy.go ServeHTTP): the node is cut off whatever the network does.
- GET /metrics: `node_yurthub_server_healthy_status{server="https://..."}` (pkg/yurthub/metrics/
  metrics.go; the subsystem is the hub name, so ACK Edge's edge-hub exports
  node_edge_hub_server_healthy_status). 1 healthy, 0 unhealthy: YurtHub's heartbeat, a renewal of
  the node's Lease through that server, succeeded or failed (pkg/yurthub/healthchecker/
  cloudapiserver/prober.go Probe). It is only set on a change of state (markAsHealthy /
  markAsUnhealthy, not in the init phase), so its absence says nothing.

So the YurtHub check tells "YurtHub is up / ready / its heartbeat through the API server works";
the network path itself is measured by the API server check against the discovered address.

The probe speaks plain HTTP with http.client on loopback only: requests would honour
HTTP(S)_PROXY and could send a loopback request to a proxy.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from typing import Any, Dict, Optional, Tuple

from edgecheck.probes.budget import Budget, elapsed_ms
from edgecheck.records import record

YURTHUB_SERVE_PORT = 10267  # pkg/yurthub/util/util.go YurtHubPort: healthz, readyz, metrics

HEALTHZ_PATH = "/v1/healthz"
READYZ_PATH = "/v1/readyz"
METRICS_PATH = "/metrics"

_SMALL_BODY = 4096
_METRICS_BODY = 8 * 1024 * 1024
_USER_AGENT = "edgecheck"


@record(frozen=True)
class HttpOutcome:
    path: str
    status: Optional[int] = None  # None: no HTTP answer
    body: str = ""  # the first bytes, for messages (YurtHub's readiness reason)
    error: Optional[str] = None  # "refused" | "timeout" | "no-response: <what>"

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body.strip() == "OK"


@record(frozen=True)
class YurtHubProbe:
    address: str
    port: int
    healthz: HttpOutcome
    readyz: Optional[HttpOutcome] = None  # None: not asked (healthz failed or the budget ran out)
    server_health: Tuple[Tuple[str, float], ...] = ()  # from /metrics, in YurtHub's order
    metrics_error: Optional[str] = None
    ms: int = 0

    @property
    def answering(self) -> bool:
        return self.healthz.status is not None

    @property
    def ready(self) -> Optional[bool]:
        """None: not measured; a build before v1.3 has no readyz (404) and counts as ready."""
        r = self.readyz
        if r is None or r.status is None:
            return None
        return r.status == 404 or r.ok

    def to_json(self) -> Dict[str, Any]:
        def one(o: Optional[HttpOutcome]) -> Optional[Dict[str, Any]]:
            return None if o is None else {"status": o.status, "body": o.body[:200], "error": o.error}

        return {"yurthub": {
            "address": self.address, "port": self.port,
            "healthz": one(self.healthz), "readyz": one(self.readyz),
            "server_healthy_status": {server: value for server, value in self.server_health},
            "metrics_error": self.metrics_error, "ms": self.ms,
        }}


# ---------------------------------------------------------------------------------------------
# The probe (loopback I/O, bounded by the budget)
# ---------------------------------------------------------------------------------------------


def probe_yurthub(budget: Budget, address: str = "127.0.0.1", port: int = YURTHUB_SERVE_PORT,
                  hub_name: str = "yurthub") -> YurtHubProbe:
    """healthz, then readyz and the heartbeat metric, all within the budget. Loopback only."""
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"YurtHub is probed on loopback only, not {address}")
    start = time.monotonic()
    healthz = _get(address, port, HEALTHZ_PATH, budget, _SMALL_BODY)
    if healthz.status is None:
        return YurtHubProbe(address, port, healthz, ms=elapsed_ms(start))
    readyz = _get(address, port, READYZ_PATH, budget, _SMALL_BODY) if budget.left() > 0 else None
    health: Tuple[Tuple[str, float], ...] = ()
    metrics_error: Optional[str] = None
    if budget.left() <= 0:
        metrics_error = "timeout"
    else:
        metrics = _get(address, port, METRICS_PATH, budget, _METRICS_BODY)
        if metrics.status == 200:
            health = parse_server_health(metrics.body, hub_name)
        else:
            metrics_error = metrics.error or f"HTTP {metrics.status}"
    return YurtHubProbe(address, port, healthz, readyz, health, metrics_error, elapsed_ms(start))


def _get(address: str, port: int, path: str, budget: Budget, limit: int) -> HttpOutcome:
    import http.client  # lazily: it pulls in ssl, which --help does not need

    left = budget.left()
    if left <= 0:
        return HttpOutcome(path, error="timeout")
    conn = http.client.HTTPConnection(address, port, timeout=left)
    try:
        conn.request("GET", path, headers={"User-Agent": _USER_AGENT, "Accept": "text/plain"})
        response = conn.getresponse()
        chunks = []
        size = 0
        while size < limit:
            if conn.sock is not None:
                conn.sock.settimeout(max(0.01, budget.left()))
            chunk = response.read(min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if budget.left() <= 0:
                return HttpOutcome(path, error="timeout")
        return HttpOutcome(path, response.status, b"".join(chunks).decode("utf-8", "replace"))
    except ConnectionRefusedError:
        return HttpOutcome(path, error="refused")
    except (socket.timeout, TimeoutError):
        return HttpOutcome(path, error="timeout")
    except (http.client.HTTPException, OSError) as exc:
        return HttpOutcome(path, error=f"no-response: {type(exc).__name__}")
    finally:
        conn.close()


def parse_server_health(metrics_text: str, hub_name: str = "yurthub") -> Tuple[Tuple[str, float], ...]:
    """(server, value) of node_<hub>_server_healthy_status in Prometheus text format."""
    name = "node_" + hub_name.replace("-", "_") + "_server_healthy_status"
    pattern = re.compile(r"^" + re.escape(name) + r"\{[^}]*server=\"([^\"]*)\"[^}]*\}\s+(\S+)")
    out = []
    for line in metrics_text.splitlines():
        m = pattern.match(line)
        if m:
            try:
                out.append((m.group(1), float(m.group(2))))
            except ValueError:
                continue
    return tuple(out)
