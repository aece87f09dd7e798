"""A minimal Debian root booted under systemd-nspawn with systemd as PID 1, for packaging tests.

The host has no systemd and no D-Bus, so the container is started the bare way:
`systemd-nspawn --boot --register=no --keep-unit --private-network --volatile=overlay`, and every
command inside runs through `nsenter --target <container PID 1> --all` (systemctl talks to PID 1
over /run/systemd/private, which needs no D-Bus).

Isolation and cleanup (a failed test must leave nothing behind):
- network: --private-network: the container starts with `lo` only. A test may give it a veth to
  a namespace it created itself (see ContainerNetns); nothing ever reaches the root namespace.
- root file system: --volatile=overlay: the cached root is read-only underneath a tmpfs, so
  every boot starts from the same clean root and nothing a test does survives it.
- mounts: nspawn runs in a private mount namespace (`unshare --mount --propagation private`)
  with its own tmpfs on /run, so its helper mounts and its /run/systemd/nspawn bookkeeping
  vanish with it.
- cgroups: the host is on cgroup v1 with a named `systemd` hierarchy plus a cgroup2 one (and
  nspawn puts the container below its own cgroup: `<own>/payload`, `<own>/supervisor`). Each
  container gets its own parent cgroup in both, so concurrent sessions never share `payload`,
  and stop() removes the whole subtree.
- processes: stop() asks the container to halt (SIGTERM to nspawn = SIGRTMIN+3 to its PID 1),
  then SIGKILLs its PID 1 (which takes the whole PID namespace with it) and nspawn, by pid.

What this kernel's cgroup v1 setup does NOT enforce inside the container: MemoryMax=, TasksMax=,
IPAddressDeny= (no memory/pids/bpf controllers are delegated). Seccomp, NoNewPrivileges,
capabilities, ProtectSystem/ProtectHome, PrivateDevices and RestrictNamespaces are enforced.

References: systemd-nspawn(1) (systemd 252: --keep-unit, --register, --volatile,
--system-call-filter, environment $SYSTEMD_NSPAWN_LOCK), debootstrap(8), nsenter(1),
systemd src/nspawn/nspawn-seccomp.c (the @clock group is only allowed with CAP_SYS_TIME).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

SUITE = "bookworm"
# What the checks need inside: systemd as init, python3 >= 3.9 for /usr/bin/edgecheck, getfacl
# (acl), chronyc (the clock check queries chronyd), ip (a tool the tool check finds), dbus (so
# timedatectl answers as on a real server), deb-systemd-helper/-invoke (the maintainer scripts).
ROOTFS_PACKAGES: Tuple[str, ...] = (
    "systemd", "systemd-sysv", "dbus", "init-system-helpers", "python3", "acl", "chrony", "iproute2",
)
# Bump when build_rootfs() changes what it writes after debootstrap: invalidates cached roots.
RECIPE_REVISION = 1
CACHE_ENV = "EDGECHECK_NSPAWN_CACHE"  # a directory: keep built roots across local runs
MIRROR_ENV = "EDGECHECK_DEBIAN_MIRROR"  # override the mirror read from the host's apt sources
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

# Timers that would only add noise (and try the network) in a short-lived test container.
MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
                "e2scrub_reap.service", "fstrim.timer", "systemd-timesyncd.service")

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ("systemd-nspawn", "debootstrap", "nsenter", "unshare", "mount", "ip")


class ContainerError(RuntimeError):
    pass


def which(name: str) -> Optional[str]:
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def missing_prerequisites() -> List[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (debootstrap, systemd-nspawn and network namespaces need it)")
    packages = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "nsenter": "util-linux",
                "unshare": "util-linux", "mount": "mount", "ip": "iproute2"}
    for tool in TOOLS:
        if not which(tool):
            missing.append(f"{tool} (Debian package {packages[tool]})")
    if not DEBIAN_KEYRING.exists():
        missing.append(f"{DEBIAN_KEYRING} (Debian package debian-archive-keyring)")
    if not cgroup_hierarchies():
        missing.append("a mounted cgroup hierarchy (name=systemd or cgroup2)")
    return missing


def require(missing: Sequence[str], what: str) -> None:
    """Skip when anything is missing (tests/run and CI turn that skip into a failure)."""
    from tests.prereq import require as skip_unless_complete

    skip_unless_complete(missing, what)


# ------------------------------------------------------------------------------------------------
# The Debian mirror this machine's apt already uses


_ONE_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$")


def apt_entries(files: Mapping[str, str]) -> List[Tuple[str, List[str], List[str]]]:
    """(uri, suites, components) of every `deb` source in one-line .list and deb822 .sources text."""
    out: List[Tuple[str, List[str], List[str]]] = []
    for name, text in files.items():
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields: Dict[str, str] = {}
                key = None
                for line in stanza.splitlines():
                    if not line.strip() or line.lstrip().startswith("#"):
                        continue
                    if line[0] in " \t" and key:
                        fields[key] += " " + line.strip()
                        continue
                    key, _, value = line.partition(":")
                    key = key.strip().lower()
                    fields[key] = value.strip()
                if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    out.append((uri, fields.get("suites", "").split(), fields.get("components", "").split()))
        else:
            for line in text.splitlines():
                m = _ONE_LINE.match(line)
                if m:
                    out.append((m.group(1), [m.group(2)], m.group(3).split()))
    return out


def mirror_for_suite(files: Mapping[str, str], suite: str = SUITE) -> Optional[str]:
    """The first `deb` URI that serves `suite` itself (not -security/-updates) with `main`."""
    for uri, suites, components in apt_entries(files):
        if suite in suites and "main" in components:
            return uri.rstrip("/")
    return None


def host_apt_sources() -> Dict[str, str]:
    files: Dict[str, str] = {}
    main = Path("/etc/apt/sources.list")
    if main.is_file():
        files[str(main)] = main.read_text(errors="replace")
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        for p in sorted(d.iterdir()):
            if p.suffix in (".list", ".sources") and p.is_file():
                files[str(p)] = p.read_text(errors="replace")
    return files


def rootfs_cache(environ: Mapping[str, str]) -> Optional[Path]:
    """$EDGECHECK_NSPAWN_CACHE: where built roots are kept across runs; None: a fresh one per session."""
    value = environ.get(CACHE_ENV)
    return Path(value) if value else None


def host_debian_mirror(suite: str = SUITE) -> str:
    override = os.environ.get(MIRROR_ENV)
    if override:
        return override.rstrip("/")
    mirror = mirror_for_suite(host_apt_sources(), suite)
    if not mirror:
        raise ContainerError(f"no apt source for {suite} main in /etc/apt/sources.list{{,.d}}; set {MIRROR_ENV}")
    return mirror


# ------------------------------------------------------------------------------------------------
# The root file system (debootstrap once; cached by recipe)


@dataclass(frozen=True)
class RootfsRecipe:
    suite: str
    mirror: str
    packages: Tuple[str, ...] = ROOTFS_PACKAGES

    @property
    def key(self) -> str:
        text = json.dumps([self.suite, self.mirror, sorted(self.packages), RECIPE_REVISION, os.uname().machine])
        return f"{self.suite}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


COMPLETE_MARKER = ".edgecheck-rootfs-complete"


def build_rootfs(recipe: RootfsRecipe, dest: Path, log: Path) -> None:
    """debootstrap --variant=minbase into `dest`, then make it a quiet, offline test node."""
    argv = [which("debootstrap") or "debootstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}",
            f"--keyring={DEBIAN_KEYRING}", recipe.suite, str(dest), recipe.mirror]
    with open(log, "ab") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=1500)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise ContainerError(f"debootstrap failed (rc={proc.returncode}); log {log}:\n{tail}")
    etc = dest / "etc"
    # debootstrap copies the host's hostname and resolver: neither belongs in the test node. A
    # loopback resolver means a stray lookup never leaves the container, whatever its network.
    (etc / "hostname").write_text("edge-node\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 edge-node\n::1 localhost ip6-localhost ip6-loopback\n")
    (etc / "resolv.conf").unlink(missing_ok=True)
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    for unit in MASKED_UNITS:
        link = etc / "systemd" / "system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # apt inside the container must never try a mirror (there is no network there anyway).
    (etc / "apt" / "sources.list").write_text("")
    shutil.rmtree(dest / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (dest / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (dest / COMPLETE_MARKER).write_text(json.dumps({"suite": recipe.suite, "mirror": recipe.mirror,
                                                    "packages": list(recipe.packages)}) + "\n")


def ensure_rootfs(recipe: RootfsRecipe, parent: Path) -> Tuple[Path, bool]:
    """(root, built_now): the root for `recipe` under `parent`, built if missing.

    Built next to its final place and renamed when complete, under a lock, so concurrent
    sessions sharing a cache directory build it once and never see a half-made root.
    """
    parent.mkdir(parents=True, exist_ok=True)
    root = parent / recipe.key
    with open(parent / f".{recipe.key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / COMPLETE_MARKER).exists():
            return root, False
        shutil.rmtree(root, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{recipe.key}.", dir=parent))
        try:
            build_rootfs(recipe, tmp / "root", parent / f"{recipe.key}.debootstrap.log")
            os.replace(tmp / "root", root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return root, True


# ------------------------------------------------------------------------------------------------
# cgroups


@dataclass(frozen=True)
class Hierarchy:
    mountpoint: Path
    kind: str  # "v1-systemd" | "v2"


def cgroup_hierarchies(mountinfo: Optional[str] = None) -> List[Hierarchy]:
    """The hierarchies nspawn places a container in: the named v1 `systemd` one and cgroup2."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    out: List[Hierarchy] = []
    seen = set()
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        mountpoint = pre.split()[4]
        fstype, _source, options = (post.split() + ["", ""])[:3]
        kind = None
        if fstype == "cgroup2":
            kind = "v2"
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            kind = "v1-systemd"
        if kind and kind not in seen:
            seen.add(kind)
            out.append(Hierarchy(Path(mountpoint), kind))
    return out


def own_cgroup(kind: str, proc_cgroup: Optional[str] = None) -> str:
    if proc_cgroup is None:
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    for line in proc_cgroup.splitlines():
        num, controllers, path = line.split(":", 2)
        if kind == "v2" and num == "0" and controllers == "":
            return path
        if kind == "v1-systemd" and "name=systemd" in controllers.split(","):
            return path
    return "/"


def cgroup_pids(directory: Path) -> List[int]:
    pids: List[int] = []
    for procs in directory.rglob("cgroup.procs"):
        try:
            pids += [int(p) for p in procs.read_text().split()]
        except OSError:
            pass
    return pids


def remove_cgroup_tree(directory: Path, timeout: float = 10.0) -> None:
    """rmdir depth-first (cgroup dirs cannot be removed recursively); retry while they empty."""
    deadline = time.monotonic() + timeout
    while directory.exists():
        for pid in cgroup_pids(directory):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for sub in sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            directory.rmdir()
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise ContainerError(f"cgroup {directory} still busy: pids {cgroup_pids(directory)}")
            time.sleep(0.1)


# ------------------------------------------------------------------------------------------------
# The container


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> List[int]:
    out: List[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def _namespace_init_below(pid: int) -> Optional[int]:
    """The first descendant of `pid` that is PID 1 of its own PID namespace (the container's init)."""
    todo = list(_children(pid))
    while todo:
        child = todo.pop(0)
        try:
            nspid = re.search(r"^NSpid:\s*(.*)$", Path(f"/proc/{child}/status").read_text(), re.M)
        except OSError:
            continue
        if nspid and len(nspid.group(1).split()) > 1 and nspid.group(1).split()[-1] == "1":
            return child
        todo += _children(child)
    return None


@dataclass
class Container:
    """One booted container. Use as a context manager: stop() always runs."""

    rootfs: Path
    workdir: Path
    name: str = field(default_factory=lambda: f"ectest-{secrets.token_hex(4)}")
    binds_ro: Sequence[Tuple[str, str]] = ()
    # nspawn's own seccomp filter allows @clock only with CAP_SYS_TIME, which the container does
    # not get: without this, adjtimex(2) fails with EPERM for *every* process in the container,
    # whatever the unit says. The read-only calls are allowed back; changing the clock still
    # needs CAP_SYS_TIME, which nothing in the container has.
    extra_syscalls: Sequence[str] = ("adjtimex", "clock_adjtime")
    proc: Optional[subprocess.Popen] = None
    leader: Optional[int] = None  # the container's PID 1, as seen from the host
    cgroups: List[Path] = field(default_factory=list)
    boot_seconds: Optional[float] = None

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.console.log"

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> "Container":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        procs_files = []
        for h in cgroup_hierarchies():
            d = h.mountpoint / own_cgroup(h.kind).lstrip("/") / f"edgecheck-{self.name}"
            d.mkdir()
            self.cgroups.append(d)
            procs_files.append(str(d / "cgroup.procs"))
        nspawn = [
            which("systemd-nspawn") or "systemd-nspawn", f"--directory={self.rootfs}", f"--machine={self.name}",
            "--boot", "--register=no", "--keep-unit", "--private-network", "--volatile=overlay",
            "--console=read-only", "--link-journal=no", "--resolv-conf=off", "--timezone=off",
            f"--system-call-filter={' '.join(self.extra_syscalls)}",
        ] + [f"--bind-ro={src}:{dst}" for src, dst in self.binds_ro]
        script = ('mount -t tmpfs -o mode=0755,size=16m edgecheck-nspawn-run /run && '
                  'for f in $EC_CGROUP_PROCS; do echo $$ > "$f"; done && exec "$@"')
        argv = [which("unshare") or "unshare", "--mount", "--propagation", "private", "--",
                "/bin/sh", "-c", script, "sh", *nspawn]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "EC_CGROUP_PROCS": " ".join(procs_files),
               "SYSTEMD_LOG_COLOR": "0"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.leader is None:
            self._check_alive()
            self.leader = _namespace_init_below(self.proc.pid)
            if self.leader is None:
                self._wait(deadline, "the container's PID 1")
        private = Path(f"/proc/{self.leader}/root/run/systemd/private")
        while not private.exists():
            self._check_alive()
            self._wait(deadline, "/run/systemd/private")
        while True:
            state = self.run(["systemctl", "is-system-running"], check=False, timeout=30).stdout.strip()
            if state in ("running", "degraded"):
                break
            self._wait(deadline, f"systemd to finish booting (state {state})")
        self.boot_seconds = time.monotonic() - started

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ContainerError(f"systemd-nspawn exited (rc={self.proc.returncode}):\n{self.console_tail()}")

    def _wait(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise ContainerError(f"timed out waiting for {what}:\n{self.console_tail()}")
        time.sleep(0.05)

    def console_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 20.0) -> None:
        """Halt, then kill by pid; remove the cgroups. Idempotent; raises only if a cgroup stays busy."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)  # nspawn: SIGRTMIN+3 to the container's PID 1 (halt)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        for pid in ([self.leader] if self.leader else []) + ([proc.pid] if proc is not None else []):
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)  # PID 1 of a PID namespace: the kernel kills the rest
                except ProcessLookupError:
                    pass
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for d in reversed(self.cgroups):
            remove_cgroup_tree(d)
        self.cgroups = []
        self.proc = None

    def leftovers(self) -> List[str]:
        """What this container would have left behind (for teardown tests)."""
        found = []
        for pid in [self.leader] if self.leader else []:
            if _alive(pid):
                found.append(f"process {pid}")
        for h in cgroup_hierarchies():
            for d in h.mountpoint.rglob(f"edgecheck-{self.name}"):
                found.append(f"cgroup {d}")
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if self.name in line or str(self.rootfs) in line:
                found.append(f"mount {line}")
        if Path(f"/run/systemd/nspawn/propagate/{self.name}").exists():
            found.append(f"/run/systemd/nspawn/propagate/{self.name}")
        return found

    # ---------------------------------------------------------------- commands inside

    def argv(self, argv: Sequence[str]) -> List[str]:
        if self.leader is None:
            raise ContainerError("container not started")
        # --root --wd: the container's root and PID 1's cwd (a path given to --wd is resolved before
        # entering the mount namespace, i.e. on the host).
        return [which("nsenter") or "nsenter", f"--target={self.leader}", "--all", "--root", "--wd", "--", *argv]

    @staticmethod
    def env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        env = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "TERM": "dumb", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0",
               "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
        env.update(extra or {})
        return env

    def run(self, argv: Sequence[str], *, input: Optional[str] = None, check: bool = True, timeout: float = 120.0,
            env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(argv), input=input, capture_output=True, text=True, timeout=timeout,
                              env=self.env(env), stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise ContainerError(f"in {self.name}: {' '.join(argv)} -> rc={proc.returncode}\n"
                                 f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}")
        return proc

    def popen(self, argv: Sequence[str], env: Optional[Mapping[str, str]] = None) -> subprocess.Popen:
        return subprocess.Popen(self.argv(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env(env))

    def sh(self, script: str, *args: str, check: bool = True, input: Optional[str] = None,
           timeout: float = 120.0) -> subprocess.CompletedProcess:
        return self.run(["/bin/sh", "-euc", script, "sh", *args], check=check, input=input, timeout=timeout)

    def write(self, path: str, content: str, mode: str = "0644") -> None:
        self.sh('mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"', path, mode, input=content)

    def read(self, path: str) -> str:
        return self.run(["cat", path]).stdout

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], check=False).returncode == 0

    def systemctl(self, *args: str, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess:
        return self.run(["systemctl", "--no-pager", *args], check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> Dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> List[Dict[str, object]]:
        out = self.run(["journalctl", "--no-pager", "--output=json", *args], check=False).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

