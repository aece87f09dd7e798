"""Pure renderers and decisions for `listen` and `reach`: no I/O, no clock (times are inputs).

- listen: the banner (token, reach command), one line per event, the closing summary in text and
  JSON (`edgecheck/listen/v1`, schema in listen_schema.json next to this file);
- reach: a suggested (status, reason, message) per probe result, the remediation text (seed 003's
  device order for dedicated mode, seed 001's host-CIDR rule for public mode), and the evidence
  object (schema in reach_evidence_schema.json).

Status and reason values are plain strings spelled as in SPEC sections 3 and 7 so the caller can
map them onto its own enums; two are proposals beyond that list: `unproven` (a TCP port accepted
the connection but did not prove to be `edgecheck listen` with this token) and
`deadline-exceeded` / `internal-error` (already used by the engine).
"""

from __future__ import annotations

import datetime
import shlex
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from edgecheck.reach.listener import BindState, Binding, ListenEvent, ListenSummary, PortReport
from edgecheck.reach.probeloop import Outcome, ProbeResult
from edgecheck.reach.protocol import REPLAY_WINDOW_S, Verdict, normalise_address

LISTEN_SCHEMA = "edgecheck/listen/v1"

# Seed 001 / 003 inbound table: who needs each port (for people reading the output).
PORT_PURPOSE = {
    (10250, "tcp"): "kubelet (API server, metrics-server)",
    (10255, "tcp"): "kubelet read-only (metrics-server)",
    (9100, "tcp"): "node-exporter (Prometheus)",
    (9445, "tcp"): "node-exporter (Prometheus)",
    (8472, "udp"): "flannel VXLAN",
}

# Sample blocks from seed 003 ("Sample network configurations"); the user's own may differ.
SEED003_VPC_CIDR = "192.168.0.0/16"
SEED003_CLOUD_CIDR = "100.0.0.0/8"
SEED003_DC_CIDR = "10.0.0.0/8"


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
        purpose = b.spec.label or PORT_PURPOSE.get((b.spec.port, b.spec.protocol), "")
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

def _noise(report: PortReport) -> int:
    return sum(n for k, n in report.counts.items() if k not in (Verdict.VALID,))


def listen_summary_text(summary: ListenSummary) -> str:
    ran = summary.ended_at - summary.started_at
    lines = [f"edgecheck listen: ran {ran:.1f} s of {summary.duration_s:g} s, stopped by {summary.stop_reason} "
             f"(token fingerprint {summary.key_fingerprint})"]
    for p in summary.ports:
        name = f"{p.spec.port}/{p.spec.protocol}"
        purpose = p.spec.label or PORT_PURPOSE.get((p.spec.port, p.spec.protocol), "")
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
        "purpose": p.spec.label or PORT_PURPOSE.get((p.spec.port, p.spec.protocol), ""),
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


# --- reach: verdicts ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ReachVerdict:
    status: str  # "pass" | "warn" | "fail"
    reason: str  # SPEC spelling
    message: str


def _port_name(r: ProbeResult) -> str:
    return f"{r.protocol.upper()} {r.port}"


def nat_message(r: ProbeResult) -> str:
    """"" unless the listener saw another source than the one this host sent from."""
    kind = r.nat
    if kind == "address" and r.seen_source and r.local:
        return (f" The node saw this probe coming from {r.seen_source.address}, not from this host's "
                f"{r.local.address}: the path is NATed (SNAT/masquerade), so allow-lists and security-group "
                f"rules in front of the node must allow {r.seen_source.address}.")
    if kind == "port" and r.seen_source and r.local:
        return (f" The source port was rewritten on the way ({r.local.port} -> {r.seen_source.port}): "
                "a NAT on the path translates ports only.")
    return ""


def suggest_verdict(r: ProbeResult, *, listener_proven_on_node: bool = False) -> ReachVerdict:
    """Status, reason and message for a `reach:NODE:PORT/PROTO` check from one probe result.

    `listener_proven_on_node`: another port of the same node answered the token, so `listen` runs
    there; a silent UDP port is then a block on the path (fail), not just unconfirmed (warn).
    """
    port = _port_name(r)
    if r.outcome is Outcome.OK:
        if r.method == "token":
            msg = f"{port} reaches `edgecheck listen` on the node (token proven)." + nat_message(r)
        elif r.method == "tls":
            msg = (f"{port}: the kubelet's TLS handshake completed ({r.tls.get('version', 'TLS')}); "
                   "its certificate was not verified: this checks reachability, not trust.")
        elif r.method in ("http", "https"):
            msg = f"{port}: an HTTP server answered (status {r.http.get('status')})."
        else:
            msg = f"{port}: TCP connection established."
        return ReachVerdict("pass", "ok", msg)
    if r.outcome is Outcome.CLOCK_SKEW:
        return ReachVerdict("warn", "clock-offset",
                            f"{port} reaches `edgecheck listen` (token proven), but its clock differs from this "
                            f"host's by {r.clock_offset_s:+.0f} s (more than {REPLAY_WINDOW_S:g} s): fix time sync "
                            "on one side; the cluster's certificates will fail the same way." + nat_message(r))
    if r.outcome is Outcome.UNPROVEN:
        if r.method == "tls":
            return ReachVerdict("fail", "tls-handshake-failed", f"{port} accepts connections, but {r.detail}.")
        if r.method in ("http", "https"):
            return ReachVerdict("fail", "no-response", f"{port} accepts connections, but {r.detail}.")
        return ReachVerdict("fail", "unproven", f"{port}: {r.detail}.")
    if r.outcome is Outcome.NO_RESPONSE:
        if r.method == "token" and listener_proven_on_node:
            return ReachVerdict("fail", "no-response",
                                f"{port}: {r.detail}. `edgecheck listen` answered on other ports of this node, "
                                "so the datagrams are dropped on the way or by the node's filter.")
        return ReachVerdict("warn", "no-response", f"{port}: {r.detail}.")
    if r.outcome in (Outcome.REFUSED, Outcome.UNREACHABLE) and r.blocked_locally:
        return ReachVerdict("fail", "host-firewall", f"{port}: {r.detail}.")  # SPEC 7.1
    if r.outcome is Outcome.UNREACHABLE:
        return ReachVerdict("fail", "unreachable", f"{port}: {r.detail}.")
    if r.outcome in (Outcome.REFUSED, Outcome.TIMEOUT):
        return ReachVerdict("fail", r.outcome.value, f"{port}: {r.detail}.")
    if r.outcome in (Outcome.DEADLINE, Outcome.NOT_STARTED):
        return ReachVerdict("fail", "deadline-exceeded", f"{port}: {r.detail}.")
    return ReachVerdict("fail", "internal-error", f"{port}: {r.detail}.")


def remediation(r: ProbeResult, *, mode: str, node: str) -> str:
    """What to do about a failed or unconfirmed reach check (empty when it passed)."""
    if r.outcome is Outcome.OK:
        return ""
    port = _port_name(r)
    purpose = PORT_PURPOSE.get((r.port, r.protocol), "")
    need = f"inbound {port} to {node}" + (f" ({purpose})" if purpose else "")
    if r.outcome is Outcome.CLOCK_SKEW:
        return "Synchronise the clocks (chrony or ntpdate against the NTP servers in the plan) and probe again."
    if r.outcome is Outcome.UNPROVEN:
        if r.method == "token":
            return (f"Make sure `edgecheck listen` runs on {node} with the same token (compare the fingerprints), "
                    f"and that nothing else holds or intercepts {port} there (a proxy or load balancer in "
                    "between answers for the node).")
        return f"Check the component serving {port} on {node} (its logs and configuration)."
    if r.outcome in (Outcome.DEADLINE, Outcome.NOT_STARTED, Outcome.LOCAL_ERROR):
        return "Rerun with fewer nodes or a longer --timeout; this is about this run, not the network."
    if r.blocked_locally:
        return (f"This host's own packet filter blocks outbound {port} to {node}: allow it in the OUTPUT chain "
                "(iptables/nftables, or the firewalld/ufw rules that load them).")
    first = ""
    if r.icmp is not None and r.icmp.sender:
        if r.icmp.sender == normalise_address(r.address):
            first = (f"The node itself rejects {port}: allow {need} in the node's packet filter (run "
                     "`edgecheck run` on the node: its inbound checks name the rule). ")
        else:
            first = f"The rejection came from {r.icmp.sender}, on the path: start with that device. "
    if r.outcome is Outcome.REFUSED and r.icmp is None and r.protocol == "tcp":
        first = (f"Nothing accepted {port} on {node}: start `edgecheck listen` there (before the join), or check "
                 f"that the component runs (after it); a firewall sending TCP resets looks the same. ")
    if mode == "dedicated":
        return first + (
            f"Traffic from the VPC must reach the node ({need}). Check, in seed 003's order: "
            f"1) the data-centre firewall: allow inbound from the VPC ({SEED003_VPC_CIDR} in the sample) and "
            f"cloud services ({SEED003_CLOUD_CIDR}) to {port}; "
            f"2) the core switch and the VBR: an outbound route to the data-centre block ({SEED003_DC_CIDR} in "
            "the sample) over Express Connect and the firewall; "
            "3) the CEN/ECR transit router: an outbound route to the data-centre block through the VBR; "
            "4) the VPC route table: an outbound route to the data-centre block through CEN/ECR and the VBR; "
            f"5) the VPC security group: allow outbound to the data-centre block on {port}.")
    return first + (
        f"Allow {need} from the host CIDR block of the edge node (seed 001's inbound table) on the node's own "
        "firewall and on every firewall or security group in front of it; the traffic is proxied by Raven.")


def reach_evidence(r: ProbeResult, *, key_fingerprint: Optional[str] = None) -> Dict[str, Any]:
    """The proposed `evidence` object of a reach check (see reach_evidence_schema.json)."""
    ev = r.evidence()
    if r.method == "token" and key_fingerprint:
        ev["token_fingerprint"] = key_fingerprint
    return ev


def listen_specs_from_plan(ports: Sequence[tuple]) -> List[Any]:
    """[(port, protocol[, label])] -> [PortSpec]: the plan's inbound ports, as `listen` needs them."""
    from edgecheck.reach.listener import PortSpec
    return [PortSpec(int(p[0]), str(p[1]), str(p[2]) if len(p) > 2 else "") for p in ports]
