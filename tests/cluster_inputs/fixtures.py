"""Test material for kubeconfig and node discovery: a throwaway CA, kubeconfig text, node trees."""

from __future__ import annotations

import base64
import os
import subprocess
import textwrap
from typing import Dict, Optional

# Credentials that must never surface anywhere: every test checks results, reprs and messages.
TOKEN = "abcdef.0123456789abcdef-SECRET-TOKEN"
CLIENT_KEY_DATA = base64.b64encode(b"-----BEGIN EC PRIVATE KEY-----\nSECRET-KEY\n-----END EC PRIVATE KEY-----\n").decode()
PASSWORD = "hunter2-SECRET-PASSWORD"
SECRETS = (TOKEN, CLIENT_KEY_DATA, PASSWORD, "SECRET")


def make_ca(directory: str, name: str = "cluster-ca") -> str:
    """A self-signed CA certificate (openssl CLI); returns the PEM file path."""
    key, cert = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}/O=edgecheck-test",
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True)
    os.unlink(key)
    return cert


def b64(path: str) -> str:
    with open(path, "rb") as fh:
        return base64.b64encode(fh.read()).decode()


def kubeconfig(server: str, *, ca_data: Optional[str] = None, ca_file: Optional[str] = None,
               extra_cluster: str = "", current: Optional[str] = "edge", users: bool = True) -> str:
    """A kubeconfig with the current context 'edge' on cluster 'edge-cluster', plus a decoy context."""
    ca_lines = ""
    if ca_data is not None:
        ca_lines += f"    certificate-authority-data: {ca_data}\n"
    if ca_file is not None:
        ca_lines += f"    certificate-authority: {ca_file}\n"
    user_block = textwrap.dedent(f"""\
        users:
        - name: admin
          user:
            token: {TOKEN}
            client-key-data: {CLIENT_KEY_DATA}
            password: {PASSWORD}
        - name: exec-user
          user:
            exec:
              apiVersion: client.authentication.k8s.io/v1beta1
              command: /bin/echo-SECRET
              args: ["--token", "{TOKEN}"]
        """) if users else ""
    current_line = f"current-context: {current}\n" if current is not None else ""
    return (
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n"
        "- name: decoy\n  cluster:\n    server: https://198.51.100.99:6443\n"
        f"- name: edge-cluster\n  cluster:\n    server: {server}\n{ca_lines}{extra_cluster}"
        "contexts:\n"
        "- name: decoy\n  context:\n    cluster: decoy\n    user: admin\n"
        "- name: edge\n  context:\n    cluster: edge-cluster\n    user: admin\n"
        f"{current_line}{user_block}"
    )


def write(root: str, node_path: str, text: str, mode: int = 0o600) -> str:
    """Write TEXT at NODE_PATH under ROOT (a fake node file system); returns the local path."""
    local = os.path.join(root, node_path.lstrip("/"))
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with open(local, "w") as fh:
        fh.write(text)
    os.chmod(local, mode)
    return local


def no_secret_in(*texts: object) -> Dict[str, bool]:
    """{secret: found} for every secret in the given texts (reprs, messages, JSON)."""
    joined = "\n".join(str(t) for t in texts)
    return {s: s in joined for s in SECRETS if s in joined}
