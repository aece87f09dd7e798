"""What a value type costs: @dataclass against edgecheck.records.record (issue 17).

    python3 -m bench.records [--classes 300] [--instances 200000]

Defines the same six-field class many times each way (the cost a run pays once per value type at
start-up), then times creating, hashing and comparing instances (what the host filter's parser
does tens of thousands of times). Pure CPU: nothing is sent or read.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any, Callable, Dict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgecheck.records import record  # noqa: E402

SOURCE = '''
class Value:
    """A value type of six fields."""
    address: str
    port: int
    protocol: str = "tcp"
    note: Optional[str] = None
    tags: Tuple[str, ...] = ()
    seen: List[str] = field(default_factory=list, compare=False)
'''

WAYS: Dict[str, Callable[..., Any]] = {
    "@dataclass(frozen=True)": dataclasses.dataclass(frozen=True),
    "@record(frozen=True)": record(frozen=True),
    "@dataclass": dataclasses.dataclass,
    "@record": record,
}


def define(decorate: Callable[[type], type]) -> type:
    namespace: Dict[str, Any] = {}
    # String annotations (as in edgecheck): dataclasses never evaluates them.
    exec(compile("from __future__ import annotations\n" + SOURCE, "<bench>", "exec"), {"field": dataclasses.field}, namespace)
    return decorate(namespace["Value"])


def per_class_ms(decorate: Callable[[type], type], classes: int) -> float:
    rounds = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(classes):
            define(decorate)
        rounds.append((time.perf_counter() - start) / classes * 1000)
    bare = min(timeit.repeat(lambda: define(lambda cls: cls), number=classes, repeat=3)) / classes * 1000
    return statistics.median(rounds) - bare


def per_instance_us(cls: type, instances: int) -> Dict[str, float]:
    a, b = cls("10.0.0.1", 443), cls("10.0.0.1", 443)
    out = {"create": min(timeit.repeat(lambda: cls("10.0.0.1", 443, "tcp", "n"), number=instances, repeat=3))}
    out["eq"] = min(timeit.repeat(lambda: a == b, number=instances, repeat=3))
    if cls.__hash__ is not None:
        out["hash"] = min(timeit.repeat(lambda: hash(a), number=instances, repeat=3))
    return {k: v / instances * 1e6 for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=300)
    ap.add_argument("--instances", type=int, default=200_000)
    args = ap.parse_args()
    print(f"Python {sys.version.split()[0]}; class definition: median of 3 rounds of {args.classes}, "
          f"without the class statement itself; instances: best of 3 rounds of {args.instances}")
    for name, decorate in WAYS.items():
        cost = per_instance_us(define(decorate), args.instances)
        print(f"  {name:24s} define {per_class_ms(decorate, args.classes):6.3f} ms/class   "
              + "   ".join(f"{k} {v:5.2f} us" for k, v in cost.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
