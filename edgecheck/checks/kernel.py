"""kernel: one `system:*` setting of this host (SPEC 7.2), judged for the run's phase.

The kernel state is read once per run (RunFacts.kernel_state); the decisions and their sources are
in edgecheck/host/kernel.py. A setting the installer makes itself is a warning before the join and
a failure on a running node. The fix (sysctl/modprobe and how to persist it) is evidence; the
advice for `kernel-setting` says it.
"""

from __future__ import annotations

import time

from edgecheck.evidence import KernelEvidence
from edgecheck.host.kernel import decide_kernel
from edgecheck.model import CheckResult, Evidence, Reason, Status, Target
from edgecheck.runcontext import RunContext


def check_kernel(target: Target, ctx: RunContext) -> CheckResult:
    started = time.monotonic()
    state = ctx.facts.kernel_state()
    # The plan only has system:module:vxlan with flannel (host.kernel.SETTINGS).
    found = {f.id: f for f in decide_kernel(state, ctx.phase)}
    finding = found.get(target.id)
    ms = int((time.monotonic() - started) * 1000)
    if finding is None:
        return CheckResult(target, Status.SKIP, Reason.NOT_APPLICABLE,
                           f"edgecheck does not know the kernel setting {target.id}.", duration_ms=ms)
    evidence = KernelEvidence(target.id.split(":", 1)[1], finding.evidence, finding.command, finding.persist)
    return CheckResult(target, finding.status, finding.reason, finding.message, evidence=Evidence(evidence),
                       duration_ms=ms)
