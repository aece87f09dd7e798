"""Proxy selection from the run's environment, the way requests/urllib would pick it (pure)."""

from __future__ import annotations

import base64
import ipaddress
from typing import Dict, Mapping, Optional
from urllib.parse import unquote, urlsplit, urlunsplit

from edgecheck.netloc import bracketed, host_port


def environ_proxies(environ: Mapping[str, str]) -> Dict[str, str]:
    """scheme -> proxy URL from *_proxy variables; the lowercase spelling wins, also when empty.

    Mirrors urllib.request.getproxies_environment (which requests uses), including the CGI rule:
    HTTP_PROXY is ignored when REQUEST_METHOD is set (httpoxy).
    """
    proxies: Dict[str, str] = {}
    for name, value in environ.items():
        if value and name[-6:].lower() == "_proxy":
            proxies[name[:-6].lower()] = value
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in environ.items():
        if name[-6:] == "_proxy":
            if value:
                proxies[name[:-6]] = value
            else:
                proxies.pop(name[:-6], None)
    proxies.pop("no", None)
    return proxies


def _no_proxy(environ: Mapping[str, str]) -> str:
    # requests: os.environ.get('no_proxy') or os.environ.get('NO_PROXY')
    return environ.get("no_proxy") or environ.get("NO_PROXY") or ""


def bypasses_proxy(host: str, port: Optional[int], environ: Mapping[str, str]) -> bool:
    """NO_PROXY as requests applies it: '*', CIDR blocks (IPv4 literal hosts only), suffixes."""
    entries = [e.strip() for e in _no_proxy(environ).replace(" ", ",").split(",") if e.strip()]
    host = host.strip("[]").lower().rstrip(".")
    if not entries:
        return False
    if "*" in entries:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv4Address):
        for entry in entries:
            if "/" in entry:
                try:
                    if ip in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    continue
            elif entry == host:
                return True
        return False
    host_port = f"{host}:{port}" if port else host
    for entry in entries:
        e = entry.lower().lstrip("*")
        # requests uses a plain suffix match; urllib strips a leading dot. Both are honoured.
        if host.endswith(e) or host_port.endswith(e) or host == e.lstrip("."):
            return True
    return False


def normalise_proxy_url(url: str) -> str:
    # requests prepends http:// to a scheme-less proxy (prepend_scheme_if_needed).
    return url if "://" in url else "http://" + url


def select_proxy(scheme: str, host: str, port: Optional[int], environ: Mapping[str, str]) -> Optional[str]:
    """The proxy URL an HTTP(S) client with this environment would use for scheme://host:port."""
    if bypasses_proxy(host, port, environ):
        return None
    proxies = environ_proxies(environ)
    url = proxies.get(scheme) or proxies.get("all")
    return normalise_proxy_url(url) if url else None


def strip_credentials(url: str) -> str:
    """Proxy URL fit for a report: user:password removed."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = bracketed(parts.hostname or "")
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def proxy_endpoint(url: str) -> tuple:
    """(scheme, host, port) of a proxy URL, default port per scheme as urllib3 uses."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 1080 if parts.scheme.startswith("socks") else 80
    return parts.scheme, parts.hostname or "", parts.port or default


def proxy_authorization(url: str) -> Optional[str]:
    parts = urlsplit(url)
    if parts.username is None:
        return None
    raw = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("latin-1")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def with_host(url: str, address: str) -> str:
    """The proxy URL with its host replaced by an address already resolved (keeps credentials)."""
    parts = urlsplit(url)
    userinfo = ""
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "") + "@"
    netloc = userinfo + host_port(address, proxy_endpoint(url)[2])
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
