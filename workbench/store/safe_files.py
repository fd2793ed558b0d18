"""Files inside a run folder, written so that a file planted in a shared folder cannot redirect them. No torch.

Anyone who can write to a shared run folder can put a symbolic link where the workbench writes
(`.lock.rank0` -> the user's `~/.bashrc`) or a FIFO where it reads. So:
  - whole files (reports, tables, specs, search state) are written to a temporary file and renamed over
    the name: a rename replaces a link, it never writes through it;
  - append-only logs and lock files are opened with O_NOFOLLOW (O_CREAT without following) and must be
    regular files: a link or a special file there is refused with a one-line message.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class PlantedFile(ValueError):
    """A link or special file sits where the workbench writes inside a run folder."""


def refuse_planted(path: Path, what: str) -> PlantedFile:
    return PlantedFile(f"{Path(path).name!r} in run folder {str(Path(path).parent)[:120]!r} is {what}, not a file the "
                       "workbench wrote; it was left alone and nothing was written. Someone may have planted it: "
                       "remove it, or work on a copy of the folder")


def check_not_planted(path: Path) -> None:
    """A PlantedFile if a link or anything but a regular file sits at `path` (nothing there is fine)."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise refuse_planted(path, "a symbolic link" if path.is_symlink() else "not a regular file")


def open_regular(path: Path, flags: int) -> int:
    """os.open(path, flags | O_NOFOLLOW | O_CREAT) for writing; a PlantedFile for a link, FIFO, device or folder."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CREAT | os.O_NONBLOCK, 0o644)
    except OSError as err:
        if Path(path).is_symlink():
            raise refuse_planted(path, "a symbolic link") from None
        if Path(path).exists() and not Path(path).is_file():
            raise refuse_planted(path, "not a regular file") from None
        raise err
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refuse_planted(path, "not a regular file")
    os.set_blocking(fd, True)
    return fd


def open_append(path: Path) -> int:
    """A file descriptor appending to `path` (created if missing), never through a link."""
    return open_regular(path, os.O_WRONLY | os.O_APPEND)


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write a whole file: to a temporary name beside it, flushed, then renamed over `path` (a link there is replaced,
    never followed)."""
    path = Path(path)
    check_not_planted(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    return path


MAX_TEXT_BYTES = 1_000_000  # a spec or search file the workbench writes is a few kB


def read_regular(path: Path, limit: int = MAX_TEXT_BYTES, warn=None) -> bytes | None:
    """The bytes of a regular file of at most `limit` bytes, read without following a link; None (and a one-line
    `warn`) for a link, a FIFO or device, a larger file, or one that is missing."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        if warn:
            warn(f"skipped {path.name!r}: a symbolic link or unreadable, not a file the workbench wrote")
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            if warn:
                warn(f"skipped {path.name!r}: " + ("not a regular file" if not stat.S_ISREG(info.st_mode) else
                                                    f"{info.st_size:,} bytes, more than the {limit:,} it can be"))
            return None
        return f.read(limit + 1)[:limit]
