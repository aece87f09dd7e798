"""The report for a person at a terminal.

Order follows what the reader needs: the verdict, plan warnings that change how to read the rest,
failures grouped by root cause with what to do, then check warnings, then what passed and what was
skipped. One broken DNS forwarder that breaks eight endpoints is one finding listing eight
endpoints, because it is one thing to fix. Findings are ordered the way seed 004 says to
troubleshoot: DNS first, then proxies, firewalls and routes, then TLS, then the host itself.

Everything is wrapped to 80 columns; only a token that cannot be broken (a URL, a long hostname)
may stick out. ASCII only: edge hosts often run with LANG=C.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from edgecheck.model import CheckResult, Reason, Report, Status
from edgecheck.report.redact import redact_report

WIDTH = 80
INDENT = "   "

_RESET = "\033[0m"
_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


class _Style:
    """ANSI styling that is a no-op when colour is off, so layout code never branches on it."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, *styles: str) -> str:
        if not self.color or not text:
            return text
        codes = ";".join(_SGR[s] for s in styles)
        return f"\033[{codes}m{text}{_RESET}"


# ---------------------------------------------------------------------------------------------
# small helpers


def _status(c: CheckResult) -> Status:
    return c.status if isinstance(c.status, Status) else Status(str(c.status))


def _reason(c: CheckResult) -> str:
    return c.reason.value if isinstance(c.reason, Reason) else str(c.reason)


def _ev(c: CheckResult) -> Dict[str, Any]:
    return c.evidence if isinstance(c.evidence, dict) else {}


def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> List[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    return [] if value is None else [value]


def _plural(n: int, one: str, many: Optional[str] = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _join(items: Sequence[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _seconds(ms: Any) -> str:
    try:
        ms = int(ms)
    except (TypeError, ValueError):
        return ""
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _wrap(text: str, indent: str = "", subsequent: Optional[str] = None) -> List[str]:
    """Wrap to WIDTH without splitting hostnames or URLs (no breaks on hyphens or in words)."""
    out: List[str] = []
    for para in str(text).splitlines() or [""]:
        if not para.strip():
            out.append("")
            continue
        out.extend(
            textwrap.wrap(
                para,
                width=WIDTH,
                initial_indent=indent,
                subsequent_indent=indent if subsequent is None else subsequent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return out


def _label(c: CheckResult) -> str:
    """How a check is named in lists: its id, minus "endpoint:" so that the longest real one
    (aliregistry-cn-zhangjiakou.oss-cn-zhangjiakou-internal...:443/tcp) fits in 80 columns.
    It is still a substring of the id, so it greps back to the JSON and the metrics."""
    prefix = "endpoint:"
    return c.id[len(prefix):] if c.id.startswith(prefix) else c.id


def _name_adds(c: CheckResult) -> bool:
    """Whether the check's name tells the reader more than its label does."""
    name = (c.name or "").strip().lower()
    if not name:
        return False
    key = c.id.split(":", 1)[-1].lower()
    return key not in name and name not in key


def _param(report: Report, key: str) -> str:
    value = (report.params or {}).get(key)
    if value is None or value == "" or value == []:
        return ""
    return value.value if hasattr(value, "value") else str(value)


# ---------------------------------------------------------------------------------------------
# evidence accessors, tolerant of whatever a probe did or did not record


def _nameservers(c: CheckResult) -> Tuple[str, ...]:
    resolver = _dict(_ev(c).get("resolver"))
    ns = [str(n) for n in _list(resolver.get("nameservers")) if n]
    if not ns and resolver.get("answered_by"):
        ns = [str(resolver["answered_by"])]
    return tuple(ns)


def _resolver_source(checks: Sequence[CheckResult]) -> str:
    sources = {str(_dict(_ev(c).get("resolver")).get("source") or "") for c in checks}
    return sources.pop() if len(sources) == 1 else ""


def _failed_addresses(c: CheckResult) -> List[str]:
    """Addresses whose connect failed; all resolved addresses when connect details are missing."""
    out = []
    for attempt in _list(_ev(c).get("connect")):
        attempt = _dict(attempt)
        if attempt and not attempt.get("ok") and attempt.get("address"):
            out.append(str(attempt["address"]))
    if not out:
        out = [str(a) for a in _list(_ev(c).get("addresses")) if a]
    return out


def _holders(c: CheckResult) -> List[str]:
    """Who holds a port: "kubelet (pid 811, user root)". Inbound checks record `sockets`
    (process, pid, user, unit); `holders` (name, pid, user) is accepted too."""
    ev = _ev(c)
    out = []
    for h in _list(ev.get("sockets")) + _list(ev.get("holders")):
        h = _dict(h)
        if not h:
            continue
        who = str(h.get("process") or h.get("name") or h.get("unit") or "")
        if not who:
            who = "the kernel" if h.get("kernel_socket") else "an unknown process"
        extra = []
        if h.get("pid") is not None:
            extra.append(f"pid {h['pid']}")
        if h.get("user"):
            extra.append(f"user {h['user']}")
        if h.get("address") and h.get("loopback"):
            extra.append(f"on {h['address']}")
        text = who + (f" ({', '.join(extra)})" if extra else "")
        if text not in out:
            out.append(text)
    return out


def _executables(c: CheckResult) -> List[str]:
    ev = _ev(c)
    return [str(x) for x in _list(ev.get("executables_wanted") or ev.get("executable")) if x]


def _issuer(c: CheckResult) -> str:
    tls = _dict(_ev(c).get("tls"))
    return str(_dict(tls.get("peer_certificate")).get("issuer") or "")


def _port_proto(c: CheckResult) -> Tuple[str, str]:
    t = c.target or {}
    return str(t.get("protocol") or "tcp"), str(t.get("port") or "")


# ---------------------------------------------------------------------------------------------
# findings: failures (or warnings) that share a root cause


@dataclass
class Finding:
    reason: str
    title: str
    checks: List[CheckResult]
    advice: List[str] = field(default_factory=list)  # paragraphs
    detail: Callable[[CheckResult], str] = lambda c: ""  # per-check note shown in the list
    command: str = ""  # one command that fixes the whole finding, shown on its own line


# The order findings are presented in: seed 004 says DNS first, then policy/firewall, then
# security groups; a proxy sits in front of all of those; TLS problems only show once TCP works.
_ORDER = [
    Reason.NXDOMAIN,
    Reason.DNS_TIMEOUT,
    Reason.DNS_ERROR,
    Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR,
    Reason.PROXY_ERROR,
    Reason.UNREACHABLE,
    Reason.TIMEOUT,
    Reason.REFUSED,
    Reason.NO_RESPONSE,
    Reason.TLS_HANDSHAKE_FAILED,
    Reason.TLS_VERIFY_FAILED,
    Reason.PORT_IN_USE,
    Reason.PORT_NOT_LISTENING,
    "loopback-only",
    Reason.TOOL_MISSING,
    Reason.CLOCK_UNSYNCHRONISED,
    Reason.CLOCK_OFFSET,
    Reason.DEADLINE_EXCEEDED,
    Reason.MISSING_INPUT,
    Reason.NOT_APPLICABLE,
    Reason.INTERNAL_ERROR,
]
_RANK = {getattr(r, "value", r): i for i, r in enumerate(_ORDER)}


def _group_key(c: CheckResult) -> Tuple[Any, ...]:
    """Checks with the same key most likely share one cause and one fix."""
    reason = _reason(c)
    ev = _ev(c)
    if reason in (Reason.DNS_TIMEOUT.value, Reason.DNS_ERROR.value, Reason.NXDOMAIN.value):
        return (reason, _nameservers(c))
    if reason in (Reason.TIMEOUT.value, Reason.REFUSED.value, Reason.UNREACHABLE.value):
        proto, port = _port_proto(c)
        return (reason, proto, port, str(ev.get("route") or "direct"))
    if reason == Reason.NO_RESPONSE.value:
        return (reason,) + _port_proto(c)
    if reason == Reason.PROXY_ERROR.value:
        return (reason, str(ev.get("proxy") or ""))
    if reason == Reason.TLS_VERIFY_FAILED.value:
        return (reason, _issuer(c))
    # Everything else: one finding per reason (all missing tools, all busy ports, ...).
    return (reason,)


def _ns_text(ns: Sequence[str]) -> str:
    if not ns:
        return "the host's resolver"
    return ("nameserver " if len(ns) == 1 else "nameservers ") + ", ".join(ns)


def _what(checks: Sequence[CheckResult]) -> str:
    kinds = {str(getattr(c.kind, "value", c.kind)) for c in checks}
    noun = {"endpoint": "endpoint", "inbound": "port", "tool": "tool", "clock": "clock check"}
    if len(kinds) == 1:
        return _plural(len(checks), noun.get(kinds.pop(), "check"))
    return _plural(len(checks), "check")


def _dns_advice(report: Report, checks: Sequence[CheckResult], reason: str) -> List[str]:
    ns = _nameservers(checks[0])
    host = str((checks[0].target or {}).get("host") or "cs-anony.<region>.aliyuncs.com")
    dedicated = _param(report, "mode") == "dedicated"
    out = ["Fix DNS first: nothing else can be tested for these endpoints until their names resolve."]
    if reason == Reason.NXDOMAIN.value:
        if dedicated:
            out.append(
                "In dedicated-connection mode the -vpc and -internal names exist only in the "
                "VPC's DNS: forward aliyuncs.com from your DNS server to a resolver in the VPC "
                "(seed 003 recommends resolving these names in the VPC)."
            )
        else:
            out.append(
                "Check the region id (--region): endpoint names contain it. If it is right, the "
                f"DNS server ({_ns_text(ns)}) filters or rewrites these names; compare with "
                f"another resolver: dig {host}"
            )
    else:
        target = ns[0] if ns else "the nameserver in /etc/resolv.conf"
        out.append(
            f"Check that this host reaches {target} on UDP and TCP port 53 (host firewall, "
            "data-centre firewall, security group), and that it answers for aliyuncs.com itself "
            f"or forwards to an upstream that does: dig @{ns[0] if ns else '<nameserver>'} {host}"
        )
        if dedicated:
            out.append(
                "In dedicated-connection mode, forward aliyuncs.com to a resolver in the VPC so "
                "the -vpc names resolve to internal addresses."
            )
        else:
            out.append("Or point /etc/resolv.conf at a resolver that works.")
    return out


def _connect_advice(report: Report, checks: Sequence[CheckResult], reason: str) -> List[str]:
    proto, port = _port_proto(checks[0])
    what = f"{proto.upper()} {port}" if port else proto.upper()
    dedicated = _param(report, "mode") == "dedicated"
    if reason == Reason.TIMEOUT.value:
        first = (
            "Packets are silently dropped on the way. Check, in this order: this host's firewall "
            f"(iptables/nftables output rules), the data-centre firewall's outbound rules for {what} "
            "to these addresses, and any security group or ACL in between."
        )
    elif reason == Reason.REFUSED.value:
        first = (
            "Something answered with a reset or ICMP port-unreachable: a firewall REJECT rule, or "
            f"nothing listening at that address. Check firewall rules for {what} to these "
            "addresses and that the names resolve to the right addresses."
        )
    else:
        first = (
            "A router or firewall answered 'unreachable': there is no route to these addresses. "
            "Check this host's routes (ip route get <address>) and the firewall for "
            f"{what}."
        )
    out = [first]
    if dedicated:
        out.append(
            "Dedicated-connection mode: the core switch, VBR and ECR/CEN route tables must carry "
            "the cloud service block 100.0.0.0/8 (or the endpoint's own blocks from seed 003), "
            "and the data-centre firewall must allow it outbound."
        )
    else:
        out.append(
            "Public-network mode: the site's internet egress (NAT, upstream firewall) must allow "
            "these addresses."
        )
    if any(_ev(c).get("proxy") or _ev(c).get("route") == "proxy" for c in report.checks):
        out.append("A proxy is configured, but raw TCP and UDP connections never use it.")
    return out


def _install_command(checks: Sequence[CheckResult]) -> str:
    """One command installing every missing tool, or '' when the checks disagree on how."""
    commands = [str(_ev(c).get("install_command") or "") for c in checks]
    commands = [c for c in commands if c]
    if not commands:
        return ""
    if len(set(commands)) == 1:
        return commands[0]
    # Each check carries "<prefix> <package>": merge into one "<prefix> pkg1 pkg2 ...".
    prefixes, packages = set(), []
    for c in checks:
        ev = _ev(c)
        cmd, pkg = str(ev.get("install_command") or ""), str(ev.get("package") or "")
        if not cmd or not pkg or not cmd.endswith(" " + pkg):
            return ""
        prefixes.add(cmd[: -len(pkg) - 1])
        if pkg not in packages:
            packages.append(pkg)
    if len(prefixes) != 1:
        return ""
    return prefixes.pop() + " " + " ".join(packages)


def _build_finding(report: Report, key: Tuple[Any, ...], checks: List[CheckResult]) -> Finding:
    reason = key[0]
    n = len(checks)
    what = _what(checks)
    f = Finding(reason=reason, title="", checks=checks)

    if reason in (Reason.DNS_TIMEOUT.value, Reason.DNS_ERROR.value, Reason.NXDOMAIN.value):
        ns = _ns_text(key[1])
        source = _resolver_source(checks)
        where = f"{ns} (from {source})" if source else ns
        verb = {
            Reason.DNS_TIMEOUT.value: "time out at",
            Reason.DNS_ERROR.value: "fail at",
            Reason.NXDOMAIN.value: "return NXDOMAIN (no such name) at",
        }[reason]
        f.title = f"DNS lookups {verb} {where}: {what}"
        f.advice = _dns_advice(report, checks, reason)
    elif reason == Reason.ADDRESS_OUTSIDE_EXPECTED_CIDR.value:
        f.title = f"Names resolve outside the dedicated-connection routes: {what}"
        f.detail = lambda c: "got " + ", ".join(
            str(a) for a in (_list(_ev(c).get("outside_expected")) or _list(_ev(c).get("addresses")))
        ) + (
            "; routes carry " + ", ".join(str(x) for x in _list(_ev(c).get("expected_cidrs")))
            if _ev(c).get("expected_cidrs")
            else ""
        )
        f.advice = [
            "The dedicated line and the data-centre firewall carry only the cloud service routes "
            "(100.0.0.0/8, or the per-endpoint blocks of seed 003), so traffic to these addresses "
            "would leave another way or not at all.",
            "Resolve these names in the VPC (forward aliyuncs.com from your DNS server to a VPC "
            "resolver) so they return internal 100.x addresses.",
        ]
    elif reason == Reason.PROXY_ERROR.value:
        proxy = key[1] or "the configured proxy"
        f.title = f"Proxy {proxy} failed: {what}"
        f.advice = [
            f"Check that {proxy} is reachable from this host and allows CONNECT to these hosts "
            "on port 443 (and that its credentials, if any, are accepted).",
            "If these endpoints must go direct (dedicated line, internal mirror), add them to "
            "NO_PROXY.",
        ]
    elif reason in (Reason.TIMEOUT.value, Reason.REFUSED.value, Reason.UNREACHABLE.value):
        proto, port = key[1], key[2]
        verb = {
            Reason.TIMEOUT.value: "times out",
            Reason.REFUSED.value: "is refused",
            Reason.UNREACHABLE.value: "is unreachable",
        }[reason]
        via = " through the proxy" if key[3] == "proxy" else ""
        f.title = f"{proto.upper()} port {port}{via} {verb}: {what}"
        f.detail = lambda c: ", ".join(
            a for a in _failed_addresses(c) if a != str((c.target or {}).get("host") or "")
        )
        f.advice = _connect_advice(report, checks, reason)
    elif reason == Reason.NO_RESPONSE.value:
        proto, port = key[1], key[2]
        f.title = f"No answer on {proto.upper()} port {port}: {what}"
        if port == "123":
            f.advice = [
                "NTP requests or their replies are blocked, or the servers do not answer. Allow "
                "outbound UDP 123 (and the replies) in the host and data-centre firewalls.",
                "If this node syncs its clock from your own NTP servers, run with --self-host-ntp.",
            ]
        else:
            f.advice = [
                "UDP cannot be confirmed without an answer. Allow outbound "
                f"{proto.upper()} {port} to these addresses in the host and data-centre firewalls "
                "and security groups"
                + (" (Raven uses IPsec NAT-T on UDP 4500)." if port == "4500" else "."),
            ]
    elif reason == Reason.TLS_VERIFY_FAILED.value:
        issuer = key[1]
        f.title = f"TLS certificates not trusted{' (issuer: ' + issuer + ')' if issuer else ''}: {what}"
        f.detail = lambda c: str(_dict(_ev(c).get("tls")).get("verify_error") or "")
        f.advice = [
            "If your network inspects TLS, a proxy or firewall replaces the certificates: add its "
            "CA with --ca-bundle PATH and to the system trust store (the node's components use "
            "it), or exempt these hosts from inspection.",
            "Otherwise check the clock (see the clock check) and that the names resolve to the "
            "right addresses.",
        ]
    elif reason == Reason.TLS_HANDSHAKE_FAILED.value:
        f.title = f"TLS handshake fails after TCP connects: {what}"
        f.advice = [
            "A middlebox is resetting or blocking TLS to these hosts. Check firewall/IPS rules "
            "for TLS (SNI filtering); if the site requires a proxy, set HTTPS_PROXY.",
        ]
    elif reason == Reason.PORT_IN_USE.value:
        f.title = f"Ports the node needs are already in use: {what}"
        f.detail = lambda c: "held by " + "; ".join(_holders(c)) if _holders(c) else ""
        f.advice = [
            "Phase join needs these ports free. If kubelet or node-exporter holds them, this "
            "host is probably a node already: run with --phase running, or clean up the old "
            "installation. Otherwise stop or reconfigure the process holding the port.",
        ]
    elif reason == Reason.PORT_NOT_LISTENING.value:
        f.title = f"Ports a joined node serves are not listening: {what}"
        f.advice = [
            "On a joined node kubelet serves 10250 and 10255, node-exporter 9100 and 9445, and "
            "flannel UDP 8472: check systemctl status kubelet and the edge components. If this "
            "host has not joined yet, use --phase join.",
        ]
    elif reason == Reason.LOOPBACK_ONLY.value:
        f.title = f"Ports listen on loopback only, unreachable from the cloud: {what}"
        f.detail = lambda c: "held by " + "; ".join(_holders(c)) if _holders(c) else ""
        f.advice = [
            "The API server, metrics server and Prometheus reach these ports from the VPC: make "
            "the process listen on the node's address (or 0.0.0.0), then allow the VPC CIDR "
            "inbound in the host and data-centre firewalls.",
        ]
    elif reason == Reason.TOOL_MISSING.value:
        f.title = f"System tools the installer needs are missing: {what}"
        f.command = _install_command(checks)
        f.detail = lambda c: (
            "needs " + " or ".join(_executables(c))
            if _executables(c) and _executables(c) != [c.id.split(":", 1)[-1]]
            else ""
        )
        f.advice = [
            "The installer would fetch them online from this host's package repositories during "
            "the join; install them now"
            + (":" if f.command else " with the distribution's package manager."),
        ]
    elif reason in (Reason.CLOCK_OFFSET.value, Reason.CLOCK_UNSYNCHRONISED.value):
        f.title = "The local clock is not synchronised" if reason == Reason.CLOCK_UNSYNCHRONISED.value \
            else "The local clock is off"
        f.advice = [
            "Enable time synchronisation (chrony) against ntp1.aliyun.com and cn.ntp.org.cn or "
            "your own NTP servers, then check with chronyc tracking.",
        ]
    elif reason == Reason.DEADLINE_EXCEEDED.value:
        f.title = f"Did not finish before the run's deadline: {what}"
        f.advice = ["Something hangs longer than --timeout allows; rerun with -v to see where."]
    elif reason == Reason.INTERNAL_ERROR.value:
        f.title = f"edgecheck could not run these checks: {what}"
        f.advice = ["This is a bug in edgecheck: rerun with --debug and report the output."]
    else:
        f.title = f"{reason}: {what}"

    if reason == Reason.NXDOMAIN.value and all(_status(c) is Status.WARN for c in checks):
        # Only optional names ("may be absent in some regions") get here: nothing to fix.
        f.advice = ["Nothing to do if this name is absent in this region (the seeds allow it)."]

    if n == 1:
        # One check: its own words are the most specific.
        c = checks[0]
        if c.message:
            f.title = c.message
        if c.remediation:
            f.advice = [c.remediation]
            if reason != Reason.TOOL_MISSING.value:
                f.command = ""
    return f


def findings(report: Report, status: Status) -> List[Finding]:
    """Checks of `status` grouped by shared root cause, in troubleshooting order."""
    groups: Dict[Tuple[Any, ...], List[CheckResult]] = {}
    for c in report.checks:
        if _status(c) is status:
            groups.setdefault(_group_key(c), []).append(c)
    order = {k: i for i, k in enumerate(groups)}  # plan order breaks ties
    keys = sorted(groups, key=lambda k: (_RANK.get(k[0], len(_RANK)), order[k]))
    return [_build_finding(report, k, groups[k]) for k in keys]


# ---------------------------------------------------------------------------------------------
# evidence for -v


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    if hasattr(v, "value"):
        return str(v.value)
    return str(v)


def _flat(prefix: str, value: Any) -> List[Tuple[str, str]]:
    """Evidence as (key, text) pairs: nested objects get dotted keys, lists of objects a line each."""
    if isinstance(value, dict):
        if not value:
            return []
        if all(not isinstance(v, (dict, list, tuple)) for v in value.values()) and prefix:
            return [(prefix, " ".join(f"{k}={_scalar(v)}" for k, v in value.items() if v is not None))]
        out: List[Tuple[str, str]] = []
        for k, v in value.items():
            out.extend(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    if isinstance(value, (list, tuple)):
        if not value:
            return [(prefix, "-")]
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            return [(prefix, ", ".join(_scalar(v) for v in value))]
        out = []
        for v in value:
            out.extend(_flat(prefix, v))
        return out
    if value is None:
        return [(prefix, "-")]
    return [(prefix, _scalar(value))]


def _evidence_lines(c: CheckResult, indent: str) -> List[str]:
    lines: List[str] = []
    for key, text in _flat("", _ev(c)):
        lines.extend(_wrap(f"{key}: {text}", indent, indent + "  "))
    return lines


# ---------------------------------------------------------------------------------------------
# sections


def _verdict(report: Report, st: _Style) -> List[str]:
    s = report.summary
    strict = bool((report.params or {}).get("strict"))
    if not report.ready:
        word, colour = "NOT READY", "red"
    elif strict and (s.get("warn") or report.warnings):
        word, colour = "NOT READY (--strict: warnings fail)", "red"
    else:
        word, colour = "READY", "green"
    counts = (
        f"{s.get('fail', 0)} failed, {_plural(s.get('warn', 0), 'warning')}, "
        f"{s.get('pass', 0)} passed, {s.get('skip', 0)} skipped"
    )
    took = _seconds(report.duration_ms)
    plain = f"{word}  {counts}" + (f" in {took}" if took else "")
    lines = _wrap(plain, "", "  ")
    lines[0] = lines[0].replace(word, st(word, "bold", colour), 1)

    host = report.host or {}
    who = str(host.get("hostname") or "this host")
    about = [x for x in (host.get("os"), host.get("arch")) if x]
    context = who + (f" ({', '.join(str(a) for a in about)})" if about else "")
    plan = [x for x in (_param(report, "region"), _param(report, "mode"), _param(report, "phase")) if x]
    k8s = _param(report, "k8s_version")
    if k8s:
        plan.append(f"k8s {k8s}")
    if plan:
        context += ": " + ", ".join(plan)
    context += f"; edgecheck {report.agent_version} at {report.generated_at}"
    lines.extend(_wrap(context, "", "  "))
    return lines


def _header(text: str, st: _Style, colour: str = "") -> List[str]:
    return ["", st(text, "bold", colour) if colour else st(text, "bold")]


def _finding_lines(i: int, f: Finding, marker: str, st: _Style, colour: str, verbose: bool) -> List[str]:
    num = f"{i}."
    head = _wrap(f"{num} {f.title} [{f.reason}]", "", INDENT)
    head[0] = st(num, "bold", colour) + head[0][len(num):]
    lines = [""] + head
    sub = INDENT + "    "
    for c in f.checks:
        detail = f.detail(c)
        item = f"{INDENT}{marker} {_label(c)}"
        name = c.name if _name_adds(c) else ""
        if name and not detail and len(item) + 2 + len(name) <= WIDTH:
            lines.append(f"{item}  {st(name, 'dim')}")
        else:
            lines.append(item)
            if name:
                lines.extend(st(x, "dim") for x in _wrap(name, sub))
            if detail:
                lines.extend(_wrap(detail, sub, sub + "  "))
        if verbose:
            if len(f.checks) > 1 and c.message:
                lines.extend(_wrap(c.message, sub, sub + "  "))
            if len(f.checks) > 1 and c.remediation:
                lines.extend(_wrap("fix: " + c.remediation, sub, sub + "  "))
            lines.extend(st(x, "dim") for x in _evidence_lines(c, sub))
    if f.advice or f.command:
        lines.append(f"{INDENT}{st('What to do:', 'bold')}")
        for para in f.advice:
            lines.extend(_wrap(para, INDENT + "  "))
        if f.command:
            lines.extend(_command_lines(f.command, INDENT + "    "))
    return lines


def _command_lines(command: str, indent: str) -> List[str]:
    """A shell command wrapped with backslash continuations, so it still pastes as one command."""
    lines = textwrap.wrap(command, width=WIDTH - 2, initial_indent=indent,
                          subsequent_indent=indent + "  ", break_long_words=False,
                          break_on_hyphens=False)
    return [line + " \\" for line in lines[:-1]] + lines[-1:]


_KIND_ORDER = ("endpoint", "inbound", "tool", "clock")


def _passed(report: Report, st: _Style, verbose: bool) -> List[str]:
    checks = [c for c in report.checks if _status(c) is Status.PASS]
    if not checks:
        return []
    lines = _header(f"PASSED ({len(checks)})", st, "green")
    if verbose:
        # One check per line with its evidence: the reader asked for everything.
        for c in checks:
            took = _seconds(c.duration_ms) if c.duration_ms else ""
            row = f"  {_label(c)}"
            if took and len(row) + 2 + len(took) <= WIDTH:
                row = f"{row}  {st(took, 'dim')}"
            lines.append(row)
            lines.extend(st(x, "dim") for x in _evidence_lines(c, "      "))
        return lines
    # Endpoints one per line (slow-but-passing ones are worth seeing: the time is right-aligned
    # when it fits); ports, tools and the clock collapse into one wrapped line per kind.
    endpoints = [c for c in checks if str(getattr(c.kind, "value", c.kind)) == "endpoint"]
    if endpoints:
        width = max(len(_label(c)) for c in endpoints)
        width = min(width, WIDTH - 2 - 2 - 7)
        for c in endpoints:
            label = _label(c)
            took = _seconds(c.duration_ms) if c.duration_ms else ""
            if took and len(label) <= width:
                lines.append(f"  {label:<{width}}  " + st(f"{took:>7}", "dim"))
            else:
                lines.append(f"  {label}")
    others: Dict[str, List[str]] = {}
    for c in checks:
        kind = str(getattr(c.kind, "value", c.kind))
        if kind != "endpoint":
            others.setdefault(kind, []).append(c.id.split(":", 1)[-1])
    for kind in sorted(others, key=lambda k: (_KIND_ORDER.index(k) if k in _KIND_ORDER else 99, k)):
        lines.extend(_wrap(f"{kind}: " + ", ".join(others[kind]), "  ", "    "))
    return lines


def _skipped(report: Report, st: _Style, verbose: bool) -> List[str]:
    checks = [c for c in report.checks if _status(c) is Status.SKIP]
    if not checks:
        return []
    lines = _header(f"SKIPPED ({len(checks)})", st)
    for c in checks:
        lines.append(f"  {_label(c)}")
        why = c.message or _reason(c)
        lines.extend(st(x, "dim") for x in _wrap(why, "      "))
        if verbose:
            lines.extend(st(x, "dim") for x in _evidence_lines(c, "      "))
    return lines


def render_text(report: Report, *, verbose: bool = False, color: bool = False) -> str:
    report = redact_report(report)
    st = _Style(color)
    lines = _verdict(report, st)

    if report.warnings:
        lines.extend(_header("PLAN WARNINGS", st, "yellow"))
        for w in report.warnings:
            lines.extend(_wrap(f"! {w}", "  ", "    "))

    failed = findings(report, Status.FAIL)
    if failed:
        n = report.summary.get("fail", 0)
        cause = "cause" if len(failed) == 1 else "separate causes"
        lines.extend(_header(f"FAILED: {_plural(n, 'check')}, {len(failed)} {cause}", st, "red"))
        for i, f in enumerate(failed, 1):
            lines.extend(_finding_lines(i, f, "x", st, "red", verbose))

    warned = findings(report, Status.WARN)
    if warned:
        n = report.summary.get("warn", 0)
        lines.extend(_header(f"WARNINGS: {_plural(n, 'check')}", st, "yellow"))
        for i, f in enumerate(warned, 1):
            lines.extend(_finding_lines(i, f, "!", st, "yellow", verbose))

    lines.extend(_passed(report, st, verbose))
    lines.extend(_skipped(report, st, verbose))
    if not verbose and any(_ev(c) for c in report.checks):
        lines.append("")
        lines.append(st("Run with -v for the evidence behind every check.", "dim"))
    return "\n".join(lines) + "\n"
