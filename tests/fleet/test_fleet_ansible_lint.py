"""The role and playbook pass ansible-lint's strictest profile (production), offline.

ansible-lint comes from PyPI into its own virtual environment (.venv-lint, reused), like
ansible-core for the site test; --offline keeps it from installing collections or roles.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_VENV = REPO / ".venv-lint"
ANSIBLE_LINT = "ansible-lint>=24.2"


def ansible_lint() -> Path:
    binary = LINT_VENV / "bin" / "ansible-lint"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(LINT_VENV)], check=True, timeout=300)
        subprocess.run([str(LINT_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        ANSIBLE_LINT], check=True, timeout=1200)
    return binary


def test_role_and_playbook_pass_ansible_lint_production_profile(tmp_path: Path) -> None:
    binary = ansible_lint()
    env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL")}
    env.update(PATH=f"{LINT_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", HOME=str(tmp_path),
               ANSIBLE_HOME=str(tmp_path / ".ansible"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), NO_COLOR="1")
    proc = subprocess.run([str(binary), "--offline", "--profile", "production", "--nocolor", "site.yml", "roles/edgecheck"],
                          cwd=REPO / "packaging" / "ansible", capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Profile 'production' was required, and it passed." in proc.stdout + proc.stderr
