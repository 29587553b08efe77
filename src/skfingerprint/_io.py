"""Atomic file writes: a reader sees the old file or the complete new one, never a torn one.

A process killed mid-write (SIGKILL, power loss) leaves its hidden temporary file behind; the
next successful write of the same file removes it once it is clearly abandoned.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: A temporary file older than this is abandoned: no live writer (another process writing the
#: same file) leaves its file untouched that long.
STALE_TEMP_SECONDS = 600


def _read_umask() -> int:
    """The process umask (only readable by setting it), read once at import: changing it later
    would race with other threads creating files (threaded grid searches write caches)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    """A new hidden temporary file beside ``path`` (same file system, so it can be renamed or
    linked into place), removed when the block exits whatever happened in it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _make_durable(tmp: Path) -> None:
    """Give ``tmp`` the usual permissions (mkstemp creates 0600) and put it on disk, before a
    rename or link makes it visible."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it replaces ``path``.

    On any error (Ctrl-C included) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    with _temp_beside(path) as tmp:
        yield tmp
        _make_durable(tmp)
        os.replace(tmp, path)
    _remove_abandoned_temps(path)


def write_once(path: str | os.PathLike, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists: True if this call created it.

    The first of several processes wins and the others' data is dropped, never half-written
    over (a hard link of a complete temporary file, which fails where the name is taken). On a
    file system without hard links, a plain rename into a free name, which two writers racing
    to the same instant can both pass.
    """
    path = Path(path)
    with _temp_beside(path) as tmp:
        tmp.write_bytes(data)
        _make_durable(tmp)
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
        except OSError:  # no hard links here
            created = not path.exists()
            if created:
                os.replace(tmp, path)
    _remove_abandoned_temps(path)
    return created


def _remove_abandoned_temps(path: Path) -> None:
    """Delete temporary files of ``path`` left by a killed writer (older than
    :data:`STALE_TEMP_SECONDS`)."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except FileNotFoundError:  # another process removed it first
            pass
