"""Run a function as `nobody` in a forked child (setgroups, setgid, setuid: every capability goes
with uid 0), so a test can show what an unprivileged process may and may not do. Root's
permission checks would otherwise pass anything (a file opened O_RDWR that should be O_RDONLY).

Forking, not exec'ing a new interpreter: the test's Python may live where nobody cannot read it
(e.g. under /root), and every module is already imported here.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest


def nobody() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root (tests/run runs as root)")
    return pwd.getpwnam("nobody")


@contextmanager
def world_readable_dir(prefix: str) -> Iterator[Path]:
    """A root-owned 0755 directory nobody can enter but not write (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        os.chmod(d, 0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_as_nobody(fn: Callable[[], Any]) -> Any:
    """fn() in a child that is `nobody`; returns its JSON-able result or fails with its traceback."""
    user = nobody()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        os.close(r)
        code = 0
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            payload = {"uid": os.getuid(), "result": fn()}
        except BaseException:  # report the crash to the parent instead of dying silently
            payload = {"crash": traceback.format_exc()}
            code = 1
        with os.fdopen(w, "w") as f:
            json.dump(payload, f, default=str)
        os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert "crash" not in out, out.get("crash")
    assert out["uid"] == user.pw_uid
    return out["result"]
