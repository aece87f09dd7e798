"""Test certificate authorities made with the `openssl` CLI (what an operator would use).

Three CAs, so each TLS fault is a real verification failure and not a missing file:
- lab CA: signs one server certificate with a SAN for every catalog hostname (the "public" trust
  the node gets through --ca-bundle);
- cluster CA: signs the API server certificate (given with --apiserver-ca);
- rogue CA: signs a certificate with the same names, for the wrong-CA endpoint (a TLS-inspecting
  middlebox or a hijacked name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tests.lab.topology import sh

_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def make_ca(directory: Path, name: str, common_name: str) -> KeyPair:
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    sh([
        "openssl", "req", "-x509", *_CURVE, "-days", "3", "-subj", f"/CN={common_name}",
        "-keyout", str(pair.key), "-out", str(pair.cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    ])
    return pair


def make_server_cert(
    directory: Path, name: str, ca: KeyPair, dns_names: Sequence[str], ip_addresses: Sequence[str] = ()
) -> KeyPair:
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    sans = [f"DNS:{n}" for n in dns_names] + [f"IP:{a}" for a in ip_addresses]
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
        f"subjectAltName={','.join(sans)}\n"
    )
    sh(["openssl", "req", "-new", *_CURVE, "-subj", f"/CN={dns_names[0] if dns_names else name}",
        "-keyout", str(pair.key), "-out", str(csr)])
    sh(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-days", "3", "-extfile", str(ext), "-out", str(pair.cert)])
    return pair
