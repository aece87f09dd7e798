"""The probe kinds: one record each, read by catalog validation, plan defaults and the engine.

A new probe kind is one check module (edgecheck/checks/), one wire module (edgecheck/probes/ or
edgecheck/host/) and one line in PROBES. The check is named by "module:function" and imported on
first use, so `edgecheck --help` and `edgecheck targets` never import the DNS client, requests or psutil,
and a broken module only fails its own checks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from edgecheck.model import CheckResult, Kind, Target
from edgecheck.records import record

if TYPE_CHECKING:
    from edgecheck.runcontext import RunContext

CheckFn = Callable[[Target, "RunContext"], CheckResult]
BatchFn = Callable[[Sequence[Target], "RunContext"], List[CheckResult]]


@record(frozen=True)
class ProbeKind:
    name: str  # the catalog's `probe` value and Target.probe
    kind: Kind
    check: str  # "module:function" taking (Target, RunContext) -> CheckResult
    transport: Optional[str] = None  # "tcp" | "udp" for endpoint probes, "any" when each target
    #                                   says (reach); None: looks at this host
    default_ports: Tuple[int, ...] = ()  # the default probe for these ports of its transport
    fallback: bool = False  # the default for any other port of its transport
    after: Tuple[str, ...] = ()  # probe kinds whose results this one reads (RunFacts.results_of)
    batch: str = ""  # "module:function" taking (targets, RunContext) -> their results in order: the
    #                  engine hands it every target of the kind at once, probed together on one
    #                  non-blocking loop instead of one worker thread each (cheap sockets, no queue)
    round_trips: int = 1  # network exchanges one after another in a healthy probe (DNS, TCP, TLS,
    #                       HTTP): the engine starts the kinds that need the most first

    @property
    def network(self) -> bool:
        """Sends packets: scheduled after the quick local checks."""
        return self.transport is not None

    def load(self) -> CheckFn:
        module, _, function = self.check.partition(":")
        fn: CheckFn = getattr(importlib.import_module(module), function)
        return fn

    def load_batch(self) -> BatchFn:
        module, _, function = self.batch.partition(":")
        fn: BatchFn = getattr(importlib.import_module(module), function)
        return fn


PROBES: Tuple[ProbeKind, ...] = (
    ProbeKind("https", Kind.ENDPOINT, "edgecheck.checks.web:check_https", "tcp", (443, 6443), round_trips=4),
    ProbeKind("http", Kind.ENDPOINT, "edgecheck.checks.web:check_http", "tcp", (80,), round_trips=3),
    ProbeKind("tcp", Kind.ENDPOINT, "edgecheck.checks.tcp:check_tcp", "tcp", fallback=True,
              batch="edgecheck.checks.tcp:check_tcp_many", round_trips=2),
    ProbeKind("ntp", Kind.ENDPOINT, "edgecheck.checks.ntp:check_ntp", "udp", (123,), round_trips=2),
    ProbeKind("ike", Kind.ENDPOINT, "edgecheck.checks.ike:check_ike", "udp", (4500,), round_trips=2),
    ProbeKind("inbound", Kind.INBOUND, "edgecheck.checks.inbound:check_inbound"),
    ProbeKind("kernel", Kind.SYSTEM, "edgecheck.checks.kernel:check_kernel"),
    ProbeKind("tool", Kind.TOOL, "edgecheck.checks.tool:check_tool"),
    ProbeKind("clock", Kind.CLOCK, "edgecheck.checks.clock:check_clock", after=("ntp",)),
    ProbeKind("yurthub", Kind.COMPONENT, "edgecheck.checks.yurthub:check_yurthub"),
    ProbeKind("reach", Kind.REACH, "edgecheck.checks.reach:check_reach", "any",
              batch="edgecheck.checks.reach:check_reach_many", round_trips=2),
    ProbeKind("nameserver", Kind.DNS, "edgecheck.checks.nameserver:check_nameserver", "udp"),
)

BY_NAME: Dict[str, ProbeKind] = {p.name: p for p in PROBES}


def get(name: str) -> ProbeKind:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown probe kind {name!r}") from None


def endpoint_probes(transport: Optional[str] = None) -> Tuple[ProbeKind, ...]:
    return tuple(p for p in PROBES if p.kind is Kind.ENDPOINT and (transport is None or p.transport == transport))


def default_probe(protocol: str, port: int) -> Optional[ProbeKind]:
    """The probe for an endpoint whose catalog entry names none; None when nothing fits."""
    candidates = endpoint_probes(protocol)
    for probe in candidates:
        if port in probe.default_ports:
            return probe
    return next((p for p in candidates if p.fallback), None)
