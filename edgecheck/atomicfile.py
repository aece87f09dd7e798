"""Write a file so that readers see the old content or the new, never a partial one."""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterable, Union

# A temp file older than this was left by a killed run (SIGKILL, power loss), not by a run in
# progress: runs have a hard deadline far below it.
STALE_TEMP_AGE_S = 15 * 60


def write_atomic(path: Union[str, Path], data: Union[str, bytes], mode: int = 0o644) -> None:
    """Write `data` to `path` so readers see the old content or the new, never a partial file."""
    write_atomic_chunks(path, (data,), mode)


def write_atomic_chunks(path: Union[str, Path], chunks: Iterable[Union[str, bytes]], mode: int = 0o644) -> None:
    """Write the chunks to a temp file in the same directory, fsync, rename: a large document is
    never held whole in memory, and readers never see it partly written.

    Temp files a killed earlier write left next to `path` are removed first. On any error the
    temp file is removed and the previous file at `path` is untouched.
    """
    path = Path(path)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # The rename is durable only once the directory entry is on disk.
    try:
        dfd = os.open(str(path.parent), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def remove_stale_temps(path: Path, max_age: float = STALE_TEMP_AGE_S) -> None:
    """Delete temp files a killed earlier write left next to `path` (never a live write's)."""
    # write_atomic names them ".<name>.<8 mkstemp chars>.tmp"; match only that exact shape.
    pattern = re.compile(r"^\." + re.escape(path.name) + r"\.[a-z0-9_]{8}\.tmp$")
    now = time.time()
    try:
        entries = list(os.scandir(str(path.parent)))
    except OSError:
        return
    for entry in entries:
        if not pattern.match(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > max_age:
                os.unlink(entry.path)
        except OSError:
            pass
