"""The metrics a sweep can score its images with, by name: `metrics: [edge, toy, clip_score, dino]`. No torch here.

Each metric is a record: its name, the columns it writes, what it needs, where it runs, and
the function that scores, named by a dotted path and imported on first use (so a spec can be
checked against these names without importing any scorer):
  edge         edge precision, recall, F1 (and SSIM) against each Canny unit's control; mask
               IoU for a mask unit. Needs nothing. Per image, on the writer thread.
  toy          style_strength, colour_fidelity, shape_iou: toy model with a `toy:` control only.
  clip_score   CLIP-T: cosine similarity of the image's and the prompt's CLIP embeddings, x 100
               (prompt adherence). Needs openai/clip-vit-large-patch14 (1.7 GB) in the hub cache.
  clip_image   CLIP-I: cosine similarity of the image's and its reference's CLIP image
               embeddings. Same model.
  dino         dino_distance: 1 - cosine similarity of DINOv2 CLS embeddings from the
               reference (the LoRA effect that papers report, as LPIPS is). Needs
               facebook/dinov2-small (88 MB).
  depth, seg, softedge, lineart, pose
               controllability per condition, as ControlNet++ (Li et al. 2024) measures it: the
               unit's condition drawn again from the generated image with the same weights, against
               its control: depth_rmse (after aligning scale and shift), seg_miou, softedge_ssim,
               lineart_ssim, pose_pck. Per image, on the writer thread.
  lora_effect  the mean absolute pixel difference (0-1) of an image from the same trial at LoRA
               weight 0. Needs no model; scored after every sweep (`ALWAYS`), where a sweep has
               weight 0 beside other weights.
The reference of a row is the same trial at LoRA weight 0 where the sweep has weight 0 (the
base model), else at conditioning scale 0 (no control); rows without one get NaN.

Where a metric runs:
  writer  per image, on the writer thread, into the image's row: `score(image, context)`, with
          context a `ScoringContext`, returns {column: value}.
  after   batched after the sweep over the rows that lack its columns, on the pipeline's device
          where it loads a model: `score(rows, context, wanted)`, with context an `AfterContext`,
          returns {trial_id: {column: value}}. The values go to metrics.jsonl (merged by
          `results.load_results`); a crash leaves the images and rows intact, and a re-run fills
          in what is missing. Model weights are checked before the first image.

DINO rather than LPIPS: LPIPS needs torchvision's AlexNet or VGG weights, which download from
download.pytorch.org outside the hub cache, and torchvision does not import beside this
project's CPU torch; DINOv2 loads through transformers from the same cache as every model.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .conditions import CONDITIONS
from .shorten import short

CLIP_ID = "openai/clip-vit-large-patch14"
DINO_ID = "facebook/dinov2-small"


@dataclass(frozen=True)
class Metric:
    """A named metric: its columns, what it needs, where it runs ("writer" or "after"), and its scorer."""
    name: str
    columns: tuple[str, ...]
    needs: str
    runs_on: str
    scorer: str               # "module:function", imported on first use
    model: str | None = None  # the hub id of the model it loads (its weights are checked before a sweep)
    download: str = ""        # how large that download is, for the error message

    def score_function(self):
        """The scoring function, imported now."""
        module, _, function = self.scorer.partition(":")
        return getattr(importlib.import_module(module), function)


REGISTRY = {
    "edge": Metric("edge", ("edge_precision", "edge_recall", "edge_f1", "edge_ssim"), "a Canny or mask control",
                   "writer", "workbench.metrics.scorers:unit_scores"),
    "toy": Metric("toy", ("style_strength", "colour_fidelity", "shape_iou"), "the toy model and a toy: control",
                  "writer", "workbench.toy.scores:row_scores"),
    "clip_score": Metric("clip_score", ("clip_score",), f"{CLIP_ID} in the hub cache", "after",
                         "workbench.metrics.model_scorers:clip_scores", CLIP_ID, "1.7 GB"),
    "clip_image": Metric("clip_image", ("clip_image",), f"{CLIP_ID} in the hub cache, and a reference trial",
                         "after", "workbench.metrics.model_scorers:clip_scores", CLIP_ID, "1.7 GB"),
    "dino": Metric("dino", ("dino_distance",), f"{DINO_ID} in the hub cache, and a reference trial", "after",
                   "workbench.metrics.model_scorers:dino_distances", DINO_ID, "88 MB"),
    # Controllability per condition, as ControlNet++ measures it: the condition drawn again from the image, compared
    # with the unit's control (`metrics/condition_scores.py`), with the weights that drew the control.
    "depth": Metric("depth", ("depth_rmse",), "a depth unit", "writer", "workbench.metrics.condition_scores:depth_scores"),
    "seg": Metric("seg", ("seg_miou",), "a seg unit", "writer", "workbench.metrics.condition_scores:seg_scores"),
    "softedge": Metric("softedge", ("softedge_ssim",), "a softedge, hed, pidi or scribble unit", "writer",
                       "workbench.metrics.condition_scores:softedge_scores"),
    "lineart": Metric("lineart", ("lineart_ssim",), "a lineart unit", "writer",
                      "workbench.metrics.condition_scores:lineart_scores"),
    "pose": Metric("pose", ("pose_pck",), "an openpose unit", "writer", "workbench.metrics.condition_scores:pose_scores"),
    "lora_effect": Metric("lora_effect", ("lora_effect",), "a trial at LoRA weight 0 beside other weights", "after",
                          "workbench.metrics.scorers:lora_effects"),
}
DEFAULT = ("edge", "toy")   # what `metrics: true` (the default) asks for
ALWAYS = ("lora_effect",)   # cheap, needs no model: scored after every sweep, whatever `metrics` says


@dataclass
class ScoringContext:
    """What a writer metric knows of an image besides its pixels."""
    model: str            # the spec's model name
    units: list           # the spec's control units (units.Unit)
    controls: list | None  # each unit's control image (None when the batch failed before making them)
    params: dict          # the trial's parameters
    models: dict = field(default_factory=dict)  # the spec's `metric_models`: which weights draw depth, seg, ...


@dataclass
class AfterContext:
    """What an after-sweep metric knows: the whole table (references may be any row), where it runs."""
    table: Any            # the run folder's table (pandas), every COMPLETE row
    run_dir: Path
    device: Any
    models: dict          # metric name -> hub id or folder, from the spec's `metric_models`


def metric_names(value) -> list[str]:
    """A spec's `metrics` as names: True = the cheap defaults, False = none, or a list, checked."""
    if value is True:
        return list(DEFAULT)
    if value is False or value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"`metrics` is true, false or a list of names {sorted(REGISTRY)}, got {short(value)}")
    for name in value:
        if not isinstance(name, str) or name not in REGISTRY:
            close = difflib.get_close_matches(str(name), sorted(REGISTRY), n=1)
            raise ValueError(f"unknown metric {short(name)}" + (f" (did you mean {short(close[0])}?)" if close else "")
                             + f"; metrics: {sorted(REGISTRY)}")
    return list(dict.fromkeys(value))


def check_metric_models(models: dict) -> None:
    """A spec's `metric_models`: names of metrics that load a model, or of conditions that draw with one, each mapped
    to a hub id or a folder (a string; "tiny" for a condition's small random network)."""
    with_models = sorted({*(name for name, metric in REGISTRY.items() if metric.model),
                          *(name for name, record in CONDITIONS.items() if record.weights),
                          *(record.metric for record in CONDITIONS.values() if record.weights)})
    for name, model in models.items():
        if name not in with_models:
            raise ValueError(f"`metric_models` names {short(name)}, which loads no model; metrics that do: {with_models}")
        if not isinstance(model, str) or not model.strip() or len(model) > 1000:
            raise ValueError(f"`metric_models` {name}: give a hub id or a folder (a string), got {short(model)}")


def metrics_running(names: list[str], runs_on: str) -> list[Metric]:
    """The metrics among `names` that run on the writer or after the sweep, in the registry's order."""
    return [metric for name, metric in REGISTRY.items() if name in names and metric.runs_on == runs_on]


def writer_columns(names: list[str]) -> list[str]:
    """The columns the writer metrics among `names` fill in per image (the rest come after the sweep)."""
    return [column for metric in metrics_running(names, "writer") for column in metric.columns]


def condition_column(preprocess: str) -> str:
    """The column that says how well an image keeps a unit's condition: edge_f1 (canny), mask_iou (a map as given),
    or the first column of its condition's metric (depth_rmse, seg_miou, ...)."""
    special = {"canny": "edge_f1", "none": "mask_iou"}
    return special.get(preprocess) or REGISTRY[CONDITIONS[preprocess].metric].columns[0]
