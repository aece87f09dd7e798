"""Certificates for the path and trust tests, made with the openssl CLI as an operator would.

`openssl ca` (not `x509 -req`) because it takes explicit -startdate/-enddate: an expired or a
not-yet-valid certificate is then a real certificate with real dates, no faketime needed.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from dataclasses import dataclass
from typing import List, Optional, Sequence

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_RSA = ["-newkey", "rsa:2048", "-nodes"]

_CA_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
organizationName = optional
"""


@dataclass(frozen=True)
class Cert:
    name: str
    cert: str  # PEM path
    key: str
    subject: str  # "/CN=.../O=..."

    def pem(self) -> str:
        with open(self.cert) as fh:
            return fh.read()


def _run(argv: Sequence[str]) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")


def _stamp(when: datetime.datetime) -> str:
    return when.astimezone(datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ")


def _san(names: Sequence[str]) -> str:
    out = []
    for n in names:
        is_ip = n.replace(".", "").isdigit() or ":" in n
        out.append(("IP:" if is_ip else "DNS:") + n)
    return ",".join(out)


class Pki:
    def __init__(self, directory: str) -> None:
        self.dir = directory

    def _path(self, name: str, ext: str) -> str:
        return os.path.join(self.dir, f"{name}.{ext}")

    def root(self, name: str, *, rsa: bool = False, key_from: Optional[Cert] = None, days: int = 30) -> Cert:
        """A self-signed CA. key_from re-issues a root for an existing key (same subject and key,
        new serial and dates), like a re-issued or cross-signed public root."""
        subject = f"/CN={name}/O=edgecheck-test"
        cert = self._path(name if key_from is None else name + "-reissued", "crt")
        args = ["openssl", "req", "-x509", "-days", str(days), "-subj", subject, "-out", cert,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-addext", "subjectKeyIdentifier=hash"]
        if key_from is not None:
            key = key_from.key
            args += ["-new", "-key", key]
        else:
            key = self._path(name, "key")
            args += [*(_RSA if rsa else _EC), "-keyout", key]
        _run(args)
        return Cert(name, cert, key, subject)

    def _ca_dir(self, issuer: Cert) -> str:
        d = os.path.join(self.dir, f"ca-{issuer.name}")
        if not os.path.isdir(d):
            os.makedirs(os.path.join(d, "newcerts"))
            open(os.path.join(d, "index.txt"), "w").close()
            with open(os.path.join(d, "serial"), "w") as fh:
                fh.write(os.urandom(8).hex().upper() + "\n")
            with open(os.path.join(d, "ca.cnf"), "w") as fh:
                fh.write(_CA_CNF.format(dir=d))
        return d

    def issue(self, issuer: Cert, name: str, *, sans: Sequence[str] = (), ca: bool = False, rsa: bool = False,
              start: Optional[datetime.datetime] = None, end: Optional[datetime.datetime] = None,
              cn: Optional[str] = None) -> Cert:
        """A certificate signed by issuer: an intermediate CA (ca=True) or a server leaf."""
        subject = f"/CN={cn or (sans[0] if sans else name)}/O=edgecheck-test"
        key, csr, cert, ext = (self._path(name, e) for e in ("key", "csr", "crt", "ext"))
        _run(["openssl", "req", "-new", *(_RSA if rsa else _EC), "-keyout", key, "-out", csr, "-subj", subject])
        lines = ["subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"]
        if ca:
            lines += ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]
        else:
            lines += ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                      "extendedKeyUsage=serverAuth"]
            if sans:
                lines.append(f"subjectAltName={_san(sans)}")
        with open(ext, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        now = datetime.datetime.now(datetime.timezone.utc)
        start = start or now - datetime.timedelta(hours=1)
        end = end or now + datetime.timedelta(days=7)
        d = self._ca_dir(issuer)
        _run(["openssl", "ca", "-batch", "-notext", "-config", os.path.join(d, "ca.cnf"),
              "-cert", issuer.cert, "-keyfile", issuer.key, "-in", csr, "-out", cert, "-extfile", ext,
              "-startdate", _stamp(start), "-enddate", _stamp(end)])
        return Cert(name, cert, key, subject)

    def self_signed_leaf(self, name: str, sans: Sequence[str]) -> Cert:
        subject = f"/CN={sans[0]}/O=edgecheck-test"
        key, cert = self._path(name, "key"), self._path(name, "crt")
        _run(["openssl", "req", "-x509", *_EC, "-keyout", key, "-out", cert, "-days", "7", "-subj", subject,
              "-addext", f"subjectAltName={_san(sans)}", "-addext", "basicConstraints=critical,CA:FALSE"])
        return Cert(name, cert, key, subject)

    def chain(self, root: Cert, depth: int, leaf_name: str, sans: Sequence[str], rsa: bool = True) -> List[Cert]:
        """root -> depth intermediates -> leaf; returns [leaf, intermediates nearest first]."""
        issuer, intermediates = root, []
        for i in range(depth):
            issuer = self.issue(issuer, f"{leaf_name}-int{i + 1}", ca=True, rsa=rsa, cn=f"{leaf_name} intermediate {i + 1}")
            intermediates.append(issuer)
        leaf = self.issue(issuer, leaf_name, sans=sans, rsa=rsa)
        return [leaf, *reversed(intermediates)]

    def bundle(self, name: str, certs: Sequence[Cert], extra_pem: str = "") -> str:
        """A PEM file with the given certificates (leaf first for a served chain)."""
        path = self._path(name, "pem")
        with open(path, "w") as fh:
            fh.write(extra_pem)
            for c in certs:
                fh.write(c.pem())
        return path
