"""The local clock: is it synchronised, and how far is it from NTP time?

The kernel's view (adjtimex/ntp_adjtime with modes=0: read-only, no privilege needed, works in
containers and without any daemon) decides "synchronised": chronyd, ntpd and systemd-timesyncd
all clear STA_UNSYNC once they discipline the clock, and the kernel sets it again by itself when
the estimated error grows past 16 s. The daemons' views (chronyc tracking, timedatectl) are
evidence. The offset comes from the engine's NTP probes (ctx.ntp_results), else from chronyd.

Offset convention (as ntplib and chrony): offset = reference time - local time; positive means
this host's clock is behind.

Thresholds (one place for the project; the same values and strict ">" as edgecheck/probes/ntp.py,
which should import them from here):
- |offset| <= CLOCK_OFFSET_WARN_S: fine. A synchronised host is within milliseconds; beyond half
  a second the clock is not being disciplined, and logs, metrics and traces across nodes misorder.
- |offset| >  CLOCK_OFFSET_WARN_S: warn / clock-offset.
- |offset| >  CLOCK_OFFSET_FAIL_S: fail / clock-offset, whatever the sync state. From here
  time-limited credentials break: Kubernetes validates tokens with 60 s of leeway, freshly signed
  certificates are not yet valid on a clock that is behind, OSS and registry request signatures
  are rejected further out (15 min); a minute is the first of those limits.
- not synchronised, offset small or unknown: warn / clock-unsynchronised (works today, drifts).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import psutil

from edgecheck.host.distro import DEBIAN, read_os_release
from edgecheck.host.decision import Decision
from edgecheck.model import CheckResult, Reason, RunContext, Status, Target

CLOCK_OFFSET_WARN_S = 0.5
CLOCK_OFFSET_FAIL_S = 60.0

DAEMON_TIMEOUT_S = 1.0  # chronyc/timedatectl answer in milliseconds when their daemon is there

# linux/timex.h
STA_UNSYNC = 0x0040
STA_NANO = 0x2000
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


@dataclass(frozen=True)
class KernelClock:
    synchronised: Optional[bool]  # None: could not read
    state: Optional[str] = None  # TIME_OK, TIME_ERROR, ...
    status_flags: Optional[int] = None
    maxerror_s: Optional[float] = None  # the daemon's bound on the clock error, grown by the kernel
    esterror_s: Optional[float] = None
    error: Optional[str] = None


def read_kernel_clock() -> KernelClock:
    """ntp_adjtime/adjtimex with modes=0: reads the kernel NTP state, never changes the clock."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError as exc:
        return KernelClock(None, error=f"libc: {exc}")
    fn = getattr(libc, "ntp_adjtime", None) or getattr(libc, "adjtimex", None)
    if fn is None:
        return KernelClock(None, error="libc has neither ntp_adjtime nor adjtimex")
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


@dataclass
class DaemonView:
    name: str  # "chronyd" | "timedatectl" (systemd-timedated's NTPSynchronized)
    synchronised: Optional[bool] = None
    offset_s: Optional[float] = None  # reference - local
    detail: Dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None


_CHRONY_SYSTEM_TIME = re.compile(r"([0-9.]+) seconds (fast|slow) of NTP time")


def parse_chrony_tracking(text: str) -> DaemonView:
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    view = DaemonView("chronyd")
    leap = fields.get("Leap status")
    if leap is None:
        view.error = "unexpected output from chronyc tracking"
        return view
    view.synchronised = leap != "Not synchronised"
    view.detail = {k: fields[k] for k in ("Reference ID", "Stratum", "Leap status", "Last offset") if k in fields}
    m = _CHRONY_SYSTEM_TIME.search(fields.get("System time", ""))
    if m:
        magnitude = float(m.group(1))
        # "slow" = local clock behind NTP time = positive offset.
        view.offset_s = magnitude if m.group(2) == "slow" else -magnitude
    return view


def parse_timedatectl_show(text: str) -> DaemonView:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    view = DaemonView("timedatectl")
    if "NTPSynchronized" not in values:
        view.error = "timedatectl show: no NTPSynchronized property"
        return view
    view.synchronised = values["NTPSynchronized"] == "yes"
    view.detail = {k: values[k] for k in ("NTP", "NTPSynchronized", "TimeUSec") if k in values}
    return view


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


def _which(name: str) -> Optional[str]:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def read_daemon_views(timeout: float) -> List[DaemonView]:
    """What the time daemons themselves say; read-only queries, nothing is started."""
    views: List[DaemonView] = []
    chronyc = _which("chronyc")
    if chronyc:
        out, err = _run([chronyc, "-n", "tracking"], timeout)
        views.append(parse_chrony_tracking(out) if out is not None else DaemonView("chronyd", error=err))
    timedatectl = _which("timedatectl")
    if timedatectl:
        out, err = _run([timedatectl, "show"], timeout)
        views.append(parse_timedatectl_show(out) if out is not None else DaemonView("timedatectl", error=err))
    return views


def running_time_daemons() -> List[str]:
    found: List[str] = []
    try:
        for p in psutil.process_iter(["name"]):
            name = p.info.get("name") or ""
            if name in _TIME_DAEMONS and name not in found:
                found.append(name)
    except psutil.Error:
        pass
    return found


@dataclass(frozen=True)
class Measurement:
    source: str
    offset_s: float
    stratum: Optional[int] = None
    delay_s: Optional[float] = None


def ntp_measurements(ntp_results: Sequence[CheckResult]) -> List[Measurement]:
    """Usable offsets from the engine's NTP probes. Unsynchronised servers (leap 3, stratum 0)
    say nothing about our clock (RFC 5905: leap 3, stratum 0 or 16)."""
    out: List[Measurement] = []
    for r in ntp_results:
        ntp = r.evidence.get("ntp") if isinstance(r.evidence, dict) else None
        if not isinstance(ntp, dict) or not isinstance(ntp.get("offset_s"), (int, float)):
            continue
        if ntp.get("ok") is False or ntp.get("leap") == 3 or ntp.get("stratum") in (0, 16):
            continue
        source = str(ntp.get("address") or r.target.get("host") or r.id)
        host = r.target.get("host")
        if host and host != source:
            source = f"{host} ({source})"
        out.append(Measurement(source, float(ntp["offset_s"]), ntp.get("stratum"), ntp.get("delay_s")))
    return out


def combined_offset(measurements: Sequence[Measurement]) -> Optional[float]:
    """Median: one wrong server (a falseticker) does not move it much."""
    if not measurements:
        return None
    return statistics.median(m.offset_s for m in measurements)


def _fmt_offset(offset_s: float) -> str:
    direction = "behind" if offset_s > 0 else "ahead"
    if abs(offset_s) < 1:
        return f"{offset_s * 1000:+.1f} ms ({direction})"
    return f"{offset_s:+.2f} s ({direction})"


def decide_clock(
    synchronised: Optional[bool],
    offset_s: Optional[float],
    offset_source: str = "",
    sync_source: str = "kernel adjtimex status",
    service: str = "chronyd",
    running: Sequence[str] = (),
    warn_s: float = CLOCK_OFFSET_WARN_S,
    fail_s: float = CLOCK_OFFSET_FAIL_S,
) -> Decision:
    """Status from the sync state and the measured offset (pure; thresholds in the module doc)."""
    offset_text = f"offset {_fmt_offset(offset_s)} against {offset_source}" if offset_s is not None else "offset not measured"
    sync_text = {True: "synchronised", False: "not synchronised", None: "synchronisation state unknown"}[synchronised]
    enable = (
        f"Keep the clock synchronised: install chrony and run `systemctl enable --now {service}` with "
        "servers ntp1.aliyun.com and cn.ntp.org.cn (seed 001) or your own NTP servers (then use "
        "--self-host-ntp); check with `chronyc tracking`."
    )
    if offset_s is not None and abs(offset_s) > fail_s:
        return Decision(
            Status.FAIL, Reason.CLOCK_OFFSET,
            f"Clock is off by {_fmt_offset(offset_s)} against {offset_source} (limit {fail_s:g} s; {sync_text}: {sync_source}): "
            "TLS, tokens and signed downloads will fail.",
            "Step the clock once with chronyd running: `chronyc makestep` (add `makestep 1 3` to chrony.conf so a "
            "boot steps large offsets). " + enable,
        )
    if synchronised is False:
        daemon = next((d for d in running if d != "ntpdate"), None)
        fix = enable
        if daemon:
            # A daemon that runs but never synchronises: its sources are unreachable or wrong.
            fix = (
                f"{daemon} is running but has not synchronised the clock: check its sources "
                "(`chronyc sources -v`, `ntpq -p` or `timedatectl timesync-status`) and that UDP 123 to them "
                "is allowed. " + enable
            )
        return Decision(
            Status.WARN, Reason.CLOCK_UNSYNCHRONISED,
            f"Clock is not synchronised ({sync_source}); {offset_text}. It will drift.",
            fix,
        )
    if synchronised is None:
        return Decision(
            Status.WARN, Reason.CLOCK_UNSYNCHRONISED,
            f"Could not tell whether the clock is synchronised; {offset_text}.",
            enable,
        )
    if offset_s is not None and abs(offset_s) > warn_s:
        return Decision(
            Status.WARN, Reason.CLOCK_OFFSET,
            f"Clock is synchronised ({sync_source}) but off by {_fmt_offset(offset_s)} against {offset_source} "
            f"(warning above {warn_s:g} s): the time source it follows may be wrong.",
            "Check the configured time sources (`chronyc sources -v`) against ntp1.aliyun.com / cn.ntp.org.cn.",
        )
    return Decision(Status.PASS, Reason.OK, f"Clock is synchronised ({sync_source}); {offset_text}.")


def check_clock(target: Target, ctx: RunContext) -> CheckResult:
    started = time.monotonic()
    kernel = read_kernel_clock()
    daemons = read_daemon_views(min(DAEMON_TIMEOUT_S, ctx.remaining()))
    measurements = ntp_measurements(ctx.ntp_results)

    synchronised, sync_source = kernel.synchronised, "kernel adjtimex status"
    if synchronised is None:  # no kernel view: the daemons' word is the best left
        for d in daemons:
            if d.synchronised is not None:
                synchronised, sync_source = d.synchronised, d.name
                break

    offset = combined_offset(measurements)
    offset_source = ", ".join(m.source for m in measurements)
    if offset is None:
        chrony = next((d for d in daemons if d.name == "chronyd" and d.offset_s is not None), None)
        if chrony is not None:
            offset, offset_source = chrony.offset_s, "chronyd's time sources"
    skipped_ntp = bool(ctx.ntp_results) and all(r.status is Status.SKIP for r in ctx.ntp_results)

    osr = read_os_release(ctx.os_release)
    service = "chrony" if osr.family == DEBIAN else "chronyd"
    running = running_time_daemons()
    d = decide_clock(synchronised, offset, offset_source, sync_source, service, running)
    message = d.message
    if offset is None and skipped_ntp:
        message += " NTP endpoint checks were skipped (--self-host-ntp)."
    elif offset is None and ctx.ntp_results:
        message += " No NTP server answered usably."

    evidence: Dict[str, Any] = {
        "kernel": {k: v for k, v in asdict(kernel).items() if v is not None},
        "daemons": [{k: v for k, v in asdict(v).items() if v not in (None, {})} for v in daemons],
        "running_time_daemons": running,
        "ntp": [asdict(m) for m in measurements],
        "offset_s": offset,
        "offset_source": offset_source or None,
        "thresholds_s": {"warn": CLOCK_OFFSET_WARN_S, "fail": CLOCK_OFFSET_FAIL_S},
    }
    disagree = [v.name for v in daemons if v.synchronised is not None and synchronised is not None and v.synchronised != synchronised]
    if disagree:
        evidence["disagreement"] = f"{', '.join(disagree)} disagree with the kernel; the kernel's view is used"
    return CheckResult.of(
        target, d.status, d.reason, message, remediation=d.remediation, evidence=evidence,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
