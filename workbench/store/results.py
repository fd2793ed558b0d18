"""The results of a sweep on disk, safe against crashes. No torch here.

    run_dir/
      spec.yaml            the sweep, written before the first image
      images/<id>.png      written to a temporary name, fsync'd, then renamed
      results.jsonl        one JSON row per finished or failed trial, appended and fsync'd
      metrics.jsonl        scores computed after the sweep ({trial_id, column: value}), appended

Why JSON lines and not SQLite: one `write` + `fsync` per row is all the durability a
sweep needs; a kill can only tear the last line, which is easy to detect and skip; the
file is readable with `tail`; and SQLite's WAL mode is unsafe on network filesystems,
where cluster run folders often live. Each writer process has its own log
(`results.jsonl`, `results.rank1.jsonl`, ...), and `load_results` merges them.

A row names its image relative to the folder, as a POSIX path (`images/<trial_id>.png`), so a
folder moves, and resumes from any working directory or from Windows. Reading resolves it
inside `images/` whatever a row says (rows from before stored other forms), so no row points
outside the folder.

Order of writes per trial: image first, then its row. A kill between the two leaves an
image with no row; the trial is redone on resume, so no row ever points at a missing or
half-written image, and the newest row for a trial id wins when logs are read.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .run_store import RunStore
from .safe_files import open_append, write_atomic
from .safe_text import csv_safe

LOG_PATTERN = "results*.jsonl"
METRICS_LOG = "metrics.jsonl"
COMPLETE, FAILED = "COMPLETE", "FAILED"


# Which code drew a row's image. Trial ids never change, but a fix that changes an image for the same settings
# bumps this, so a folder can say which of its rows an older version drew. Rows without the column are scheme 1.
IMAGE_SCHEME = 2  # 2: a LoRA's text-encoder part acts in sweeps (issue #36); 1: its first cell's embeddings served all


def drawn_before_fixes(row: dict) -> str:
    """Why an older version may have drawn this row's image otherwise than this one does, or ""."""
    if image_scheme(row) >= IMAGE_SCHEME or row.get("state") != COMPLETE:
        return ""
    adapter, weight = row.get("adapter"), row.get("lora_weight")
    if isinstance(adapter, str) and adapter and weight not in (0, 0.0, None):
        return f"drawn before the text-encoder fix with adapter {adapter[:40]!r}: redrawn differently if it has text-encoder layers"
    return ""


def notes_on_old_rows(table: pd.DataFrame) -> list[str]:
    """One line per reason some rows were drawn by an older version (`drawn_before_fixes`), with their count."""
    if table.empty:
        return []
    reasons = pd.Series([drawn_before_fixes(row) for row in table.to_dict("records")], dtype=object)
    return [f"{n} rows {reason.split(':')[0]}: a resumed sweep redraws them where its adapter has text-encoder layers"
            for reason, n in reasons[reasons != ""].value_counts().items()]


def log_name(rank: int = 0) -> str:
    """The log file of writer `rank`: results.jsonl for the first, results.rank<k>.jsonl after."""
    return "results.jsonl" if rank == 0 else f"results.rank{rank}.jsonl"


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_png_atomic(image, path: Path, pnginfo=None) -> str:
    """Encode `image` as PNG, write it under a temporary name, fsync, rename; return its sha256."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo)
    data = buffer.getvalue()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)  # atomic: readers see the old file or the whole new one
    fsync_dir(path.parent)
    return hashlib.sha256(data).hexdigest()


class ResultsLog:
    """An append-only JSON-lines file: every `append` is one write of one line, then fsync."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd = open_append(self.path)  # never through a link planted in a shared folder (`safe_files.py`)
        if self.path.stat().st_size and not self._ends_with_newline():
            os.write(self.fd, b"\n")  # a torn last line from a crash stays alone on its line

    def _ends_with_newline(self) -> bool:
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)  # the append descriptor cannot read; no link followed
        try:
            return os.pread(fd, 1, os.fstat(fd).st_size - 1) == b"\n"
        finally:
            os.close(fd)

    def append(self, row: dict) -> None:
        """Write `row` as one line, all of it (a short write goes on where it stopped), then fsync."""
        data = memoryview((json.dumps(row, default=str) + "\n").encode())
        while data:
            written = os.write(self.fd, data)
            if written <= 0:
                raise OSError(f"writing {self.path.name} stopped after a write of {written} bytes")
            data = data[written:]
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class LogProblem:
    """A line of a results log that could not be read."""
    path: str
    line: int
    reason: str


def read_log(path: Path, require_state: bool = True) -> tuple[list[dict], list[LogProblem]]:
    """Every row of one log, and the lines that are damaged (torn by a crash, or edited)."""
    needs = ("trial_id", "state") if require_state else ("trial_id",)
    rows, problems = [], []
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a planted link fails here, never is followed
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return [], [LogProblem(str(path), 0, "not a regular file (a FIFO or device): skipped")]
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                if not isinstance(row, dict) or any(key not in row for key in needs):
                    raise ValueError(f"not a row of this log (needs {' and '.join(needs)})")
                rows.append(row)
            except ValueError as err:
                problems.append(LogProblem(str(path), number, f"{type(err).__name__}: {err}"[:200]))
    return rows, problems


def read_rows(run_dir: str | Path) -> tuple[list[dict], list[LogProblem]]:
    """The newest row of each trial across every writer's log, and any damaged lines."""
    run_dir = Path(run_dir)
    latest, problems = {}, []
    for path in RunStore(run_dir).files(".", LOG_PATTERN):  # links and special files skipped, with a warning
        rows, bad = read_log(path)
        problems += bad
        for row in rows:
            current = latest.get(row["trial_id"])
            # A COMPLETE row is final, unless the trial was drawn again by a newer image scheme (`IMAGE_SCHEME`);
            # otherwise the newest attempt wins.
            if current is None or current["state"] != COMPLETE or redrawn(current, row):
                latest[row["trial_id"]] = row
    return list(latest.values()), problems


def image_scheme(row: dict) -> int:
    """The image scheme that drew a row: its `image_scheme`, or 1 for a row from before the column."""
    scheme = row.get("image_scheme")  # a forged row may hold anything: only a finite number counts
    return int(scheme) if isinstance(scheme, (int, float)) and not isinstance(scheme, bool) and math.isfinite(scheme) \
        else 1


def redrawn(current: dict, row: dict) -> bool:
    """Whether `row` replaces the COMPLETE `current`: drawn again, complete, by a newer image scheme."""
    return row["state"] == COMPLETE and image_scheme(row) > image_scheme(current)


def image_file(run_dir: Path, stored) -> Path | None:
    """The image a row names, always inside run_dir/images: `images/<id>.png` as rows store it, or the file name
    of an absolute or working-directory path that older rows stored; None when it names no PNG there."""
    name = str(stored or "").replace("\\", "/").rsplit("/", 1)[-1]
    if not name.endswith(".png") or name.startswith(".") or len(name) > 255:
        return None
    return Path(run_dir).absolute() / "images" / name


MAX_IMAGE_BYTES = 512 * 2**20  # a PNG of this workbench's is far smaller (an 8-bit 4096 x 4096 RGB is at most 50 MB)


def file_digest(path: Path) -> str | None:
    """sha256 of a regular file of at most MAX_IMAGE_BYTES, streamed in 1 MiB chunks without following a link;
    None for a link, a FIFO or device, a file too large, or one that cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_IMAGE_BYTES:
            return None
        digest = hashlib.sha256()
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
        return digest.hexdigest()


def verified_image(run_dir: Path, row: dict) -> Path | None:
    """A COMPLETE row's image, only if it is a regular file in run_dir/images whose bytes hash to the row's
    image_sha256.

    What a report embeds, an export uploads and a resume keeps: a row edited to name another file, a
    file swapped under a row, a link or a FIFO planted in its place is left out.
    """
    path = image_file(run_dir, row.get("image_path"))
    if row.get("state") != COMPLETE or path is None or not row.get("image_sha256"):
        return None
    return path if file_digest(path) == row["image_sha256"] else None


def finished_trial_ids(run_dir: str | Path, log=None) -> set[str]:
    """Ids of trials whose row is COMPLETE and whose image matches its row's sha256: these are skipped on resume.

    A damaged, swapped or missing image is drawn again (`log` says how many). This catches what changed
    under a row, not a forger who also writes the row.
    """
    rows, _ = read_rows(run_dir)
    complete = [row for row in rows if row["state"] == COMPLETE]
    finished = {row["trial_id"] for row in complete if verified_image(Path(run_dir), row) is not None}
    if log and len(finished) < len(complete):
        log(f"{len(complete) - len(finished)} finished trials have no image matching their row (missing, damaged or "
            "replaced): drawing them again")
    return finished


def load_results(run_dir: str | Path, lora_effect: bool = True) -> pd.DataFrame:
    """The sweep's table: one row per trial, newest attempt, sorted by trial index.

    Damaged log lines are reported with a warning and left out; intact rows are kept. The scores
    computed after the sweep (metrics.jsonl: CLIP, DINO, `lora_effect`) are merged in as columns;
    nothing is scored here. `lora_effect=False` leaves that column out.
    A folder that grew (several specs) holds every spec's rows: `growth.load_results(run_dir, spec=...)`
    (`wb.load_results`) keeps one spec's, and is the one part of the store that expands a spec.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} does not exist")
    rows, problems = read_rows(run_dir)
    for problem in problems:
        warnings.warn(f"skipped damaged line {problem.line} of {problem.path}: {problem.reason}", stacklevel=2)
    table = pd.DataFrame(rows)
    if not table.empty:
        table = merge_scores(table, run_dir)
        table["image_path"] = [str(path) if (path := image_file(run_dir, stored)) else ""
                               for stored in table.get("image_path", pd.Series("", index=table.index))]
    if table.empty:
        return table
    table = table.sort_values("index", kind="stable").reset_index(drop=True)
    if not lora_effect and "lora_effect" in table:
        table = table.drop(columns="lora_effect")
    return table


def append_scores(run_dir: Path, values: dict) -> None:
    """Append after-sweep scores, {trial_id: {column: value}}, to metrics.jsonl (one fsync'd line each)."""
    if not values:
        return
    with ResultsLog(Path(run_dir) / METRICS_LOG) as log:  # a line torn by a crash stays alone on its line
        for trial, scores in values.items():
            log.append({"trial_id": trial, **scores})


def stored_score_columns() -> set[str]:
    """The columns metrics.jsonl may add: those of the metrics scored after a sweep."""
    from ..spec.metric_registry import REGISTRY
    return {column for metric in REGISTRY.values() if metric.runs_on == "after" for column in metric.columns}


def merge_scores(table: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """Add the score columns metrics.jsonl holds (the newest value of each trial's column wins).

    Only the columns of after-sweep metrics, with numbers as values, are read: a line cannot
    overwrite a row's image, trial id or parameters.
    """
    path = Path(run_dir) / METRICS_LOG
    if not path.exists() or table.empty:
        return table
    allowed, latest = stored_score_columns(), {}
    rows, _ = read_log(path, require_state=False)
    for record in rows:
        trial = record.pop("trial_id")
        scores = {k: v for k, v in record.items() if k in allowed and (v is None or (isinstance(v, (int, float))
                                                                                    and not isinstance(v, bool)))}
        if isinstance(trial, str) and scores:
            latest.setdefault(trial, {}).update(scores)
    if not latest:
        return table
    scores = pd.DataFrame.from_dict(latest, orient="index")
    table = table.drop(columns=[c for c in scores if c in table])
    return table.merge(scores, left_on="trial_id", right_index=True, how="left")


def export_results(table: pd.DataFrame, run_dir: str | Path) -> tuple[Path, Path]:
    """Write the table as results.parquet and results.csv in `run_dir`."""
    run_dir = Path(run_dir)
    parquet, csv = run_dir / "results.parquet", run_dir / "results.csv"
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    write_atomic(parquet, buffer.getvalue())  # whole files: written beside, renamed over (`safe_files.py`)
    write_atomic(csv, csv_safe(table).to_csv(index=False))  # text that would start a formula gets a leading "'"
    return parquet, csv
