"""TLS handshake with SNI and verification against one explicit trust source.

The same trust source (a CA file or directory) feeds the raw handshake here and requests'
verify= in httpget.py, so the two can never disagree (requests alone would use certifi).
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from typing import Any, Optional, Tuple

from edgecheck.evidence import Certificate, TlsResult, TrustSource
from edgecheck.model import Reason
from edgecheck.netloc import host_port
from edgecheck.probes import tlskind
from edgecheck.probes.budget import Budget
from edgecheck.probes.x509 import describe_certificate

# Where distributions keep the system bundle when OpenSSL's compiled-in default is absent.
SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, CentOS, Alibaba Cloud Linux
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",  # SUSE
)

UNVERIFIED = TrustSource(False, origin="none")


def requests_verify(trust: TrustSource) -> Any:
    """The same trust as requests' `verify=` argument."""
    if not trust.verify:
        return False
    return trust.cafile or trust.capath or True


def context_for(trust: TrustSource) -> ssl.SSLContext:
    if not trust.verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if trust.cafile or trust.capath:
        # With an explicit location create_default_context loads only that, not the defaults.
        return ssl.create_default_context(cafile=trust.cafile, capath=trust.capath)
    return ssl.create_default_context()


def system_trust() -> TrustSource:
    paths = ssl.get_default_verify_paths()
    for cand in (paths.cafile, paths.openssl_cafile, *SYSTEM_BUNDLES):
        if cand and os.path.isfile(cand):
            return TrustSource(True, cafile=cand, origin="system")
    for cand in (paths.capath, paths.openssl_capath):
        if cand and os.path.isdir(cand):
            return TrustSource(True, capath=cand, origin="system")
    return TrustSource(True, origin="system (OpenSSL defaults)")


def handshake_open(sock: socket.socket, host: str, trust: TrustSource, budget: Budget,
                   context: Optional[ssl.SSLContext] = None) -> Tuple[TlsResult, Optional[ssl.SSLSocket]]:
    """TLS over an already connected socket (direct, or a proxy CONNECT tunnel); on success the
    open TLS socket is returned for the HTTP request (the caller closes it), else sock is closed.

    context: the run's context for this trust source (RunFacts.tls_context), built once per run;
    None builds one. An IP-literal host gets no SNI (RFC 6066) but is still verified against the
    IP SAN. A verification failure carries its kind (SPEC 7.1 tls.verify_kind, tlskind.py).
    """
    start = time.monotonic()
    out = TlsResult(ok=False, sni=host)
    tls: Optional[ssl.SSLSocket] = None
    try:
        sock.settimeout(max(0.01, budget.left()))
        tls = (context or context_for(trust)).wrap_socket(sock, server_hostname=host.strip("[]"))
        out.ok, out.version, out.verified = True, tls.version(), trust.verify
        der = tls.getpeercert(binary_form=True)
        if der:
            out.peer_certificate = describe_certificate(der)
    except ssl.SSLCertVerificationError as exc:
        kind = tlskind.classify(exc)
        out.reason, out.verify_kind, out.verify_code = Reason.TLS_VERIFY_FAILED, kind.kind, kind.code
        out.verify_error = exc.verify_message or str(exc)
        out.error = f"certificate verification failed: {out.verify_error}"
    except (socket.timeout, TimeoutError):
        out.reason, out.error, out.timed_out = Reason.TLS_HANDSHAKE_FAILED, "no TLS handshake reply in time", True
    except ssl.SSLError as exc:
        out.reason = Reason.TLS_HANDSHAKE_FAILED
        out.error = f"TLS handshake failed: {exc.reason or exc}"
    except OSError as exc:
        out.reason = Reason.TLS_HANDSHAKE_FAILED
        out.error = f"connection closed during the TLS handshake: {exc.strerror or exc}"
    out.ms = int(round((time.monotonic() - start) * 1000))
    if not out.ok:
        (tls or sock).close()
        return out, None
    return out, tls


def fetch_peer_certificate(sock: socket.socket, host: str, budget: Budget) -> Optional[Certificate]:
    """The peer's certificate fetched without verification (only to describe it). Closes sock."""
    context = context_for(UNVERIFIED)
    try:
        sock.settimeout(max(0.01, budget.left()))
        with context.wrap_socket(sock, server_hostname=host.strip("[]")) as tls:
            der = tls.getpeercert(binary_form=True)
            return describe_certificate(der) if der else None
    except (OSError, ssl.SSLError):
        return None
    finally:
        sock.close()


class ProxyTunnelError(Exception):
    """The proxy could not be used to reach the target: refused, timed out or said no."""


def open_tunnel(proxy_sock: socket.socket, host: str, port: int, authorization: Optional[str],
                budget: Budget) -> socket.socket:
    """HTTP CONNECT host:port over a connected proxy socket; returns the socket, now a tunnel."""
    target = host_port(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if authorization:
        lines.append(f"Proxy-Authorization: {authorization}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    try:
        proxy_sock.settimeout(max(0.01, budget.left()))
        proxy_sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            proxy_sock.settimeout(max(0.01, budget.left()))
            chunk = proxy_sock.recv(4096)
            if not chunk:
                raise ProxyTunnelError("the proxy closed the connection without answering CONNECT")
            head += chunk
            if len(head) > 65536:
                raise ProxyTunnelError("the proxy sent an oversized answer to CONNECT")
    except (socket.timeout, TimeoutError):
        proxy_sock.close()
        raise ProxyTunnelError("the proxy did not answer CONNECT in time") from None
    except OSError as exc:
        proxy_sock.close()
        raise ProxyTunnelError(f"the proxy connection failed: {exc.strerror or exc}") from None
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", errors="replace")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        proxy_sock.close()
        raise ProxyTunnelError(f"the proxy answered CONNECT with {status_line!r}")
    if parts[1] != "200":
        proxy_sock.close()
        raise ProxyTunnelError(f"the proxy refused CONNECT {target}: {status_line.strip()}")
    return proxy_sock
