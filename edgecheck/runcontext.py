"""What every check of one run shares: its settings (RunContext) and the facts read once per
run (RunFacts): the resolver, the socket table, os-release, the install plan, earlier results.

Facts are read lazily by the first check that needs them and then served to the others, so a
run that has no inbound target never reads the socket table, and one that has five reads it
once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import field
from typing import TYPE_CHECKING, Any, Callable, Dict, Generic, Mapping, Optional, Sequence, Set, Tuple, TypeVar

from edgecheck.model import CheckResult, Kind, Mode, Phase, Target
from edgecheck.netloc import ip_literal
from edgecheck.records import record

if TYPE_CHECKING:
    import ssl

    from edgecheck.evidence import TrustSource
    from edgecheck.firewall.hostview import HostFilter
    from edgecheck.host.distro import OsRelease
    from edgecheck.host.kernel import KernelState
    from edgecheck.host.sockets import SocketTable
    from edgecheck.host.tools import InstallPlan
    from edgecheck.probes.budget import Budget
    from edgecheck.probes.interception import PublicRoots
    from edgecheck.probes.nameservers import NameserverReport
    from edgecheck.probes.resolver import SharedResolver
    from edgecheck.probes.trustcache import ContextCache

T = TypeVar("T")


class Lazy(Generic[T]):
    """A value computed once, by the first caller, while concurrent callers wait for it."""

    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._done = False
        self._value: Optional[T] = None

    def get(self) -> T:
        with self._lock:
            if not self._done:
                self._value = self._compute()
                self._done = True
            return self._value  # type: ignore[return-value]


class _Prefetch:
    """A fact computed on a background thread; readers wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: Optional[BaseException] = None

    def run(self, compute: Callable[[], Any]) -> None:
        try:
            self.value = compute()
        except BaseException as exc:  # noqa: BLE001 - handed to the reader
            self.error = exc
        finally:
            self.done.set()


class RunFacts:
    """Facts about this host and this run, each read at most once per run (thread-safe)."""

    def __init__(self, resolv_conf: str, os_release: str, tool_path: Optional[str],
                 targets: Tuple[Target, ...]) -> None:
        self.settings = (resolv_conf, os_release, tool_path, targets)
        self._resolv_conf, self._os_release, self._tool_path, self._targets = self.settings
        self._resolver = Lazy(self._make_resolver)
        self._sockets = Lazy(self._read_sockets)
        self._os = Lazy(self._read_os_release)
        self._install = Lazy(self._make_install_plan)
        self._kernel = Lazy(self._read_kernel)
        self._filter: Optional["HostFilter"] = None
        self._filter_lock = threading.Lock()
        self._tls = Lazy(self._make_context_cache)
        self._nameservers: Optional["NameserverReport"] = None
        self._nameservers_lock = threading.Lock()
        self._results: Dict[str, Tuple[CheckResult, ...]] = {}
        self._prefetched: Dict[str, _Prefetch] = {}
        self._once: Set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _make_context_cache() -> "ContextCache":
        from edgecheck.probes.trustcache import ContextCache

        return ContextCache()

    def _make_resolver(self) -> "SharedResolver":
        from edgecheck.probes.resolver import SharedResolver

        return SharedResolver(self._resolv_conf)

    def _read_sockets(self) -> "SocketTable":
        from edgecheck.host.sockets import read_socket_table, read_socket_table_for

        ports = {(t.protocol or "tcp", t.port) for t in self._targets if t.kind is Kind.INBOUND and t.port}
        return read_socket_table_for(ports) if ports else read_socket_table()

    def _read_os_release(self) -> "OsRelease":
        from edgecheck.host.distro import read_os_release

        return read_os_release(self._os_release)

    def _make_install_plan(self) -> "InstallPlan":
        from edgecheck.host.tools import install_plan, missing_tools, search_dirs

        specs = [t.tool for t in self._targets if t.kind is Kind.TOOL and t.tool is not None and t.skip is None]
        return install_plan(missing_tools(specs, search_dirs(self._tool_path)), self.os_release())

    @staticmethod
    def _read_kernel() -> "KernelState":
        from edgecheck.host.kernel import read_kernel_state

        return read_kernel_state()

    def kernel_state(self) -> "KernelState":
        """The kernel settings the system:* checks judge, read once."""
        return self._kernel.get()

    def host_filter(self, timeout: float) -> "HostFilter":
        """This host's packet filter, read once by the first check that needs it (the inbound
        checks, or an outbound probe that failed): a run that needs neither never reads it."""
        with self._filter_lock:
            if self._filter is None:
                from edgecheck.firewall.hostview import read_host_filter

                self._filter = read_host_filter(timeout, self.os_release().family or "")
            return self._filter

    def resolver(self) -> "SharedResolver":
        """One resolver per run: a hostname several targets share is resolved once."""
        return self._resolver.get()

    def socket_table(self) -> "SocketTable":
        """This host's listening sockets; walking /proc/<pid>/fd is the costly part of a run."""
        return self._sockets.get()

    def os_release(self) -> "OsRelease":
        return self._os.get()

    def install_plan(self) -> "InstallPlan":
        """One command installing every missing tool of the plan."""
        return self._install.get()

    def tls_context(self, trust: "TrustSource") -> "ssl.SSLContext":
        """One SSLContext per trust source per run, shared by every handshake (issue 17: loading a
        CA bundle costs tens of ms; a context is safe to share between threads once built)."""
        return self._tls.get().get(trust)

    def public_roots(self) -> Optional["PublicRoots"]:
        """The public roots (certifi) that TLS interception is judged against."""
        return self._tls.get().public()

    def nameserver_health(self, budget: "Budget") -> "NameserverReport":
        """Every dns:nameserver target of the plan asked at once, by the first check that needs it
        (within its budget); the others wait for that report (their verdicts depend on each other)."""
        with self._nameservers_lock:
            if self._nameservers is None:
                from edgecheck.probes.nameservers import NameserverTarget, discover, probe_all

                planned = [NameserverTarget(t.host, int(t.port or 53), t.upstream_of) for t in self._targets
                           if t.kind is Kind.DNS and t.skip is None and t.host]
                qname = next((t.host for t in self._targets if t.kind is Kind.ENDPOINT and t.host
                              and ip_literal(t.host) is None), "localhost")
                self._nameservers = probe_all(discover(self._resolv_conf), planned, qname, budget,
                                              self.resolver().refused)
            return self._nameservers

    def first_time(self, key: str) -> bool:
        """True on the first call with this key in the run, then False: work a run does once."""
        with self._lock:
            if key in self._once:
                return False
            self._once.add(key)
            return True

    def prefetch(self, key: str, compute: Callable[[], Any]) -> None:
        """Start computing a fact now, on a background thread (a check module's warm(), called by
        the engine before the checks start): a check that runs later, such as the clock after the
        NTP probes, then reads it instead of adding its time to the run's."""
        with self._lock:
            if key in self._prefetched:
                return
            slot = self._prefetched[key] = _Prefetch()
        threading.Thread(target=slot.run, args=(compute,), daemon=True, name=f"edgecheck-{key}").start()

    def fetched(self, key: str, compute: Callable[[], Any], wait: float) -> Any:
        """The prefetched fact (waiting at most `wait` seconds for it); computed here when nobody
        prefetched it or it is not ready in time."""
        with self._lock:
            slot = self._prefetched.get(key)
        if slot is None or not slot.done.wait(max(0.0, wait)):
            return compute()
        if slot.error is not None:
            raise slot.error
        return slot.value

    def publish(self, probe: str, results: Sequence[CheckResult]) -> None:
        """The engine hands finished results of one probe kind to the kinds that come after it."""
        with self._lock:
            self._results[probe] = tuple(results)

    def results_of(self, probe: str) -> Tuple[CheckResult, ...]:
        with self._lock:
            return self._results.get(probe, ())


@record(frozen=True)
class RunContext:
    """Everything a check may need besides its target. Built once per run by the runner."""

    timeout: float = 3.0  # per probe, seconds
    deadline: float = float("inf")  # time.monotonic() value after which nothing new starts
    ca_bundle: Optional[str] = None  # --ca-bundle, REQUESTS_CA_BUNDLE or SSL_CERT_FILE
    ca_origin: str = "--ca-bundle"  # which of those gave ca_bundle
    apiserver_ca: Optional[str] = None  # --apiserver-ca: the cluster CA for Trust.CLUSTER
    environ: Mapping[str, str] = field(default_factory=dict)  # proxy variables as the run saw them
    resolv_conf: str = "/etc/resolv.conf"
    os_release: str = "/etc/os-release"
    tool_path: Optional[str] = None  # PATH-like search list for tool checks; None = PATH + sbin dirs
    phase: Phase = Phase.JOIN
    mode: Mode = Mode.PUBLIC
    source_cidrs: Tuple[str, ...] = ()  # --source-cidr: who must reach the inbound ports (SPEC 7.2)
    targets: Tuple[Target, ...] = ()  # the whole plan
    reach_token: Optional[str] = field(default=None, repr=False)  # reach: `edgecheck listen`'s token (never reported)
    facts: RunFacts = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        settings = (self.resolv_conf, self.os_release, self.tool_path, self.targets)
        if self.facts is None or self.facts.settings != settings:
            # dataclasses.replace() hands the old facts over: keep them unless they no longer fit.
            object.__setattr__(self, "facts", RunFacts(*settings))

    def remaining(self) -> float:
        """Seconds left before the hard deadline (never negative)."""
        return max(0.0, self.deadline - time.monotonic())
