"""One SSLContext per trust source per run, shared by every probe.

Building a context loads and parses the whole CA bundle: about 75-85 ms of CPU for the system
store on a small machine (measured with bench/pathtrust.py's host, 2 shared cores), paid per
HTTPS target when each handshake builds its own. An SSL_CTX is safe to share between threads
once set up (OpenSSL creates one SSL object per connection from it), as requests' connection pools
do. A cache lives for one run, so a CA added to the system store between two runs is seen.
"""

from __future__ import annotations

import ssl
import threading
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from edgecheck.evidence import TrustSource
from edgecheck.probes.tls import context_for

if TYPE_CHECKING:  # the interception check runs only after a verification failure
    from edgecheck.probes.interception import PublicRoots


class ContextCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: Dict[Tuple[bool, Optional[str], Optional[str]], ssl.SSLContext] = {}

    def get(self, trust: TrustSource) -> ssl.SSLContext:
        key = (trust.verify, trust.cafile, trust.capath)
        with self._lock:
            ctx = self._contexts.get(key)
            if ctx is None:
                ctx = self._contexts[key] = context_for(trust)
            return ctx

    def public(self) -> Optional[PublicRoots]:
        """The public roots for the interception check (built once per process: certifi's file
        only changes with the package)."""
        from edgecheck.probes.interception import public_roots

        return public_roots()
