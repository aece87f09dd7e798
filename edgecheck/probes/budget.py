"""Time budgets and bounded parallel calls shared by the probe layers."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

from edgecheck.records import record


@record(frozen=True)
class Budget:
    """The end (a time.monotonic() value) a probe and every layer inside it must respect.

    One budget covers DNS, connect, TLS and HTTP together, so a probe never takes longer than
    the probe timeout however many layers it passes through, and never outlives the run's deadline.
    """

    end: float

    @classmethod
    def for_probe(cls, timeout: float, deadline: float) -> "Budget":
        """The probe's own timeout from now, cut short by the run's hard deadline."""
        return cls(min(time.monotonic() + timeout, deadline))

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


# One outcome per call: ("ok", value) | ("error", exception) | None when it did not finish in time.
Outcome = Optional[Tuple[str, Any]]


def run_parallel(calls: Sequence[Callable[[], Any]], budget: Budget, grace: float = 0.25) -> List[Outcome]:
    """Run calls concurrently on daemon threads; wait until all finish or the budget (+grace) ends.

    Each call is expected to bound itself by the same budget; the grace only covers the last
    syscall returning. Daemon threads so that a call stuck past its budget never blocks exit.
    """
    outcomes: List[Outcome] = [None] * len(calls)

    def runner(i: int, fn: Callable[[], Any]) -> None:
        try:
            outcomes[i] = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller, never lost
            outcomes[i] = ("error", exc)

    threads = [threading.Thread(target=runner, args=(i, fn), daemon=True, name="edgecheck-probe-part")
               for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    stop = budget.end + grace
    for t in threads:
        t.join(max(0.0, stop - time.monotonic()))
    return list(outcomes)


def elapsed_ms(start: float) -> int:
    return int(round((time.monotonic() - start) * 1000))
