"""A non-root run against a socket held by root: a complete result, honest about what it cannot see.

The checks run in a forked child that drops to nobody/nogroup (tests/privdrop.py).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from edgecheck.checks.clock import check_clock
from edgecheck.checks.inbound import check_inbound
from edgecheck.checks.tool import check_tool
from edgecheck.diagnosis import remediation
from edgecheck.diagnosis.scene import Scene
from edgecheck.host import sockets
from edgecheck.model import Phase
from edgecheck.runcontext import RunContext

from tests.privdrop import run_as_nobody as _run_as_nobody
from tests.host.hostfixtures import clock_target, free_port, inbound_target, tool_specs, tool_target, wait_listening

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root (CI runs as root)")


def _as_dict(result) -> dict:
    return {
        "status": str(result.status), "reason": str(result.reason), "message": result.message,
        "remediation": remediation(result, Scene()), "evidence": result.evidence.to_json(),
    }


@pytest.fixture
def root_listener():
    port = free_port("tcp")
    proc = subprocess.Popen(
        ["socat", "-u", f"TCP-LISTEN:{port},bind=0.0.0.0,reuseaddr", "/dev/null"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, "tcp")
        yield port, proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_nobody_sees_a_root_socket_but_not_its_owner(root_listener):
    port, socat_pid = root_listener

    def checks():
        return {
            "visible": sockets.can_see_socket_owners(),
            "join": _as_dict(check_inbound(inbound_target(port, "tcp", "free"), RunContext())),
            "running": _as_dict(check_inbound(inbound_target(port, "tcp", "listening"), RunContext(phase=Phase.RUNNING))),
        }

    out = _run_as_nobody(checks)
    assert out["visible"] is False
    join, running = out["join"], out["running"]
    assert (join["status"], join["reason"]) == ("fail", "port-in-use")
    sock = join["evidence"]["sockets"][0]
    assert sock["pid"] is None and sock["user"] == "root" and sock["uid"] == 0  # uid from /proc/net
    assert str(socat_pid) not in join["message"]  # no guessing
    assert "not visible without root (CAP_DAC_READ_SEARCH + CAP_SYS_PTRACE)" in join["message"]
    assert join["evidence"]["owner_note"] == (
        f"a socket holds TCP {port} but its owner is not visible without root (CAP_DAC_READ_SEARCH + CAP_SYS_PTRACE)"
    )
    assert join["evidence"]["owners_visible"] is False
    assert f"ss -ltnp 'sport = :{port}'" in join["remediation"]
    # Listening is what phase running needs: proven without root.
    assert (running["status"], running["reason"]) == ("pass", "ok")
    assert "owner_note" in running["evidence"]
    # Without CAP_NET_ADMIN the packet filter is not read: the port's own verdict stands and the
    # check says what it could not do and how to let it (SPEC 7.2).
    assert running["evidence"]["firewall"]["verdict"] == "not-evaluated"
    assert "not evaluated (needs CAP_NET_ADMIN: run as root or install the firewall-read.conf drop-in)" in running["message"]
    assert "firewall-read.conf" in running["remediation"]

    # The same socket seen as root: the owner is named.
    as_root = check_inbound(inbound_target(port, "tcp", "free"), RunContext())
    ev = as_root.evidence.to_json()
    assert ev["sockets"][0]["pid"] == socat_pid and ev["owners_visible"] is True


def test_nobody_gets_complete_tool_and_clock_results(tmp_path):
    os_release = tmp_path / "os-release"
    os_release.write_text("ID=debian\nVERSION_ID=12\n")
    os.chmod(tmp_path, 0o755)
    specs = tool_specs()
    targets = tuple(tool_target(s) for s in specs)

    def checks():
        ctx = RunContext(targets=targets, os_release=str(os_release))
        return {
            "tools": [_as_dict(check_tool(t, ctx)) for t in targets],
            "clock": _as_dict(check_clock(clock_target(), ctx)),
        }

    out = _run_as_nobody(checks)
    assert len(out["tools"]) == len(specs)
    assert all(t["status"] in ("pass", "warn") for t in out["tools"])
    # socat is installed on the CI image (in /usr/bin); iptables in /usr/sbin, found without root's PATH.
    by_name = {s.name: t for s, t in zip(specs, out["tools"])}
    assert by_name["socat"]["status"] == "pass"
    assert out["clock"]["status"] in ("pass", "warn", "fail")
    assert out["clock"]["evidence"]["kernel"].get("synchronised") in (True, False)  # adjtimex read needs no privilege
