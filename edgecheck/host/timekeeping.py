"""Reading the local clock's state: the kernel's view and the time daemons' views.

The kernel's view (adjtimex/ntp_adjtime with modes=0: read-only, no privilege needed, works in
containers and without any daemon) decides "synchronised": chronyd, ntpd and systemd-timesyncd
all clear STA_UNSYNC once they discipline the clock, and the kernel sets it again by itself when
the estimated error grows past 16 s. The daemons' views (chronyc tracking, timedatectl) are
evidence. Nothing here changes the clock or starts a daemon.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
from typing import Any, Dict, List, Optional, Sequence, Tuple

from edgecheck.evidence import DaemonView, KernelClock
from edgecheck.host.tools import which

DAEMON_TIMEOUT_S = 1.0  # chronyc/timedatectl answer in milliseconds when their daemon is there

# linux/timex.h
STA_UNSYNC = 0x0040
TIME_ERROR = 5
_CLOCK_STATES = {0: "TIME_OK", 1: "TIME_INS", 2: "TIME_DEL", 3: "TIME_OOP", 4: "TIME_WAIT", 5: "TIME_ERROR"}

_TIME_DAEMONS = ("chronyd", "ntpd", "systemd-timesyncd", "openntpd", "ntpdate")


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex (glibc <sys/timex.h>, 64-bit and classic 32-bit ABI)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


def _adjtimex() -> Any:
    """libc's ntp_adjtime (or adjtimex), or why not. The process's own symbols first (dlopen(NULL)
    sees the libc Python runs on); ctypes.util.find_library runs ldconfig, so only as a fallback."""
    for name in (None, "libc.so.6"):
        try:
            libc = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        fn = getattr(libc, "ntp_adjtime", None) or getattr(libc, "adjtimex", None)
        if fn is not None:
            return fn
    try:
        from ctypes import util

        libc = ctypes.CDLL(util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError as exc:
        return f"libc: {exc}"
    return getattr(libc, "ntp_adjtime", None) or getattr(libc, "adjtimex", None) or \
        "libc has neither ntp_adjtime nor adjtimex"


def read_kernel_clock() -> KernelClock:
    """ntp_adjtime/adjtimex with modes=0: reads the kernel NTP state, never changes the clock."""
    fn = _adjtimex()
    if isinstance(fn, str):
        return KernelClock(None, error=fn)
    tx = _Timex()
    tx.modes = 0  # read-only: any other value would adjust the clock
    fn.argtypes = [ctypes.POINTER(_Timex)]
    fn.restype = ctypes.c_int
    rc = fn(ctypes.byref(tx))
    if rc < 0:
        err = ctypes.get_errno()
        return KernelClock(None, error=f"adjtimex: {os.strerror(err)}")
    return KernelClock(
        synchronised=not (tx.status & STA_UNSYNC) and rc != TIME_ERROR,
        state=_CLOCK_STATES.get(rc, str(rc)),
        status_flags=tx.status,
        maxerror_s=tx.maxerror / 1e6,  # microseconds whatever STA_NANO says
        esterror_s=tx.esterror / 1e6,
    )


_CHRONY_SYSTEM_TIME = re.compile(r"([0-9.]+) seconds (fast|slow) of NTP time")


def parse_chrony_tracking(text: str) -> DaemonView:
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    leap = fields.get("Leap status")
    if leap is None:
        return DaemonView("chronyd", error="unexpected output from chronyc tracking")
    offset = None
    m = _CHRONY_SYSTEM_TIME.search(fields.get("System time", ""))
    if m:
        magnitude = float(m.group(1))
        # "slow" = local clock behind NTP time = positive offset.
        offset = magnitude if m.group(2) == "slow" else -magnitude
    detail = tuple((k, fields[k]) for k in ("Reference ID", "Stratum", "Leap status", "Last offset") if k in fields)
    return DaemonView("chronyd", leap != "Not synchronised", offset, detail)


def parse_timedatectl_show(text: str) -> DaemonView:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "NTPSynchronized" not in values:
        return DaemonView("timedatectl", error="timedatectl show: no NTPSynchronized property")
    detail = tuple((k, values[k]) for k in ("NTP", "NTPSynchronized", "TimeUSec") if k in values)
    return DaemonView("timedatectl", values["NTPSynchronized"] == "yes", None, detail)


def _run(argv: Sequence[str], timeout: float) -> Tuple[Optional[str], Optional[str]]:
    if timeout <= 0:
        return None, "no time left before the run's deadline"
    try:
        proc = subprocess.run(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=timeout, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
        )
    except subprocess.TimeoutExpired:
        return None, f"{argv[0]} did not answer within {timeout:.1f} s"
    except OSError as exc:
        return None, f"{argv[0]}: {exc.strerror}"
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0:
        return None, out.strip().splitlines()[-1] if out.strip() else f"exit {proc.returncode}"
    return out, None


def read_daemon_views(timeout: float) -> List[DaemonView]:
    """What the time daemons themselves say; read-only queries, nothing is started."""
    views: List[DaemonView] = []
    chronyc = which("chronyc")
    if chronyc:
        out, err = _run([chronyc, "-n", "tracking"], timeout)
        views.append(parse_chrony_tracking(out) if out is not None else DaemonView("chronyd", error=err))
    timedatectl = which("timedatectl")
    if timedatectl:
        out, err = _run([timedatectl, "show"], timeout)
        views.append(parse_timedatectl_show(out) if out is not None else DaemonView("timedatectl", error=err))
    return views


def running_time_daemons(proc: str = "/proc") -> List[str]:
    """Time daemons running on this host, by process name (/proc/<pid>/comm: what psutil's
    process name reads, without importing psutil for it)."""
    found: List[str] = []
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(os.path.join(proc, pid, "comm"), encoding="utf-8", errors="replace") as f:
                name = f.read().strip()
        except OSError:
            continue  # gone meanwhile, or hidden
        if name in _TIME_DAEMONS and name not in found:
            found.append(name)
    return found
