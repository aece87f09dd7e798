"""The report as a node_exporter textfile-collector file (Prometheus text format 0.0.4).

Per-check status follows the kube-state-metrics pattern (kube_pod_status_phase): every check
always exports one 0/1 series per status,

    edgecheck_check_status{id="tool:socat",kind="tool",status="fail"} 1
    edgecheck_check_status{id="tool:socat",kind="tool",status="pass"} 0
    ...

so the set of series never changes when a check flips between pass and fail. That keeps
`for:` clauses in alert rules working across flaps and avoids stale-series gaps; the alert is
simply `edgecheck_check_status{status="fail"} == 1`. The reason is not a label there (it
changes more often than the status and would churn series); it sits on
`edgecheck_check_info{id,kind,name,reason,target_host,target_port,target_protocol} 1`, joined with
`* on(id) group_left(reason, name) edgecheck_check_info` when an alert needs to say why.

No sample carries a timestamp: node_exporter rejects the whole file if one does.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from edgecheck.evidence import ClockEvidence
from edgecheck.model import CheckResult, Report, Status
from edgecheck.report.redact import redact_text

PREFIX = "edgecheck"
STATUSES = tuple(s.value for s in Status)


def escape_label(value: Any) -> str:
    """Label value escaping of the text format: backslash, double quote, newline (credentials in
    a URL are removed first)."""
    return redact_text(str(value)).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(pairs: Sequence[Tuple[str, Any]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs) + "}"


class _Family:
    def __init__(self, name: str, help_text: str, mtype: str = "gauge") -> None:
        self.name = f"{PREFIX}_{name}"
        self.help = help_text
        self.type = mtype
        self.samples: List[Tuple[Sequence[Tuple[str, Any]], float]] = []

    def add(self, value: float, *labels: Tuple[str, Any]) -> "_Family":
        self.samples.append((labels, value))
        return self

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.type}"
        for labels, value in self.samples:
            yield f"{self.name}{_labels(labels)} {_number(value)}"


def _epoch(rfc3339: str) -> Optional[float]:
    text = (rfc3339 or "").strip()
    if not text:
        return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _value(enum_or_str: Any) -> str:
    return str(getattr(enum_or_str, "value", enum_or_str))


def _clock_offset(checks: Sequence[CheckResult]) -> Optional[float]:
    for c in checks:
        clock = c.evidence.find(ClockEvidence)
        if clock is not None and clock.offset_s is not None and math.isfinite(clock.offset_s):
            return clock.offset_s
    return None


def _run_families(report: Report) -> List[_Family]:
    """The run as a whole: verdict, when, how long, counts, plan warnings, what was checked."""
    families = [_Family("ready", "1 if no check failed (the host can join / keep working), else 0.").add(
        1 if report.ready else 0)]
    ts = _epoch(report.generated_at)
    if ts is not None:
        families.append(_Family("last_run_timestamp_seconds",
                                "Unix time of the last edgecheck run (generated_at); alert when it gets old.").add(ts))
    families.append(_Family("run_duration_seconds", "Wall time of the last edgecheck run.").add(report.duration_ms / 1000.0))
    checks_f = _Family("checks", "Number of checks per status in the last run.")
    for s in STATUSES:
        checks_f.add(report.summary.get(s, 0), ("status", s))
    families.append(checks_f)
    families.append(_Family("plan_warnings", "Warnings about the plan itself (unknown region, ignored input).").add(
        len(report.warnings)))
    params: Dict[str, Any] = report.params
    info = [("version", report.agent_version)]
    info += [(key, _value(params[key])) for key in ("region", "mode", "phase", "k8s_version")
             if params.get(key) not in (None, "")]
    families.append(_Family("info", "edgecheck version and the plan it checked; value is always 1.").add(1, *info))
    return families


def _check_families(checks: Sequence[CheckResult]) -> List[_Family]:
    status_f = _Family("check_status",
                       "1 for the status a check has, 0 for the other statuses; one series per check and status.")
    info_f = _Family("check_info", "What a check looks at and why it has its status; value is always 1.")
    duration_f = _Family("check_duration_seconds", "How long a check took in the last run.")
    seen = set()
    for c in checks:
        # Duplicate ids would make duplicate series, which the collector rejects: first one wins.
        if c.id in seen:
            continue
        seen.add(c.id)
        kind, status, t = c.kind.value, c.status.value, c.target
        for s in STATUSES:
            status_f.add(1 if s == status else 0, ("id", c.id), ("kind", kind), ("status", s))
        # Prefixed: "host" and "port" are common target labels in scrape configs.
        info_f.add(1, ("id", c.id), ("kind", kind), ("name", c.name), ("reason", c.reason.value),
                   ("target_host", t.host or ""), ("target_port", t.port if t.port is not None else ""),
                   ("target_protocol", t.protocol or ""))
        duration_f.add(c.duration_ms / 1000.0, ("id", c.id), ("kind", kind))
    return [status_f, info_f, duration_f]


def render_prometheus(report: Report) -> str:
    families = _run_families(report) + _check_families(report.checks)
    offset = _clock_offset(report.checks)
    if offset is not None:
        families.append(_Family("clock_offset_seconds",
                                "Local clock minus NTP time, as measured by the clock check.").add(offset))
    lines: List[str] = []
    for fam in families:
        if fam.samples:
            lines.extend(fam.lines())
    return "\n".join(lines) + "\n"
