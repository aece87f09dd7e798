"""One HTTP(S) request with requests, to an address already resolved (or through a proxy).

requests would otherwise resolve the name itself with getaddrinfo, outside any timeout; so the
URL carries the IP, the Host header and TLS server_hostname carry the name, and the proxy URL
carries an IP too. Session.trust_env is off: proxies and trust come from the run, not os.environ.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, List, Optional, Tuple, Type, TypeVar

import requests
import requests.adapters
import urllib3.exceptions

from edgecheck.evidence import HttpResult
from edgecheck.model import Reason
from edgecheck.netloc import authority, host_port
from edgecheck.netloc import ip_literal
from edgecheck.probes.budget import Budget

# Trust.CLUSTER without --apiserver-ca is deliberately unverified and says so in the result;
# the library's warning would only be noise on stderr.
warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)

USER_AGENT = "edgecheck-probe"


class _PinnedHostAdapter(requests.adapters.HTTPAdapter):
    """Connects to the IP in the URL but sends SNI and checks the certificate for `hostname`."""

    def __init__(self, hostname: Optional[str]) -> None:
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._hostname:
            kwargs["server_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


E = TypeVar("E", bound=BaseException)


def _find_cause(exc: BaseException, kind: Type[E]) -> Optional[E]:
    """The first exception of `kind` in exc's chain (cause, context, args, urllib3's .reason)."""
    seen = set()
    stack: List[Optional[BaseException]] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kind):
            return e
        stack.extend([e.__cause__, e.__context__, *[a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]])
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return None


def classify_requests_error(exc: BaseException, via_proxy: bool) -> Tuple[Reason, str]:
    """Pure mapping of a requests exception to (reason, detail)."""
    import ssl
    if isinstance(exc, requests.exceptions.ProxyError):
        return Reason.PROXY_ERROR, f"the proxy failed: {exc}"
    if isinstance(exc, requests.exceptions.SSLError):
        verr = _find_cause(exc, ssl.SSLCertVerificationError)
        if verr is not None:
            return Reason.TLS_VERIFY_FAILED, f"certificate verification failed: {verr.verify_message or verr}"
        return Reason.TLS_HANDSHAKE_FAILED, f"TLS handshake failed: {exc}"
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout, requests.exceptions.Timeout)):
        return Reason.TIMEOUT, "no HTTP response in time"
    if isinstance(exc, requests.exceptions.ConnectionError):
        refused = _find_cause(exc, ConnectionRefusedError)
        if refused is not None:
            return (Reason.PROXY_ERROR if via_proxy else Reason.REFUSED), "connection refused"
        return (Reason.PROXY_ERROR if via_proxy else Reason.UNREACHABLE), f"connection failed: {exc}"
    return Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"


def request(scheme: str, host: str, port: int, budget: Budget, *, address: Optional[str] = None,
            proxy_url: Optional[str] = None, verify: Any = True) -> HttpResult:
    """GET / once; any HTTP status proves reachability. Bounded by the budget per connect/read.

    Direct: connect to `address` (already resolved). Proxied: the URL keeps the name (the proxy
    resolves it, as the node's components would have it) and proxy_url must carry an IP.
    """
    start = time.monotonic()
    literal_host = host.strip("[]")
    if proxy_url:
        url = f"{scheme}://{authority(literal_host, port, scheme)}/"
    else:
        url = f"{scheme}://{host_port(address or literal_host, port)}/"
    shown_url = f"{scheme}://{authority(literal_host, port, scheme)}/"
    out = HttpResult(ok=False, url=shown_url)
    session = requests.Session()
    session.trust_env = False  # no os.environ proxies/CA overrides: the run decides (NOTES: #3829)
    is_ip = ip_literal(literal_host) is not None
    session.mount("https://", _PinnedHostAdapter(None if (proxy_url or is_ip) else literal_host))
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
    headers = {"User-Agent": USER_AGENT, "Host": authority(literal_host, port, scheme)}
    proxies = {scheme: proxy_url} if proxy_url else {}
    left = budget.left()
    try:
        if left <= 0:
            raise requests.exceptions.ConnectTimeout("probe budget exhausted before the HTTP request")
        resp = session.get(url, headers=headers, proxies=proxies, verify=verify, timeout=(left, left),
                           allow_redirects=False, stream=True)
        out.status = resp.status_code
        out.ok = True
        resp.close()
    except Exception as exc:  # requests raises many types; all are classified, none escapes
        out.reason, out.error = classify_requests_error(exc, bool(proxy_url))
    finally:
        session.close()
    out.ms = int(round((time.monotonic() - start) * 1000))
    return out
