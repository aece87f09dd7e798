"""The fleet summary as a library: read reports, aggregate, render (see the package docstring)."""


from __future__ import annotations

import json
from importlib import resources
from typing import Any, Callable, Dict, Iterable, Iterator, Optional

from edgecheck.fleet.aggregate import DEFAULT_STALE_AFTER, FleetAggregator
from edgecheck.fleet.model import InvalidInput, NodeReport
from edgecheck.fleet.reportfile import DEFAULT_MAX_BYTES, iter_inputs, load_node
from edgecheck.fleet.render_json import SCHEMA_ID
from edgecheck.fleet.summary import FleetSummary

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_STALE_AFTER",
    "FORMATS",
    "SCHEMA_ID",
    "FleetAggregator",
    "FleetSummary",
    "InvalidInput",
    "NodeReport",
    "render",
    "schema",
    "summarise",
]

FORMATS = ("text", "json", "html")


def summarise(
    paths: Iterable[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    stale_after: float = DEFAULT_STALE_AFTER,
    stale_from: str = "newest",
    now: Optional[float] = None,
    site: str = "",
    on_invalid: Optional[Callable[[InvalidInput], None]] = None,
) -> FleetSummary:
    """Read every report under `paths` (files, or directories walked for *.json), file by file.
    The summary reads its store lazily: close it (or use `with`) when done."""
    aggregator = FleetAggregator(stale_after=stale_after, stale_from=stale_from, now=now, site=site)
    for item in iter_inputs(paths, seen=aggregator.store):
        loaded = item if isinstance(item, InvalidInput) else load_node(item, max_bytes)
        if isinstance(loaded, InvalidInput) and on_invalid is not None:
            on_invalid(loaded)
        aggregator.add(loaded)
    return aggregator.summary()


def render(summary: FleetSummary, fmt: str, *, verbose: bool = False) -> Iterator[str]:
    """The summary in `fmt`, in chunks (write them as they come)."""
    # The renderer modules are named render_<fmt>; their functions are not re-exported here, so
    # `edgecheck.fleet.render_html` stays the module.
    from edgecheck.fleet import render_html, render_json, render_text

    if fmt == "json":
        return render_json.render_json(summary)
    if fmt == "html":
        return render_html.render_html(summary)
    if fmt == "text":
        return render_text.render_text(summary, verbose=verbose)
    raise ValueError(f"unknown fleet format {fmt!r}; one of {', '.join(FORMATS)}")


def schema() -> Dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `edgecheck fleet --format json`."""
    text = resources.files("edgecheck.fleet").joinpath("schema.json").read_text(encoding="utf-8")
    return json.loads(text)
