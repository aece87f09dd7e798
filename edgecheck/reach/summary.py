"""Pure renderers for `edgecheck listen`: no I/O, no clock (times are inputs).

The banner (token, the exact `reach` command), one line per event, the closing summary in text
and JSON (`edgecheck/listen/v1`, schema in listen_schema.json next to this file). What needs each
port is the PortSpec's label, from the plan (the catalog's components). `reach` results are
ordinary check results (edgecheck/checks/reach.py) rendered by edgecheck/report.
"""

from __future__ import annotations

import datetime
import shlex
from typing import Any, Dict, Optional, Sequence

from edgecheck.reach.listener import BindState, Binding, ListenEvent, ListenSummary, PortReport
from edgecheck.reach.protocol import Verdict

LISTEN_SCHEMA = "edgecheck/listen/v1"

def listen_schema() -> Dict[str, Any]:
    """The JSON Schema of `listen --format json` (listen_schema.json, shipped in the package)."""
    import json
    from importlib import resources

    data: Dict[str, Any] = json.loads(resources.files(__package__).joinpath("listen_schema.json").read_text("utf-8"))
    return data


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%H:%M:%S")


# --- listen: banner and events ------------------------------------------------------------------

def reach_command(token: str, nodes: Sequence[str], options: Sequence[str] = ()) -> str:
    """The exact command for the other side, shell-quoted. `options`: the selection options the
    listener used (e.g. ["--mode", "dedicated", "--network-plugin", "flannel"])."""
    argv = ["edgecheck", "reach", *options, "--token", token, *(nodes or ["NODE_ADDRESS"])]
    return " ".join(shlex.quote(a) for a in argv)


def listen_banner(bindings: Sequence[Binding], token: str, fingerprint: str, duration_s: float,
                  command: str) -> str:
    lines = [f"edgecheck listen: answering probes for {duration_s:g} s (Ctrl-C stops earlier)",
             f"token: {token}   (fingerprint {fingerprint})"]
    for b in bindings:
        purpose = b.spec.label
        name = f"{b.spec.port}/{b.spec.protocol}"
        if b.state == BindState.BOUND:
            lines.append(f"  {name:<10} listening ({', '.join(b.families)})  {purpose}".rstrip())
        else:
            lines.append(f"  {name:<10} {b.state}: {b.detail}  {purpose}".rstrip())
    if any(b.state == BindState.BOUND for b in bindings):
        lines.append("On the other side (a host in the VPC, or another edge node), run:")
        lines.append(f"  {command}")
    else:
        lines.append("No port could be opened: nothing to probe (see above).")
    return "\n".join(lines)


_KIND_WORDS = {
    Verdict.VALID: "valid token, answered",
    Verdict.STALE: "valid token but the prober's clock is off, answered 'stale'",
    Verdict.REPLAY: "replayed probe, not answered",
    Verdict.BAD_TOKEN: "wrong token, not answered",
    Verdict.TRUNCATED: "truncated request, ignored",
    Verdict.OVERSIZED: "oversized request, ignored",
    Verdict.GARBAGE: "not an edgecheck probe, ignored",
    Verdict.BAD_VERSION: "probe from another edgecheck protocol version, ignored",
    Verdict.BAD_TYPE: "unexpected message type, ignored",
    Verdict.WRONG_PROTOCOL: "probe made for the other protocol, ignored",
    "connect-only": "TCP connection without data (a port check), closed",
    "connection-limit": "too many connections at once, closed",
    "not-unicast": "broadcast or multicast datagram, ignored",
}


def event_line(event: ListenEvent) -> str:
    """One log line per received probe (source address and port, protocol, token valid or not)."""
    when = _clock(event.at)
    if event.kind == "suppressed":
        return f"{when} ... {event.count} more event(s) not shown (log rate limit)"
    if event.kind == "socket-error":
        return f"{when} error: {event.detail}"
    where = f"{event.port}/{event.protocol}" if event.port else "-"
    source = str(event.source) if event.source else "?"
    words = _KIND_WORDS.get(event.kind, event.kind)
    detail = f" ({event.detail})" if event.detail else ""
    return f"{when} {where:<10} from {source:<22} {words}{detail}"


# --- listen: summary ----------------------------------------------------------------------------

def listen_summary_text(summary: ListenSummary) -> str:
    ran = summary.ended_at - summary.started_at
    lines = [f"edgecheck listen: ran {ran:.1f} s of {summary.duration_s:g} s, stopped by {summary.stop_reason} "
             f"(token fingerprint {summary.key_fingerprint})"]
    for p in summary.ports:
        name = f"{p.spec.port}/{p.spec.protocol}"
        purpose = p.spec.label
        if p.state != BindState.BOUND:
            lines.append(f"  {name:<10} {p.state.upper()}: {p.detail}")
            continue
        if p.reached:
            sources = ", ".join(f"{s.address} ({s.valid} probe{'s' if s.valid != 1 else ''})"
                                for s in p.sources if s.valid)
            more = f" and {p.sources_not_tracked} request(s) from more sources" if p.sources_not_tracked else ""
            lines.append(f"  {name:<10} REACHED from {sources}{more}  {purpose}".rstrip())
        else:
            lines.append(f"  {name:<10} NOT REACHED: no valid probe arrived  {purpose}".rstrip())
        others = {k: n for k, n in p.counts.items() if k != Verdict.VALID}
        if others:
            parts = ", ".join(f"{n} {k}" for k, n in sorted(others.items()))
            wrong = [s.address for s in p.sources if s.counts.get(Verdict.BAD_TOKEN)]
            who = f"; wrong token from {', '.join(wrong[:5])}" if wrong else ""
            lines.append(f"  {'':<10} also received: {parts}{who}")
    held = [p for p in summary.ports if p.state == BindState.HELD]
    if held:
        lines.append("Held ports were left alone: `reach` probes them directly (on a joined node they belong "
                     "to kubelet, node-exporter or flannel).")
    if summary.log_suppressed:
        lines.append(f"{summary.log_suppressed} log line(s) were suppressed by the rate limit (counts above are complete).")
    for e in summary.errors:
        lines.append(f"error: {e}")
    return "\n".join(lines)


def _port_json(p: PortReport) -> Dict[str, Any]:
    return {
        "id": f"listen:{p.spec.port}/{p.spec.protocol}",
        "port": p.spec.port,
        "protocol": p.spec.protocol,
        "purpose": p.spec.label,
        "state": p.state,
        "families": list(p.families),
        "detail": p.detail,
        "reached": p.reached,
        "counts": dict(sorted(p.counts.items())),
        "sources": [{"address": s.address, "last_port": s.last_port, "first_seen": rfc3339(s.first_seen),
                     "last_seen": rfc3339(s.last_seen), "valid": s.valid, "counts": dict(sorted(s.counts.items()))}
                    for s in p.sources],
        "sources_not_tracked": p.sources_not_tracked,
    }


def listen_summary_json(summary: ListenSummary, *, agent_version: str, generated_at: float,
                        host: Optional[Dict[str, Any]] = None, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The `listen --format json` document (never contains the token, only its fingerprint)."""
    bound = [p for p in summary.ports if p.state == BindState.BOUND]
    counts = {"ports": len(summary.ports), "bound": len(bound), "reached": sum(1 for p in bound if p.reached),
              "not_reached": sum(1 for p in bound if not p.reached)}
    for state in (BindState.HELD, BindState.DENIED, BindState.FAILED):
        counts[state] = sum(1 for p in summary.ports if p.state == state)
    return {
        "schema": LISTEN_SCHEMA,
        "generated_at": rfc3339(generated_at),
        "agent": {"version": agent_version},
        "host": dict(host or {}),
        "params": dict(params or {}),
        "started_at": rfc3339(summary.started_at),
        "ended_at": rfc3339(summary.ended_at),
        "duration_s": summary.duration_s,
        "ran_s": round(summary.ended_at - summary.started_at, 3),
        "stop_reason": summary.stop_reason,
        "token_fingerprint": summary.key_fingerprint,
        "summary": counts,
        "ports": [_port_json(p) for p in summary.ports],
        "log_suppressed": summary.log_suppressed,
        "errors": list(summary.errors),
    }
