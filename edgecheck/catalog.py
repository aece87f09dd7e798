"""Load and validate the target catalog (targets/*.toml) and user targets files.

Every problem in a file is reported as one line naming the file, the entry and the problem
(CatalogError, exit 2). Nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
import re
import string
import sys
from dataclasses import field
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

from edgecheck import registry
from edgecheck.errors import UsageError
from edgecheck.model import Component, Mode, Stage, ToolSpec, Trust
from edgecheck.records import record

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

SCHEMA_VERSION = 1
HOST_INPUTS = ("apiserver", "raven_gateway", "tunnel_server")
ROUTE_KINDS = ("registry", "oss", "cloud", "none")
PLUGINS = ("flannel", "terway-edge")
SKIP_FLAGS = ("self_host_ntp",)
TEMPLATE_FIELDS = ("region",)
ENTRY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
REGION_ID = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")
# A host before templating: hostname characters, IP literals, and {region}.
HOST_TEMPLATE = re.compile(r"^[A-Za-z0-9._:\-\[\]{}]+$")


class CatalogError(UsageError):
    """A malformed catalog or targets file."""


@record(frozen=True)
class VersionRule:
    """A cluster-version condition such as "<1.26", compared on (major, minor)."""

    op: str
    version: Tuple[int, int]

    _OPS = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "==": lambda a, b: a == b,
    }
    _SYNTAX = re.compile(r"^\s*(<=|>=|==|<|>)\s*(\d+)\.(\d+)\s*$")

    @classmethod
    def parse(cls, text: str) -> "VersionRule":
        m = cls._SYNTAX.match(text)
        if not m:
            raise ValueError(f"version rule {text!r} is not like '<1.26' or '>=1.26'")
        return cls(m.group(1), (int(m.group(2)), int(m.group(3))))

    def matches(self, version: Tuple[int, int]) -> bool:
        return self._OPS[self.op](version, self.version)

    def __str__(self) -> str:
        return f"{self.op} {self.version[0]}.{self.version[1]}"


@record(frozen=True)
class EndpointEntry:
    id: str
    name: str
    ports: Tuple[int, ...]
    source: str
    origin: str  # file the entry was read from
    host: Optional[str] = None
    host_from: Optional[str] = None
    protocol: str = "tcp"
    probe: Optional[str] = None  # a probe kind of edgecheck.registry; None: its default for the port
    modes: FrozenSet[Mode] = frozenset(Mode)
    stage: Stage = Stage.OPERATION
    k8s: Optional[VersionRule] = None
    plugins: Optional[FrozenSet[str]] = None
    regions: Optional[FrozenSet[str]] = None
    except_regions: FrozenSet[str] = frozenset()
    optional: bool = False
    routes: str = "none"
    cidrs: Tuple[str, ...] = ()  # explicit expected blocks (user targets), any mode
    trust: Trust = Trust.PUBLIC
    skip_when: Optional[str] = None
    notes: Tuple[str, ...] = ()


@record(frozen=True)
class InboundEntry:
    id: str
    name: str
    ports: Tuple[int, ...]
    protocol: str
    source: str
    origin: str
    modes: FrozenSet[Mode] = frozenset(Mode)
    plugins: Optional[FrozenSet[str]] = None
    component: Optional[str] = None
    allowed_from: Mapping[str, str] = field(default_factory=dict)  # mode -> who must reach the port
    notes: Tuple[str, ...] = ()
    answers: Mapping[int, str] = field(default_factory=dict)  # port -> what the joined component speaks


@record(frozen=True)
class RouteBlock:
    cidrs: Tuple[str, ...]
    source: str
    notes: Tuple[str, ...] = ()


@record(frozen=True)
class Region:
    id: str
    name: str
    source: str
    registry_vpc_endpoint: Optional[str] = None
    registry_routes: Tuple[str, ...] = ()
    oss_public_endpoint: Optional[str] = None
    oss_internal_endpoint: Optional[str] = None
    oss_dual_stack_endpoint: Optional[str] = None
    oss_vip_cidrs: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()


@record(frozen=True)
class ToolEntry:
    id: str
    name: str
    source: str
    spec: ToolSpec


@record(frozen=True)
class Catalog:
    endpoints: Tuple[EndpointEntry, ...]
    inbound: Tuple[InboundEntry, ...]
    tools: Tuple[ToolEntry, ...]
    regions: Mapping[str, Region]
    routes: Mapping[str, RouteBlock]
    components: Mapping[str, Component] = field(default_factory=dict)
    leftover_processes: Tuple[str, ...] = ()
    titles: Mapping[str, str] = field(default_factory=dict)  # documentation file -> page title

    def title(self, source: str) -> str:
        """The page title(s) for an entry's `source` ("001_x.txt, 003_y.txt"); a user targets file
        is its own path."""
        return "; ".join(self.titles.get(part.strip(), part.strip()) for part in source.split(","))


# ---------------------------------------------------------------------------------------------
# Field validation: each reader takes the raw value and returns the typed value or raises
# ValueError with the problem; the table reader adds file and entry to the message.
# ---------------------------------------------------------------------------------------------


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _str_list(value: Any) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("must be a list of strings")
    return tuple(value)


def _port(value: Any) -> int:
    # bool is an int in Python; "true" is not a port.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"port {value!r} is not a number")
    if not 1 <= value <= 65535:
        raise ValueError(f"port {value} is out of range 1-65535")
    return value


def _ports(value: Any) -> Tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of port numbers")
    ports = tuple(_port(v) for v in value)
    if len(set(ports)) != len(ports):
        raise ValueError("lists a port twice")
    return ports


def _cidrs(value: Any) -> Tuple[str, ...]:
    items = _str_list(value)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a valid CIDR block ({exc})") from None
    return items


def _choice(options: Sequence[str]) -> Callable[[Any], str]:
    def read(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value

    return read


def _modes(value: Any) -> FrozenSet[Mode]:
    return frozenset(Mode(_choice([m.value for m in Mode])(v)) for v in _str_list(value))


def _plugins(value: Any) -> FrozenSet[str]:
    return frozenset(_choice(PLUGINS)(v) for v in _str_list(value))


def _region_ids(value: Any) -> FrozenSet[str]:
    ids = _str_list(value)
    for rid in ids:
        if not REGION_ID.match(rid):
            raise ValueError(f"{rid!r} is not a region id like cn-hangzhou")
    return frozenset(ids)


def _host_template(value: Any) -> str:
    host = _str(value)
    if not HOST_TEMPLATE.match(host):
        raise ValueError(f"host {host!r} contains characters a hostname cannot have")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(host) if f is not None]
    except ValueError as exc:
        raise ValueError(f"host {host!r}: {exc}") from None
    unknown = [f for f in fields if f not in TEMPLATE_FIELDS]
    if unknown:
        raise ValueError(f"host {host!r} uses unknown placeholder {{{unknown[0]}}} (only {{region}})")
    return host


def _version_rule(value: Any) -> VersionRule:
    return VersionRule.parse(_str(value))


def _packages(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or not value:
        raise ValueError("must be a table of distribution = package name")
    for k, v in value.items():
        if not isinstance(v, str) or not v:
            raise ValueError(f"package for {k!r} must be a non-empty string")
    return dict(value)


class _Table:
    """Reads one TOML table strictly: unknown keys and bad values are one-line errors."""

    def __init__(self, path: str, label: str, raw: Any, readers: Mapping[str, Callable[[Any], Any]]):
        self.path, self.label = path, label
        if not isinstance(raw, dict):
            raise CatalogError(f"{path}: {label}: must be a table")
        unknown = sorted(set(raw) - set(readers))
        if unknown:
            raise CatalogError(
                f"{path}: {label}: unknown key {unknown[0]!r} (known: {', '.join(sorted(readers))})"
            )
        self.values: Dict[str, Any] = {}
        for key, value in raw.items():
            try:
                self.values[key] = readers[key](value)
            except ValueError as exc:
                raise CatalogError(f"{path}: {label}: {key}: {exc}") from None

    def require(self, *keys: str) -> None:
        for key in keys:
            if key not in self.values:
                raise CatalogError(f"{self.path}: {self.label}: missing required key {key!r}")

    def fail(self, problem: str) -> "CatalogError":
        return CatalogError(f"{self.path}: {self.label}: {problem}")


_ENDPOINT_READERS: Dict[str, Callable[[Any], Any]] = {
    "id": _str,
    "name": _str,
    "host": _host_template,
    "host_from": _choice(HOST_INPUTS),
    "ports": _ports,
    "protocol": _choice(("tcp", "udp")),
    "probe": _choice([p.name for p in registry.endpoint_probes()]),
    "modes": _modes,
    "stage": _choice([s.value for s in Stage]),
    "k8s": _version_rule,
    "plugins": _plugins,
    "regions": _region_ids,
    "except_regions": _region_ids,
    "optional": _bool,
    "routes": _choice(ROUTE_KINDS),
    "cidrs": _cidrs,
    "trust": _choice([t.value for t in Trust]),
    "skip_when": _choice(SKIP_FLAGS),
    "notes": _str_list,
    "source": _str,
}

def _per_mode(value: Any) -> Mapping[str, str]:
    if not isinstance(value, dict) or not value:
        raise ValueError("must be a table of mode = text")
    for mode, text in value.items():
        _choice([m.value for m in Mode])(mode)
        _str(text)
    return dict(value)


# What a joined node's component can prove on an inbound port to `edgecheck reach`
# (edgecheck/reach/prober.py): a TLS handshake, an HTTP(S) answer, or a plain TCP connect.
INBOUND_ANSWERS = ("tls", "http", "https", "tcp")


def _answers(value: Any) -> Mapping[int, str]:
    if not isinstance(value, dict) or not value:
        raise ValueError("must be a table of port = probe")
    out: Dict[int, str] = {}
    for port, answer in value.items():
        try:
            number = _port(int(port))
        except (TypeError, ValueError):
            raise ValueError(f"{port!r} is not a port number") from None
        out[number] = _choice(INBOUND_ANSWERS)(answer)
    return out


_INBOUND_READERS: Dict[str, Callable[[Any], Any]] = {
    "id": _str,
    "name": _str,
    "ports": _ports,
    "protocol": _choice(("tcp", "udp")),
    "modes": _modes,
    "plugins": _plugins,
    "component": _str,
    "allowed_from": _per_mode,
    "answers": _answers,
    "notes": _str_list,
    "source": _str,
}

_COMPONENT_READERS: Dict[str, Callable[[Any], Any]] = {
    "check": _str,
    "bind": _str,
}

_TOOL_READERS: Dict[str, Callable[[Any], Any]] = {
    "id": _str,
    "name": _str,
    "executables": _str_list,
    "packages": _packages,
    "source": _str,
}

_REGION_READERS: Dict[str, Callable[[Any], Any]] = {
    "name": _str,
    "registry_vpc_endpoint": _str,
    "registry_routes": _cidrs,
    "oss_public_endpoint": _str,
    "oss_internal_endpoint": _str,
    "oss_dual_stack_endpoint": _str,
    "oss_vip_cidrs": _cidrs,
    "notes": _str_list,
    "source": _str,
}

_ROUTE_READERS: Dict[str, Callable[[Any], Any]] = {"cidrs": _cidrs, "source": _str, "notes": _str_list}


def _entry_label(kind: str, index: int, raw: Any) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        return f"{kind} {raw['id']!r}"
    return f"{kind} #{index + 1}"


def _check_id(table: _Table) -> str:
    entry_id = table.values["id"]
    if not ENTRY_ID.match(entry_id):
        raise table.fail(f"id {entry_id!r} must be lowercase letters, digits, '.', '_' or '-'")
    return entry_id


def _read_endpoint(path: str, index: int, raw: Any, *, default_source: Optional[str]) -> EndpointEntry:
    table = _Table(path, _entry_label("endpoint", index, raw), raw, _ENDPOINT_READERS)
    table.require("id", "name", "ports")
    v = table.values
    _check_id(table)
    if ("host" in v) == ("host_from" in v):
        raise table.fail("needs exactly one of 'host' or 'host_from'")
    source = v.get("source", default_source)
    if source is None:
        raise table.fail("missing required key 'source' (the documentation page the entry comes from)")
    protocol = v.get("protocol", "tcp")
    probe = v.get("probe")
    if probe is not None and registry.get(probe).transport != protocol:
        raise table.fail(f"probe {probe!r} does not work over {protocol}")
    if probe is None:
        unprobed = [port for port in v["ports"] if registry.default_probe(protocol, port) is None]
        if unprobed:
            known = ", ".join(f"{port} ({p.name})" for p in registry.endpoint_probes(protocol) for port in p.default_ports)
            raise table.fail(f"{protocol} ports without a default probe need an explicit 'probe' "
                             f"(port {unprobed[0]}; defaults: {known})")
    if "cidrs" in v and "routes" in v:
        raise table.fail("use either 'routes' or 'cidrs', not both")
    if "regions" in v and "except_regions" in v:
        raise table.fail("use either 'regions' or 'except_regions', not both")
    return EndpointEntry(
        id=v["id"],
        name=v["name"],
        ports=v["ports"],
        source=source,
        origin=path,
        host=v.get("host"),
        host_from=v.get("host_from"),
        protocol=protocol,
        probe=probe,
        modes=v.get("modes", frozenset(Mode)),
        stage=Stage(v.get("stage", Stage.OPERATION.value)),
        k8s=v.get("k8s"),
        plugins=v.get("plugins"),
        regions=v.get("regions"),
        except_regions=v.get("except_regions", frozenset()),
        optional=v.get("optional", False),
        routes=v.get("routes", "none"),
        cidrs=v.get("cidrs", ()),
        trust=Trust(v.get("trust", Trust.PUBLIC.value)),
        skip_when=v.get("skip_when"),
        notes=v.get("notes", ()),
    )


def _read_inbound(path: str, index: int, raw: Any, *, default_source: Optional[str]) -> InboundEntry:
    table = _Table(path, _entry_label("inbound", index, raw), raw, _INBOUND_READERS)
    table.require("id", "name", "ports", "protocol")
    v = table.values
    _check_id(table)
    source = v.get("source", default_source)
    if source is None:
        raise table.fail("missing required key 'source' (the documentation page the entry comes from)")
    stray = sorted(set(v.get("answers", {})) - set(v["ports"]))
    if stray:
        raise table.fail(f"answers: port {stray[0]} is not one of the entry's ports")
    return InboundEntry(
        id=v["id"],
        name=v["name"],
        ports=v["ports"],
        protocol=v["protocol"],
        source=source,
        origin=path,
        modes=v.get("modes", frozenset(Mode)),
        plugins=v.get("plugins"),
        component=v.get("component"),
        allowed_from=v.get("allowed_from", {}),
        notes=v.get("notes", ()),
        answers=v.get("answers", {}),
    )


def _parse_toml(path: str, text: str) -> Dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: invalid TOML: {exc}") from None


def _check_schema(path: str, doc: Mapping[str, Any]) -> None:
    schema = doc.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise CatalogError(f"{path}: schema {schema!r} is not supported (this edgecheck reads schema {SCHEMA_VERSION})")


def _check_top_keys(path: str, doc: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = set(allowed) | {"schema"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise CatalogError(f"{path}: unknown top-level key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def _array(path: str, doc: Mapping[str, Any], key: str) -> List[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise CatalogError(f"{path}: {key!r} must be an array of tables ([[{key}]])")
    return value


@record(frozen=True)
class TargetsDocument:
    """One file in the catalog format: the built-in endpoints.toml or a user's targets file."""

    endpoints: Tuple[EndpointEntry, ...]
    inbound: Tuple[InboundEntry, ...]
    routes: Mapping[str, RouteBlock] = field(default_factory=dict)
    components: Mapping[str, Component] = field(default_factory=dict)
    leftover_processes: Tuple[str, ...] = ()


_BUILTIN_ONLY = ("routes", "component", "leftover_processes")


def parse_targets_document(path: str, text: str, *, builtin: bool) -> TargetsDocument:
    """Endpoints, inbound ports (and, in the built-in catalog, route blocks and components)."""
    doc = _parse_toml(path, text)
    _check_schema(path, doc)
    _check_top_keys(path, doc, ("endpoint", "inbound") + (_BUILTIN_ONLY if builtin else ()))
    default_source = None if builtin else path
    endpoints = tuple(
        _read_endpoint(path, i, raw, default_source=default_source) for i, raw in enumerate(_array(path, doc, "endpoint"))
    )
    inbound = tuple(
        _read_inbound(path, i, raw, default_source=default_source) for i, raw in enumerate(_array(path, doc, "inbound"))
    )
    routes = {
        name: RouteBlock(t.values["cidrs"], t.values["source"], t.values.get("notes", ()))
        for name, t in _tables(path, doc, "routes", _ROUTE_READERS, ("cidrs", "source"))
    }
    components = {
        name: Component(name, t.values["check"], t.values["bind"])
        for name, t in _tables(path, doc, "component", _COMPONENT_READERS, ("check", "bind"))
    }
    leftovers = doc.get("leftover_processes", [])
    try:
        leftover_processes = _str_list(leftovers)
    except ValueError as exc:
        raise CatalogError(f"{path}: leftover_processes: {exc}") from None
    return TargetsDocument(endpoints, inbound, routes, components, leftover_processes)


def _tables(path: str, doc: Mapping[str, Any], key: str, readers: Mapping[str, Callable[[Any], Any]],
            required: Sequence[str]) -> List[Tuple[str, "_Table"]]:
    raw_tables = doc.get(key, {})
    if not isinstance(raw_tables, dict):
        raise CatalogError(f"{path}: {key!r} must be a table")
    out = []
    for name, raw in raw_tables.items():
        table = _Table(path, f"{key}.{name}", raw, readers)
        table.require(*required)
        out.append((name, table))
    return out


def parse_sources_document(path: str, text: str) -> Dict[str, str]:
    """Documentation file -> page title (targets/sources.toml)."""
    doc = _parse_toml(path, text)
    _check_schema(path, doc)
    _check_top_keys(path, doc, ("source",))
    return {name: t.values["title"] for name, t in _tables(path, doc, "source", {"title": _str}, ("title",))}


def parse_regions_document(path: str, text: str) -> Dict[str, Region]:
    doc = _parse_toml(path, text)
    _check_schema(path, doc)
    _check_top_keys(path, doc, ("region",))
    raw_regions = doc.get("region", {})
    regions: Dict[str, Region] = {}
    for rid, raw in raw_regions.items():
        if not REGION_ID.match(rid):
            raise CatalogError(f"{path}: region {rid!r}: not a region id like cn-hangzhou")
        table = _Table(path, f"region {rid!r}", raw, _REGION_READERS)
        table.require("source")
        v = table.values
        regions[rid] = Region(
            id=rid,
            name=v.get("name", rid),
            source=v["source"],
            registry_vpc_endpoint=v.get("registry_vpc_endpoint"),
            registry_routes=v.get("registry_routes", ()),
            oss_public_endpoint=v.get("oss_public_endpoint"),
            oss_internal_endpoint=v.get("oss_internal_endpoint"),
            oss_dual_stack_endpoint=v.get("oss_dual_stack_endpoint"),
            oss_vip_cidrs=v.get("oss_vip_cidrs", ()),
            notes=v.get("notes", ()),
        )
    return regions


def parse_tools_document(path: str, text: str) -> List[ToolEntry]:
    doc = _parse_toml(path, text)
    _check_schema(path, doc)
    _check_top_keys(path, doc, ("tool",))
    tools: List[ToolEntry] = []
    for i, raw in enumerate(_array(path, doc, "tool")):
        table = _Table(path, _entry_label("tool", i, raw), raw, _TOOL_READERS)
        table.require("id", "executables", "packages", "source")
        v = table.values
        tool_id = _check_id(table)
        if any(t.id == tool_id for t in tools):
            raise table.fail(f"duplicate id {tool_id!r}")
        spec = ToolSpec(name=tool_id, executables=v["executables"], packages=v["packages"])
        tools.append(ToolEntry(tool_id, v.get("name", tool_id), v["source"], spec))
    return tools


def _builtin_text(name: str) -> Tuple[str, str]:
    """(display path, text) of a catalog file shipped in the package."""
    import pkgutil  # not importlib.resources: it imports tempfile, shutil and the compressors on every run

    data = pkgutil.get_data("edgecheck.targets", name)  # a file of the package, on disk or in a zip
    if data is None:
        # A source checkout used without installing: the catalog sits next to the package.
        return f"targets/{name}", (Path(__file__).resolve().parent.parent / "targets" / name).read_text(encoding="utf-8")
    return f"targets/{name}", data.decode("utf-8")


def _read_user_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read targets file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{path}: not a UTF-8 text file") from None


def _reject_duplicates(kind: str, entries: Sequence[Any]) -> None:
    seen: Dict[str, str] = {}
    for entry in entries:
        if entry.id in seen:
            other = "" if entry.origin == seen[entry.id] else f" (already in {seen[entry.id]})"
            raise CatalogError(f"{entry.origin}: {kind} {entry.id!r}: duplicate id{other}")
        seen[entry.id] = entry.origin


def _check_components(doc: TargetsDocument, components: Mapping[str, Component]) -> None:
    for entry in doc.inbound:
        if entry.component is not None and entry.component not in components:
            raise CatalogError(f"{entry.origin}: inbound {entry.id!r}: unknown component {entry.component!r}")


def _check_sources(path: str, sources: Iterable[str], titles: Mapping[str, str]) -> None:
    """Every source the built-in catalog cites is a page of targets/sources.toml."""
    for source in sources:
        for part in source.split(","):
            if part.strip() not in titles:
                raise CatalogError(f"{path}: source {part.strip()!r} is not a page of targets/sources.toml")


def load_catalog(extra_files: Sequence[str] = ()) -> Catalog:
    """The shipped catalog merged with the user's targets files, validated as a whole."""
    titles = parse_sources_document(*_builtin_text("sources.toml"))
    path, text = _builtin_text("endpoints.toml")
    builtin = parse_targets_document(path, text, builtin=True)
    _check_components(builtin, builtin.components)
    _check_sources(path, [e.source for e in builtin.endpoints + builtin.inbound]
                   + [r.source for r in builtin.routes.values()], titles)
    endpoints, inbound = list(builtin.endpoints), list(builtin.inbound)
    for extra in extra_files:
        user = parse_targets_document(extra, _read_user_file(extra), builtin=False)
        _check_components(user, builtin.components)
        endpoints += user.endpoints
        inbound += user.inbound
    _reject_duplicates("endpoint", endpoints)
    _reject_duplicates("inbound", inbound)
    if "cloud" not in builtin.routes:
        raise CatalogError(f"{path}: missing [routes.cloud] (the dedicated-mode cloud services block)")
    regions = parse_regions_document(*_builtin_text("regions.toml"))
    tools = parse_tools_document(*_builtin_text("tools.toml"))
    _check_sources("targets/regions.toml", [r.source for r in regions.values()], titles)
    _check_sources("targets/tools.toml", [t.source for t in tools], titles)
    return Catalog(
        endpoints=tuple(endpoints),
        inbound=tuple(inbound),
        tools=tuple(tools),
        regions=regions,
        routes=builtin.routes,
        components=builtin.components,
        leftover_processes=builtin.leftover_processes,
        titles=titles,
    )
