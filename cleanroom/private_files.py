"""Files only this node's user may read: private keys, the ledger, the reveal record, the audit log.

Each is created with mode 0600 from the start (never written world-readable and chmod-ed afterwards), and
its directory, when this code creates it, with 0700. SQLite creates a database's `-wal`, `-shm` and
`-journal` files with the database file's own mode, so creating the database file 0600 first covers them.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """Create `path` (and missing parents) with mode 0700; an existing directory is left as it is."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return path


def private_file(path: str | Path) -> Path:
    """Create an empty file with mode 0600 if missing; tighten an existing one that others could read."""
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        restrict(path)
    else:
        os.close(fd)
    return path


def restrict(path: str | Path) -> None:
    """Remove group and other permissions from an existing file (no-op if it is missing)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        os.chmod(path, mode & 0o700)


def write_private(path: str | Path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write `data` to `path` atomically: a fresh 0600 temporary file (O_EXCL), fsync'd, then renamed into
    place (or, with `overwrite=False`, linked: FileExistsError if `path` exists, nothing written)."""
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
