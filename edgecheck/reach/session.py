"""`edgecheck listen` end to end: the plan's inbound ports, the token, the banner with the exact
`reach` command, one line per probe, SIGINT/SIGTERM, and the closing summary (text or JSON).

`prepare_listen` validates every input and binds nothing (a usage error exits 2 before any
socket); `serve_listen` binds, serves for the duration or until a signal, and always closes
every socket it opened. The ports come from the plan (the catalog's inbound entries), never from
this module; ports below 1024 need privileges, the plan's do not (they are all >= 1024).
"""

from __future__ import annotations

import signal
import time
from dataclasses import field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

from edgecheck import exitcodes
from edgecheck.errors import UsageError
from edgecheck.reach import protocol as wire
from edgecheck.reach.listener import BindState, Listener, ListenSummary, PortSpec, local_addresses
from edgecheck.reach.summary import event_line, listen_banner, listen_summary_json, listen_summary_text, reach_command
from edgecheck.records import record

DEFAULT_DURATION_S = 600.0
MAX_DURATION_S = 24 * 3600.0  # a door opened on purpose is closed the same day at the latest


@record(frozen=True)
class ListenSetup:
    specs: Tuple[PortSpec, ...]
    token: str = field(repr=False)
    duration: float
    nodes: Tuple[str, ...]  # what the other side should probe (this host's addresses or --address)
    other_addresses: Tuple[str, ...]
    command_options: Tuple[str, ...]  # the selection options `reach` needs to probe the same ports
    params: Dict[str, Any]


def _selection_argv(options: Mapping[str, Any], phase: str) -> Tuple[str, ...]:
    """The options that decide the plan's inbound ports, as the other side must give them."""
    argv: List[str] = ["--region", str(options["region"])]
    if (options.get("mode") or "public") != "public":
        argv += ["--mode", str(options["mode"])]
    if phase != "join":
        argv += ["--phase", phase]
    if (options.get("network_plugin") or "flannel") != "flannel":
        argv += ["--network-plugin", str(options["network_plugin"])]
    for path in options.get("targets_files") or ():
        argv += ["--targets-file", str(path)]
    return tuple(argv)


def prepare_listen(options: Mapping[str, Any], addresses: Sequence[str] = (),
                   host_addresses: Callable[[], List[str]] = local_addresses) -> ListenSetup:
    """The ports to open and everything the banner prints; binds nothing."""
    from edgecheck.reach.targets import listen_ports
    from edgecheck.runner import plan_from_options, selection_params

    token = options.get("token") or None
    problem = wire.token_problem(token) if token else None
    if problem:
        raise UsageError(f"invalid --token: {problem}")
    duration = float(options.get("duration") or DEFAULT_DURATION_S)
    if not 0 < duration <= MAX_DURATION_S:
        raise UsageError(f"--duration must be more than 0 and at most {MAX_DURATION_S:g} seconds")
    plan, cluster = plan_from_options(options)
    specs = tuple(PortSpec(port, proto, label) for port, proto, label in listen_ports(plan.targets))
    if not specs:
        raise UsageError("the plan has no inbound port for these options: nothing to listen on")
    given = [a for a in addresses if a]
    found = [] if given else host_addresses()
    nodes = tuple(given or found[:1])
    params = dict(selection_params(plan.selection, options, cluster), duration_s=duration,
                  ports=[str(s) for s in specs])
    return ListenSetup(specs, token or wire.new_token(), duration, nodes, tuple(found[1:]),
                       _selection_argv(options, plan.selection.phase.value), params)


@record
class ListenOutcome:
    summary: ListenSummary
    exit_code: int


def _banner(setup: ListenSetup, listener: Listener) -> str:
    command = reach_command(setup.token, setup.nodes, setup.command_options)
    text = listen_banner(listener.bindings, setup.token, wire.key_fingerprint(listener.key), setup.duration, command)
    if setup.other_addresses:
        text += ("\n  (NODE is this host's first address; its others: " + ", ".join(setup.other_addresses)
                 + ". Use the one the other side reaches, or give --address.)")
    if any(b.state == BindState.HELD for b in listener.bindings):
        text += ("\nHeld ports were left alone. On a joined node they belong to its components: probe them with "
                 "`edgecheck reach --phase running`.")
    return text


def serve_listen(setup: ListenSetup, *, fmt: str, out: TextIO, log: TextIO, agent_version: str,
                 host: Optional[Dict[str, Any]] = None, **listener_options: Any) -> ListenOutcome:
    """Bind, print the banner and every probe, serve until the duration or a signal, summarise."""
    def emit(event: Any) -> None:
        print(event_line(event), file=log, flush=True)

    listener = Listener(setup.specs, setup.token, on_event=emit, **listener_options)
    previous = {}
    with listener:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, _frame: listener.stop(signal.Signals(signum).name))
        try:
            print(_banner(setup, listener), file=log, flush=True)
            if not any(b.state == BindState.BOUND for b in listener.bindings):
                listener.stop("nothing to listen on")
            summary = listener.serve(setup.duration)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if fmt == "json":
        import json

        doc = listen_summary_json(summary, agent_version=agent_version, generated_at=time.time(), host=host,
                                  params=setup.params)
        print(json.dumps(doc, indent=2), file=out, flush=True)
    else:
        print(listen_summary_text(summary), file=out, flush=True)
    bound = summary.bound
    return ListenOutcome(summary, exitcodes.for_verdict(bool(bound) and all(p.reached for p in bound)))
