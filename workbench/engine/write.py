"""Stage 5 of a sweep, on its writer thread: each image as an atomic PNG with its infotext, scored, then its row.

Order per trial: the image first, then its row (`results.py`), so no row ever points at a missing
or half-written image; a kill between the two only redoes that trial on resume.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
from PIL import Image

from ..lora.files import a1111_lora_hash
from ..spec.metric_registry import ScoringContext, metric_names
from ..spec.sweep_spec import SweepSpec, Trial
from ..store.infotext import format_infotext, png_info
from ..store.results import COMPLETE, FAILED, ResultsLog, write_png_atomic
from ..store.run_folder import fault_point
from .scoring import writer_scores

def image_flag(pixels: np.ndarray) -> str:
    """"nan" for NaN/inf pixels (e.g. an fp16 VAE overflow), "black" for an all-dark image, else ""."""
    if not np.isfinite(pixels).all():
        return "nan"
    return "black" if pixels.max() < 0.02 else ""


def versions() -> dict:
    """Versions of the packages that shape an image, for the results table."""
    from importlib.metadata import version

    from .. import __version__
    return {**{f"{name}_version": version(name) for name in ("torch", "diffusers", "peft", "transformers")},
            "workbench_version": __version__}



def finish_writing(pending, done: int) -> list:
    """Wait for the writer's batch (`done` trials were written before it); a full disk becomes one clear error
    saying what is kept."""
    try:
        return pending.result()
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = done + getattr(err, "rows_written", 0)
            raise OSError(err.errno, f"the run folder's disk is full ({err.strerror}); the {kept} trials finished "
                          "so far are kept: free space and run the same sweep again to resume") from None
        raise


def write_batch(results: ResultsLog, run_dir: Path, spec: SweepSpec, batch: list, images: list, controls,
                error: str, started_at: str, seconds: float, context: dict, shared: list | None = None) -> list:
    """Write each image of a batch and then its row (stage 5); return the rows. Runs on the writer thread."""
    rows = []
    for trial, pixels, steps in zip(batch, images, shared or [0] * len(batch)):       # 5
        try:
            row = record_trial(run_dir, spec, trial, pixels, controls, error, started_at, seconds,
                               {**context, "shared_steps": steps})
        except OSError as err:
            err.rows_written = len(rows)
            raise
        fault_point("after_image")
        results.append(row)
        fault_point("after_row")
        rows.append(row)
    return rows


def record_trial(run_dir: Path, spec: SweepSpec, trial: Trial, pixels, controls, error: str,
                 started_at: str, seconds: float, context: dict) -> dict:
    """Write one trial's image (atomically, with infotext) and return its row, scored against each unit's control."""
    row = {"trial_id": trial.trial_id, "index": trial.index, "state": FAILED, **trial.params,
           "image_path": "", "image_sha256": "", "started_at": started_at, "seconds": round(seconds, 4),
           **context, "flag": "", "error": error}
    if pixels is None:
        return row
    row["flag"] = image_flag(pixels)
    image = Image.fromarray((np.nan_to_num(pixels).clip(0, 1) * 255).round().astype(np.uint8))
    adapter = trial.params.get("adapter")
    lora_hashes = {adapter: a1111_lora_hash(spec.resolved_adapters()[adapter])} if adapter in spec.adapters else None
    text = format_infotext(trial.params, image.width, image.height, spec.model, trial.trial_id,
                           model_hash=context.get("model_hash") or str(context.get("model_fingerprint") or "")[:10],
                           lora_hashes=lora_hashes)
    path = run_dir / "images" / f"{trial.trial_id}.png"
    row["image_sha256"] = write_png_atomic(image, path, png_info(text))
    row.update(image_path=f"images/{path.name}", width=image.width, height=image.height, state=COMPLETE)
    context = ScoringContext(spec.model, spec.resolved_units(), controls, trial.params, spec.metric_models)
    row.update(writer_scores(metric_names(spec.metrics), image, context))
    return row
