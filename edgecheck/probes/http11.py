"""One HTTP/1.1 request over a connection that is already open (and, for https, already verified).

The direct path's TCP connect and TLS handshake have just proven the layers below; a second
connection through requests/urllib3 would pay the connect, the handshake and the CA loading
again (issue 17: about 100 ms per HTTPS check). The probe needs only the status line: any
HTTP status proves reachability. RFC 9112 section 3 (request line, Host), section 4 (status line).
requests stays on the proxy path, where the environment's proxy rules are its job (httpget.py).
"""

from __future__ import annotations

import socket
import ssl
import time

from edgecheck.evidence import HttpResult
from edgecheck.model import Reason
from edgecheck.netloc import authority
from edgecheck.probes.budget import Budget

USER_AGENT = "edgecheck-probe"
MAX_HEAD = 65536  # a status line longer than this is not HTTP


def request_bytes(host: str, port: int, scheme: str) -> bytes:
    return (f"GET / HTTP/1.1\r\nHost: {authority(host, port, scheme)}\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Accept: */*\r\nConnection: close\r\n\r\n").encode("latin-1")


def parse_status_line(line: bytes) -> int:
    """Pure: the status code of 'HTTP/1.1 200 OK'; ValueError when it is not an HTTP status line."""
    parts = line.decode("latin-1", errors="replace").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise ValueError(f"not an HTTP response: {line[:40]!r}")
    return int(parts[1])


def read_status_line(stream: socket.socket, budget: Budget) -> bytes:
    """Bytes up to the first CRLF, each read bounded by what the budget has left."""
    data = b""
    while b"\r\n" not in data:
        left = budget.left()
        if left <= 0:
            raise socket.timeout("probe budget exhausted")
        stream.settimeout(left)
        chunk = stream.recv(4096)
        if not chunk:
            raise ConnectionResetError("the server closed the connection without an HTTP response")
        data += chunk
        if len(data) > MAX_HEAD:
            break
    return data.split(b"\r\n", 1)[0]


def get(stream: socket.socket, scheme: str, host: str, port: int, budget: Budget) -> HttpResult:
    """GET / on the open stream; reads the status line only. Does not close the stream."""
    start = time.monotonic()
    out = HttpResult(ok=False, url=f"{scheme}://{authority(host, port, scheme)}/")
    try:
        stream.settimeout(max(0.01, budget.left()))
        stream.sendall(request_bytes(host, port, scheme))
        out.status = parse_status_line(read_status_line(stream, budget))
        out.ok = True
    except (socket.timeout, TimeoutError):
        out.reason, out.error = Reason.TIMEOUT, "no HTTP response in time"
    except ssl.SSLError as exc:
        out.reason, out.error = Reason.TLS_HANDSHAKE_FAILED, f"TLS error during the request: {exc.reason or exc}"
    except ValueError as exc:
        out.reason, out.error = Reason.UNREACHABLE, str(exc)
    except OSError as exc:
        out.reason, out.error = Reason.UNREACHABLE, f"connection failed: {exc.strerror or exc}"
    out.ms = int(round((time.monotonic() - start) * 1000))
    return out
