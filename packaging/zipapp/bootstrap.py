#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""edgecheck single-file zipapp bootstrap (becomes __main__.py inside edgecheck-<arch>.pyz).

The archive carries edgecheck, its pure-Python dependencies and psutil's abi3 extension for one
CPU architecture under site/. A C extension cannot be loaded from inside a zip, so on first start
the whole site/ tree is extracted once into a cache directory this bootstrap controls, and then
imported from there; later starts only check a marker file.

Where the cache goes (first usable wins; "usable" = a real directory owned by this user and not
writable by group or others, because code in it is executed):
  1. $EDGECHECK_CACHE_DIR              explicit choice
  2. $CACHE_DIRECTORY                  systemd CacheDirectory= (edgecheck.service: /var/cache/edgecheck)
  3. $XDG_CACHE_HOME/edgecheck, ~/.cache/edgecheck
  4. <tmpdir>/edgecheck-<uid>          last resort (a system user's HOME is often unusable)
The cache can be deleted at any time; builds unused for 30 days are removed.

Only the bundled packages and the standard library are imported: site-packages, user site and
PYTHONPATH entries are dropped from sys.path, so whatever else is installed on the node cannot
shadow or break a dependency.

Kept compatible with old Python 3 syntax on purpose: on an interpreter that is too old (RHEL 8's
python3 is 3.6) it must still say so in one line instead of failing with a SyntaxError.
"""

import errno
import json
import os
import shutil
import stat
import sys
import tempfile
import time
import zipfile

MANIFEST = "edgecheck-zipapp.json"
MARKER = ".complete"
KEEP_UNUSED_DAYS = 30
EX_UNAVAILABLE = 69  # sysexits.h: this host cannot run this archive (wrong Python or architecture)
EX_CANTCREAT = 73  # sysexits.h: no usable cache directory


def _die(code, message):
    sys.stderr.write("edgecheck: %s\n" % message)
    sys.exit(code)


def _archive_path():
    loader = globals().get("__loader__")
    archive = getattr(loader, "archive", None)
    return os.path.abspath(archive or sys.argv[0])


def _safe_dir(path):
    """Create `path` (0700) if needed; True if it is ours alone. Never follows a symlink."""
    try:
        os.makedirs(path, 0o700)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return False
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    return os.access(path, os.W_OK | os.X_OK)


def cache_candidates(environ):
    out = []
    for var in ("EDGECHECK_CACHE_DIR", "CACHE_DIRECTORY"):
        value = (environ.get(var) or "").split(":")[0]
        if value:
            out.append(value)
    xdg = environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        out.append(os.path.join(xdg, "edgecheck"))
    home = environ.get("HOME")
    if home and os.path.isabs(home) and home != "/":
        out.append(os.path.join(home, ".cache", "edgecheck"))
    out.append(os.path.join(tempfile.gettempdir(), "edgecheck-%d" % os.geteuid()))
    return out


def _extract(zf, names, dest):
    """Extract the site/ tree into `dest` (a fresh private directory)."""
    for name in names:
        rel = name[len("site/"):]
        if not rel or rel.endswith("/"):
            continue
        target = os.path.join(dest, *rel.split("/"))
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        with zf.open(name) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)


def _prune(root, keep):
    """Remove other builds whose marker has not been touched for KEEP_UNUSED_DAYS."""
    limit = time.time() - KEEP_UNUSED_DAYS * 86400
    try:
        entries = os.listdir(root)
    except OSError:
        return
    for entry in entries:
        if entry == keep or not entry.startswith("build-"):
            continue
        path = os.path.join(root, entry)
        try:
            if os.stat(os.path.join(path, MARKER)).st_mtime < limit:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def ensure_extracted(archive, manifest, root):
    """Return the site directory of this build under `root`, extracting it if needed."""
    build_dir = os.path.join(root, "build-%s-%s" % (manifest["arch"], manifest["build_id"]))
    marker = os.path.join(build_dir, MARKER)
    site = os.path.join(build_dir, "site")
    try:
        st = os.stat(marker)
    except OSError:
        st = None
    if st is not None:
        if time.time() - st.st_mtime > 86400:
            try:
                os.utime(marker, None)  # "still in use": keeps _prune away from it
            except OSError:
                pass
        return site
    # Extract next to the final place and rename: a concurrent or interrupted start never sees a
    # half-extracted tree (the marker is written last, the rename is atomic).
    tmp = tempfile.mkdtemp(prefix=".extract-", dir=root)
    try:
        os.chmod(tmp, 0o755)
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.startswith("site/")]
            _extract(zf, names, os.path.join(tmp, "site"))
        with open(os.path.join(tmp, MARKER), "w") as f:
            f.write(json.dumps(manifest, sort_keys=True) + "\n")
        try:
            os.rename(tmp, build_dir)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not os.path.exists(marker):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another start won the race: use its tree
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(root, os.path.basename(build_dir))
    return site


def isolate_sys_path(site):
    """sys.path = [bundled site] + standard library only."""
    try:
        import site as site_module

        foreign = set(site_module.getsitepackages()) | {site_module.getusersitepackages()}
    except Exception:  # very old or stripped interpreters
        foreign = set()
    env_paths = set(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)
    archive = _archive_path()
    kept = []
    for entry in sys.path:
        real = os.path.abspath(entry) if entry else os.getcwd()
        if real == archive or entry in foreign or entry in env_paths or not entry:
            continue
        if os.path.basename(real.rstrip(os.sep)) in ("site-packages", "dist-packages"):
            continue
        kept.append(entry)
    sys.path[:] = [site] + kept


def _dump_imports(path):
    """Debug aid (EDGECHECK_BOOTSTRAP_DUMP=path): where every loaded module came from."""
    import atexit

    def dump():
        files = {}
        for name, module in list(sys.modules.items()):
            f = getattr(module, "__file__", None)
            if f:
                files[name] = os.path.abspath(f)
        with open(path, "w") as out:
            json.dump({"sys_path": sys.path, "modules": files}, out, indent=1, sort_keys=True)

    atexit.register(dump)


def main():
    archive = _archive_path()
    try:
        with zipfile.ZipFile(archive) as zf:
            manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
    except (OSError, KeyError, ValueError, zipfile.BadZipfile) as exc:
        _die(EX_UNAVAILABLE, "cannot read the bundle %s: %s" % (archive, exc))
    floor = tuple(manifest["requires_python"])
    if sys.version_info[:2] < floor:
        _die(
            EX_UNAVAILABLE,
            "needs Python >= %s, but %s is %s; install python3.9 or newer and run it with that "
            "interpreter (e.g. `python3.11 %s`)"
            % (".".join(map(str, floor)), sys.executable, sys.version.split()[0], archive),
        )
    import platform

    machine = platform.machine().lower()
    aliases = {"amd64": "x86_64", "arm64": "aarch64"}
    if aliases.get(machine, machine) != manifest["arch"]:
        _die(
            EX_UNAVAILABLE,
            "this bundle is built for %s, but this host is %s; use edgecheck-%s.pyz"
            % (manifest["arch"], machine, aliases.get(machine, machine)),
        )
    site = None
    tried = []
    for root in cache_candidates(os.environ):
        if not _safe_dir(root):
            tried.append(root)
            continue
        try:
            site = ensure_extracted(archive, manifest, root)
            break
        except OSError as exc:
            tried.append("%s (%s)" % (root, exc.strerror or exc))
    if site is None:
        _die(
            EX_CANTCREAT,
            "no private writable cache directory to unpack into (tried: %s); set "
            "EDGECHECK_CACHE_DIR to a directory owned by this user" % ", ".join(tried),
        )
    isolate_sys_path(site)
    dump = os.environ.get("EDGECHECK_BOOTSTRAP_DUMP")
    if dump:
        _dump_imports(dump)
    from edgecheck import cli

    sys.argv[0] = "edgecheck"
    # one-line errors, exit codes per SPEC section 5; main_entry also skips the interpreter's teardown
    entry = getattr(cli, "main_entry", None) or getattr(cli, "cli_entry", None)
    if entry is not None:
        return entry()
    return cli.main(prog_name="edgecheck")


if __name__ == "__main__":
    sys.exit(main())
