"""TLS interception: a chain that verifies against the system trust store but not against the
public roots.

A TLS-inspecting proxy or appliance re-signs every site with its own CA, which an administrator
added to the host's system store. Verification then passes for the probe (and for curl), but
containerd, kubelet and the node's components each have their own idea of trust and fail. The
public roots are certifi's bundle, which requests already brings.

Cost: one extra SSLContext per run (the public roots, built once by public_roots() and reused by
every probe). No extra handshake when the verified chain is readable (CPython >= 3.10): the chain
OpenSSL built against the system store is compared with the public roots by (subject, public
key), which also matches re-issued and cross-signed public roots. On 3.9 the chain is not
readable; verify_with_public() then verifies one more handshake with the public context.

Applies only when the trust source is the system store: with --ca-bundle, REQUESTS_CA_BUNDLE or
SSL_CERT_FILE the user chose the trust, and a private CA there is intended.
"""

from __future__ import annotations

import base64
import binascii
import functools
import socket
import ssl
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from edgecheck.netloc import host_port
from edgecheck.probes.budget import Budget
from edgecheck.probes.x509 import describe_certificate
from edgecheck.records import record


# ----------------------------------------------------------------------------- DER, minimal
def _tlv(data: bytes, pos: int) -> Tuple[int, int, int]:
    """(content start, content end, element end) of the DER element at pos."""
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[start:start + n], "big")
        start += n
    return start, start + length, start + length


def subject_and_key(der: bytes) -> Optional[Tuple[bytes, bytes]]:
    """Pure: the raw DER of a certificate's subject Name and SubjectPublicKeyInfo. Two
    certificates with both equal are the same CA, whatever their serials and dates."""
    try:
        cs, _, _ = _tlv(der, 0)  # Certificate SEQUENCE
        ts, te, _ = _tlv(der, cs)  # TBSCertificate SEQUENCE
        fields: List[Tuple[int, int]] = []
        pos = ts
        while pos < te:
            _, _, end = _tlv(der, pos)
            fields.append((pos, end))
            pos = end
        if der[fields[0][0]] == 0xA0:  # [0] EXPLICIT version
            fields = fields[1:]
        # serial, signature, issuer, validity, subject, subjectPublicKeyInfo
        subject, spki = fields[4], fields[5]
        return der[subject[0]:subject[1]], der[spki[0]:spki[1]]
    except (IndexError, ValueError):
        return None


# ----------------------------------------------------------------------------- public roots
class PublicRoots:
    """The public roots: the (subject, key) set of every root in the bundle (for the chain
    comparison), read from the PEM file without building an SSLContext (parsing ~140 roots into
    an X509_STORE costs tens of ms; base64 and a DER walk cost about 2 ms). The context is built
    only for the CPython 3.9 fallback handshake."""

    def __init__(self, cafile: str) -> None:
        self.cafile = cafile
        ders = _pem_certificates(cafile)
        self.keys: FrozenSet[Tuple[bytes, bytes]] = frozenset(
            k for k in (subject_and_key(d) for d in ders) if k is not None)
        self.count = len(ders)
        self._context: Optional[ssl.SSLContext] = None

    @property
    def context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context(cafile=self.cafile)
        return self._context

    def knows(self, der: bytes) -> bool:
        key = subject_and_key(der)
        return key is not None and key in self.keys


_BEGIN, _END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"


def _pem_certificates(path: str) -> List[bytes]:
    """DER of every certificate in a PEM bundle (the text between BEGIN/END lines)."""
    with open(path, encoding="ascii", errors="replace") as fh:
        text = fh.read()
    out = []
    for block in text.split(_BEGIN)[1:]:
        body = block.split(_END, 1)[0]
        try:
            out.append(base64.b64decode("".join(body.split())))
        except (ValueError, binascii.Error):
            continue
    return out


def certifi_bundle() -> Optional[str]:
    try:
        import certifi
        return certifi.where()
    except Exception:  # noqa: BLE001 - certifi missing: no public reference, no verdict
        return None


@functools.lru_cache(maxsize=4)
def public_roots(cafile: Optional[str] = None) -> Optional[PublicRoots]:
    """Built once per bundle path per process and shared by every probe of the run."""
    path = cafile or certifi_bundle()
    if not path:
        return None
    try:
        return PublicRoots(path)
    except (OSError, ssl.SSLError):
        return None


# ----------------------------------------------------------------------------- the chain
def verified_chain(tls: ssl.SSLSocket) -> Optional[List[bytes]]:
    """DER certificates of the chain OpenSSL verified, leaf first, trust anchor last.

    Public API from CPython 3.13; the same method on the internal _sslobj since 3.10
    (bpo-18233, python/cpython#25467), returning _ssl.Certificate objects. None on 3.9.
    """
    getter = getattr(tls, "get_verified_chain", None)
    try:
        if getter is not None:
            chain = getter()
        else:
            sslobj = getattr(tls, "_sslobj", None)
            getter = getattr(sslobj, "get_verified_chain", None)
            if getter is None:
                return None
            chain = getter()
    except (AttributeError, ValueError, ssl.SSLError):
        return None
    if not chain:
        return None
    out = []
    for cert in chain:
        if isinstance(cert, (bytes, bytearray)):
            out.append(bytes(cert))
        else:
            import _ssl
            out.append(cert.public_bytes(_ssl.ENCODING_DER))
    return out


@record(frozen=True)
class InterceptionVerdict:
    intercepted: Optional[bool]  # None: could not tell (no public roots, no chain)
    method: str  # "chain" | "handshake" | "unavailable"
    anchor: str = ""  # subject of the trust anchor the system store supplied
    issuer: str = ""  # the server certificate's issuer (who re-signed it)
    public_roots: str = ""  # bundle used as the public reference
    detail: str = ""

    def evidence(self) -> Dict[str, Any]:
        return {"intercepted": self.intercepted, "method": self.method, "issuer": self.issuer,
                "trust_anchor": self.anchor, "public_roots": self.public_roots, "detail": self.detail}


def judge_chain(chain: Sequence[bytes], public: PublicRoots) -> InterceptionVerdict:
    """Pure given the roots: public when any certificate of the verified chain is (by subject and
    key) one of the public roots; else the chain ends in a CA only this host trusts."""
    leaf = describe_certificate(chain[0]) if chain else None
    anchor = describe_certificate(chain[-1]) if chain else None
    issuer = (leaf.issuer if leaf else None) or ""
    anchor_name = (anchor.subject if anchor else None) or ""
    if any(public.knows(c) for c in chain):
        return InterceptionVerdict(False, "chain", anchor_name, issuer, public.cafile,
                                   "the chain ends in a public root")
    return InterceptionVerdict(True, "chain", anchor_name, issuer, public.cafile,
                               f"the chain ends in \"{anchor_name}\", which is in this host's trust store "
                               f"but not among the public roots")


def check_chain(tls: ssl.SSLSocket, public: Optional[PublicRoots]) -> InterceptionVerdict:
    """After a handshake that verified against the system store, on the open TLS socket."""
    if public is None:
        return InterceptionVerdict(None, "unavailable", detail="no public root bundle (certifi) to compare with")
    chain = verified_chain(tls)
    if not chain:
        return InterceptionVerdict(None, "unavailable", public_roots=public.cafile,
                                   detail="this Python cannot read the verified chain; use verify_with_public()")
    return judge_chain(chain, public)


def verify_with_public(sock: socket.socket, host: str, public: PublicRoots, budget: Budget) -> InterceptionVerdict:
    """Fallback (CPython 3.9): one more handshake on a fresh connected socket, verified against the
    public roots only. Closes sock."""
    try:
        sock.settimeout(max(0.01, budget.left()))
        with public.context.wrap_socket(sock, server_hostname=host.strip("[]")) as tls:
            der = tls.getpeercert(binary_form=True) or b""
            cert = describe_certificate(der) if der else None
            return InterceptionVerdict(False, "handshake", issuer=(cert.issuer if cert else None) or "",
                                       public_roots=public.cafile,
                                       detail="the chain also verifies against the public roots")
    except ssl.SSLCertVerificationError as exc:
        return InterceptionVerdict(True, "handshake", public_roots=public.cafile,
                                   detail=f"against the public roots: {exc.verify_message or exc}")
    except (OSError, ssl.SSLError) as exc:
        return InterceptionVerdict(None, "handshake", public_roots=public.cafile,
                                   detail=f"the comparison handshake failed: {exc}")
    finally:
        sock.close()


def message(verdict: InterceptionVerdict, host: str, port: int) -> str:
    """Pure: what an intercepted chain means (status warn)."""
    who = verdict.issuer or verdict.anchor or "a CA that is not public"
    return (f"HTTPS to {host_port(host, port)} works, but its certificate is re-signed by \"{who}\": it verifies against "
            f"this host's system trust store, not against the public roots. A TLS-inspecting proxy or appliance "
            f"intercepts this traffic; containerd, kubelet and the node's components must trust that CA too, "
            f"or image pulls and the join fail.")

