"""Scrub secrets from everything a report carries, whatever the format.

Probes and the CLI are asked not to put secrets in a Report, but a proxy URL copied from
HTTPS_PROXY (`http://user:pass@proxy:3128`) is exactly the kind of value that ends up in
evidence or a message by accident. Every renderer goes through here so a report written to a
world-readable file (mode 0644, scraped by node_exporter, shipped to fleet tooling) never
carries credentials.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Dict

MASK = "***"

# scheme://userinfo@host — userinfo is whatever sits between "//" and the last "@" before the
# host part; it cannot contain "/", whitespace or "@" once percent-encoded.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@]+)@")

# Keys whose values are secrets whatever they look like: the whole key or its last word
# ("proxy_password", "proxyPassword", "token"), not a substring ("bypass", "tokens_seen").
_SECRET_WORD = re.compile(
    r"(?:^|_)(?:pass|password|passwd|secret|token|api_?key|authorization|cookie"
    r"|credentials?|private_?key)$"
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


@functools.lru_cache(maxsize=4096)  # a report repeats the same few dozen keys thousands of times
def _is_secret_key(key: str) -> bool:
    norm = _CAMEL.sub(r"\1_\2", key).lower().replace("-", "_").replace(".", "_")
    return bool(_SECRET_WORD.search(norm))


def redact_text(s: str) -> str:
    """Replace the user:password part of every URL in `s` with ***."""
    if "@" not in s:
        return s
    return _URL_USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", s)


def redact_value(value: Any) -> Any:
    """A deep copy of `value` with secret-looking keys masked and URL credentials removed."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        out: Dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str) and _is_secret_key(k) and v not in (None, "", False):
                out[k] = MASK
            else:
                out[k] = redact_value(v)
        return out
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value
