"""Real local peers for the probe tests: DNS, TLS/HTTP, NTP, UDP responders, and CA material.

Each server binds inside the test namespace (started via Netns.run) and runs on daemon threads.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from typing import Dict, List, Optional, Union

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Zone = Dict[str, Union[str, Dict[str, Union[str, List[str]]]]]


class DnsServer:
    """UDP DNS server with a mutable zone.

    zone[name] is "NXDOMAIN" | "SERVFAIL" | "REFUSED" | "DROP" (no answer at all), or a dict with
    "A"/"AAAA" lists and/or "CNAME" target. Names are lowercase without the final dot; "*" is the
    entry for every name not listed.
    """

    def __init__(self, address: str = "127.0.0.1", port: int = 53) -> None:
        self.zone: Zone = {}
        self.queries: List[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                wire, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                reply = self._answer(dns.message.from_wire(wire))
            except Exception:
                continue
            if reply is not None:
                self.sock.sendto(reply.to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> Optional[dns.message.Message]:
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        self.queries.append(f"{name}/{dns.rdatatype.to_text(q.rdtype)}")
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        entry = self.zone.get(name, self.zone.get("*"))  # "*": answer every other name
        if entry == "DROP":
            return None
        if entry in ("NXDOMAIN", "SERVFAIL", "REFUSED") or entry is None:
            response.set_rcode({"SERVFAIL": dns.rcode.SERVFAIL, "REFUSED": dns.rcode.REFUSED}.get(
                entry, dns.rcode.NXDOMAIN))
            return response
        owner = q.name
        while isinstance(entry, dict) and "CNAME" in entry:
            target = dns.name.from_text(str(entry["CNAME"]))
            response.answer.append(dns.rrset.from_text(owner, 60, "IN", "CNAME", target.to_text()))
            owner = target
            entry = self.zone.get(target.to_text(omit_final_dot=True).lower())
        rdtype = dns.rdatatype.to_text(q.rdtype)
        if isinstance(entry, dict) and entry.get(rdtype):
            response.answer.append(dns.rrset.from_text_list(owner, 60, "IN", rdtype, list(entry[rdtype])))
        return response

    def close(self) -> None:
        self.sock.close()


class TcpServer:
    """Listens on address:port and hands each connection to _handle on a thread of its own.
    Subclasses set their own state first, then call this __init__ (it starts serving)."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


def server_context(cert: Optional[str], key: Optional[str]) -> Optional[ssl.SSLContext]:
    """A server-side TLS context for cert/key, or None for a plain server."""
    if not cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def read_request(conn: socket.socket) -> Optional[bytes]:
    """An HTTP request's head (through the blank line), or None when the peer closes first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data


class HttpsServer(TcpServer):
    """TLS (or plain, or not-TLS-at-all) server answering any request with HTTP 204."""

    def __init__(self, address: str, port: int, cert: Optional[str] = None, key: Optional[str] = None,
                 mode: str = "tls") -> None:
        self.mode = mode  # "tls" | "plain" | "garbage" (accepts TCP, answers junk to a ClientHello)
        self.context = server_context(cert, key) if mode == "tls" else None
        self.requests: List[bytes] = []
        super().__init__(address, port)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if self.mode == "garbage":
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-not-tls\r\n")
                return
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
            data = read_request(conn)
            if data is None:
                return
            self.requests.append(data)
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


class NtpResponder:
    """A faithful minimal NTP server (RFC 5905 mode 4 replies) with a configurable clock error,
    stratum and leap indicator; used where chronyd cannot be made to misbehave on purpose."""

    NTP_DELTA = 2208988800

    def __init__(self, address: str, port: int = 123, offset: float = 0.0, stratum: int = 2, leap: int = 0) -> None:
        self.offset, self.stratum, self.leap = offset, stratum, leap
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        threading.Thread(target=self._serve, daemon=True).start()

    def _ts(self, t: float) -> bytes:
        t += self.NTP_DELTA
        return struct.pack("!II", int(t), int((t - int(t)) * 2 ** 32))

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            if len(data) < 48:
                continue
            recv = time.time() + self.offset
            version = (data[0] >> 3) & 0x7
            head = struct.pack("!BBbb", (self.leap << 6) | (version << 3) | 4, self.stratum, 6, -20)
            reply = (head + struct.pack("!II", 0, 0) + b"\x7f\x00\x00\x01" + self._ts(recv - 10)
                     + data[40:48] + self._ts(recv) + self._ts(time.time() + self.offset))
            self.sock.sendto(reply, peer)

    def close(self) -> None:
        self.sock.close()


class UdpResponder:
    """Answers every datagram (a stand-in IKE peer for unit use; strongSwan is the real one)."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.received: List[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            self.received.append(data)
            self.sock.sendto(b"\x00\x00\x00\x00" + data[4:32], peer)

    def close(self) -> None:
        self.sock.close()


def make_ca(directory: str, name: str) -> Dict[str, str]:
    """A test CA with the openssl CLI; returns {"cert", "key"} paths."""
    key, cert = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}/O=edgecheck-test",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)
    return {"cert": cert, "key": key}


def make_leaf(directory: str, ca: Dict[str, str], name: str, sans: List[str], days: int = 2) -> Dict[str, str]:
    key, csr, cert = (os.path.join(directory, f"{name}.{ext}") for ext in ("key", "csr", "crt"))
    ext = os.path.join(directory, f"{name}.ext")
    san = ",".join(("IP:" if s.replace(".", "").isdigit() or ":" in s else "DNS:") + s for s in sans)
    with open(ext, "w") as fh:
        fh.write(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", f"/CN={sans[0]}/O=edgecheck-test"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca["cert"], "-CAkey", ca["key"], "-CAcreateserial",
                    "-out", cert, "-days", str(days), "-extfile", ext], check=True, capture_output=True)
    return {"cert": cert, "key": key}
