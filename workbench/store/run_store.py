"""A run folder's one door to the disk: every file the workbench reads or writes inside a run folder goes through here.

A run folder may sit on a shared drive, where anyone who can write to it can plant a symbolic link, a FIFO or a
huge sparse file. So every path is taken relative to the folder and checked (no absolute path, no `..`, no
link in between); inputs must be regular files of bounded size, read without following a link (a link or a
special file is skipped with a one-line warning); outputs are written through a temporary file and an atomic
rename, and append-only logs and locks are opened with O_NOFOLLOW (a link or special file there is refused,
and the command stops with a one-line message).

    store = RunStore("runs/x")
    store.write("report.html", page)            store.read_text("spec.yaml")
    fd = store.append("results.jsonl")          store.files("specs", "*.yaml")

Images are opened by `results.verified_image`: a regular file in images/ whose sha256 matches its row.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .safe_files import MAX_TEXT_BYTES, PlantedFile, open_append, open_regular, read_regular, refuse_planted, \
    write_atomic


@dataclass(frozen=True)
class RunStore:
    """The files of one run folder (`root`), opened only as this module's docstring says."""
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def path(self, *parts: str) -> Path:
        """The path of `parts` inside the folder; an absolute path, `..`, or a link on the way is refused."""
        relative = PurePosixPath(*[str(p) for p in parts])
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise PlantedFile(f"{str(relative)[:120]!r} is not a name inside run folder {str(self.root)[:120]!r}")
        path = self.root.joinpath(*relative.parts)
        for parent in list(path.parents)[:len(relative.parts) - 1]:  # the folders between the root and the file
            if parent.is_symlink():
                raise refuse_planted(parent, "a symbolic link")
        return path

    # ---- reading: regular files only, bounded, never through a link ----

    def read_bytes(self, *parts: str, limit: int = MAX_TEXT_BYTES, warn=None) -> bytes | None:
        """A file's bytes; None (with a one-line warning) for a link, a FIFO, a device, a larger file; None if missing."""
        return read_regular(self.path(*parts), limit=limit, warn=warn or self.warn)

    def read_text(self, *parts: str, limit: int = MAX_TEXT_BYTES, warn=None) -> str | None:
        data = self.read_bytes(*parts, limit=limit, warn=warn)
        return None if data is None else data.decode("utf-8", "replace")

    def files(self, folder: str, pattern: str) -> list[Path]:
        """The regular files of `folder` (or the root, ".") matching `pattern`, sorted; links and special files are
        skipped with a one-line warning."""
        base = self.root if folder == "." else self.path(folder)
        if base.is_symlink() or not base.is_dir():
            return []
        kept = []
        for path in sorted(base.glob(pattern)):
            if path.is_symlink() or not path.is_file():
                self.warn(f"skipped {path.name!r}: a symbolic link or special file, not one the workbench wrote")
                continue
            kept.append(path)
        return kept

    # ---- writing: atomic whole files, append-only logs and locks without following links ----

    def write(self, *parts: str, data: bytes | str) -> Path:
        """Write a whole file atomically (temporary file, fsync, rename: a planted link is replaced, not followed)."""
        return write_atomic(self.path(*parts), data)

    def append(self, *parts: str) -> int:
        """A file descriptor appending to a log (created if missing); a link or special file is refused."""
        return open_append(self.path(*parts))

    def lock_file(self, name: str) -> int:
        """A read-write descriptor of a lock file (created if missing); a link or special file is refused."""
        return open_regular(self.path(name), os.O_RDWR)

    def create(self, *parts: str, data: str) -> bool:
        """Create a file that must not exist yet (O_EXCL, never through a link); False if another process made it."""
        try:
            fd = os.open(self.path(*parts), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return True

    @staticmethod
    def warn(message: str) -> None:
        warnings.warn(message, stacklevel=3)
