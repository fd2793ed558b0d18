"""The metrics a sweep can score its images with, by name: `metrics: [edge, toy, clip_score, dino]`.

Each metric declares the columns it writes, what it needs, and where it runs:
  edge        edge precision, recall, F1 (and SSIM) against each Canny unit's control; mask
              IoU for a mask unit. Needs nothing. Per image, on the writer thread.
  toy         style_strength, colour_fidelity, shape_iou: toy model with a `toy:` control only.
  clip_score  CLIP-T: cosine similarity of the image's and the prompt's CLIP embeddings, x 100
              (prompt adherence). Needs openai/clip-vit-large-patch14 (1.7 GB) in the hub cache.
  clip_image  CLIP-I: cosine similarity of the image's and its reference's CLIP image
              embeddings. Same model.
  dino        dino_distance: 1 - cosine similarity of DINOv2 CLS embeddings from the
              reference (the LoRA effect that papers report, as LPIPS is). Needs
              facebook/dinov2-small (88 MB).
The reference of a row is the same trial at LoRA weight 0 where the sweep has weight 0 (the
base model), else at conditioning scale 0 (no control); rows without one get NaN.

Model-based metrics run batched on the pipeline's device after the sweep, over the rows that
lack them, and append their values to `metrics.jsonl` (merged by `load_results`); a crash
leaves the images and rows intact, and a re-run fills in what is missing. Their weights are
checked before the first image: a missing model is one clear error and nothing is lost.

DINO rather than LPIPS: LPIPS needs torchvision's AlexNet or VGG weights, which download from
download.pytorch.org outside the hub cache, and torchvision does not import beside this
project's CPU torch; DINOv2 loads through transformers from the same cache as every model.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CLIP_ID = "openai/clip-vit-large-patch14"
DINO_ID = "facebook/dinov2-small"
METRICS_LOG = "metrics.jsonl"


@dataclass(frozen=True)
class Metric:
    """A named metric: its columns, what it needs, and where it runs ("writer" or "device")."""
    name: str
    columns: tuple[str, ...]
    needs: str
    runs_on: str
    model: str | None = None
    download: str = ""


REGISTRY = {
    "edge": Metric("edge", ("edge_precision", "edge_recall", "edge_f1", "edge_ssim"), "a Canny or mask control",
                   "writer"),
    "toy": Metric("toy", ("style_strength", "colour_fidelity", "shape_iou"), "the toy model and a toy: control",
                  "writer"),
    "clip_score": Metric("clip_score", ("clip_score",), f"{CLIP_ID} in the hub cache", "device", CLIP_ID, "1.7 GB"),
    "clip_image": Metric("clip_image", ("clip_image",), f"{CLIP_ID} in the hub cache, and a reference trial",
                         "device", CLIP_ID, "1.7 GB"),
    "dino": Metric("dino", ("dino_distance",), f"{DINO_ID} in the hub cache, and a reference trial", "device",
                   DINO_ID, "88 MB"),
}
DEFAULT = ("edge", "toy")


def metric_names(value) -> list[str]:
    """A spec's `metrics` as names: True = the cheap defaults, False = none, or a list, checked."""
    if value is True:
        return list(DEFAULT)
    if value is False or value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"`metrics` is true, false or a list of names {sorted(REGISTRY)}, got {value!r}")
    for name in value:
        if not isinstance(name, str) or name not in REGISTRY:
            close = difflib.get_close_matches(str(name), sorted(REGISTRY), n=1)
            raise ValueError(f"unknown metric {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; metrics: {sorted(REGISTRY)}")
    return list(dict.fromkeys(value))


def hub_cache() -> Path:
    """The hub cache folder, read now (so a changed HF_HOME or HF_HUB_CACHE counts)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def check_weights(names: list[str], models: dict | None = None) -> None:
    """Raise ModelNotAvailableError before anything runs when a model-based metric's weights are not cached."""
    from huggingface_hub import snapshot_download

    from .errors import ModelNotAvailableError
    for name in names:
        metric = REGISTRY[name]
        if metric.model is None:
            continue
        model = (models or {}).get(name, metric.model)
        if Path(model).is_dir():
            continue
        try:
            snapshot_download(model, cache_dir=hub_cache(), local_files_only=True)
        except Exception:
            raise ModelNotAvailableError(
                f"metric {name!r} needs {model!r} ({metric.download}), which is not in the hub cache "
                f"{hub_cache()}. Download it on a connected machine with `huggingface-cli download {model}` "
                f"(or pass a local folder as metric_models: {{{name}: /path}}), or leave {name!r} out of `metrics`. "
                "No image was made.") from None


def model_path(name: str, models: dict | None) -> str:
    model = (models or {}).get(name, REGISTRY[name].model)
    if Path(model).is_dir():
        return model
    from huggingface_hub import snapshot_download
    return snapshot_download(model, cache_dir=hub_cache(), local_files_only=True)


def reference_paths(table: pd.DataFrame) -> pd.Series:
    """Each row's reference image: the same trial at LoRA weight 0, else at conditioning scale 0 (else NaN)."""
    from .spec import parameter_columns
    done = table[table.state == "COMPLETE"]
    for axis, skip in (("lora_weight", ("adapter", "lora_weight", "lora_blocks")), ("conditioning_scale", ())):
        if axis in done and (done[axis] == 0).any() and (done[axis] != 0).any():
            keys = [c for c in parameter_columns(table) if c not in skip and c != axis]
            key = pd.Series([json.dumps(r, default=str) for r in table[keys].to_numpy().tolist()], index=table.index)
            base = dict(zip(key[done.index][done[axis] == 0], done.image_path[done[axis] == 0]))
            return key.map(base)
    return pd.Series(np.nan, index=table.index)


def image_batches(paths: list[str], size: int = 16):
    from PIL import Image
    for i in range(0, len(paths), size):
        yield [Image.open(p).convert("RGB") for p in paths[i:i + size]]


def projected(features):
    """CLIP's projected embedding: transformers 5 returns an output whose pooler_output holds it; 4.x a tensor."""
    return features if hasattr(features, "norm") else features.pooler_output


def clip_scores(rows: pd.DataFrame, references: pd.Series, device, models: dict | None, want: set) -> dict:
    """CLIP-T (x 100) and CLIP-I per row id."""
    import torch
    from transformers import CLIPModel, CLIPProcessor
    path = model_path("clip_score" if "clip_score" in want else "clip_image", models)
    model, processor = CLIPModel.from_pretrained(path).to(device).eval(), CLIPProcessor.from_pretrained(path)

    def embed_images(paths):
        out = []
        for images in image_batches(paths):
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
            out.append(torch.nn.functional.normalize(projected(model.get_image_features(pixel_values=pixels)), dim=-1))
        return torch.cat(out) if out else torch.zeros(0)

    values = {}
    with torch.no_grad():
        images = embed_images(list(rows.image_path))
        if "clip_score" in want:
            text = processor(text=list(rows.prompt), return_tensors="pt", padding=True, truncation=True).to(device)
            texts = torch.nn.functional.normalize(projected(model.get_text_features(**text)), dim=-1)
            for row_id, score in zip(rows.index, (images * texts).sum(-1).clamp(min=0) * 100):
                values.setdefault(row_id, {})["clip_score"] = float(score)
        if "clip_image" in want:
            has = references[rows.index].notna()
            refs = embed_images(list(references[rows.index][has]))
            keep = torch.from_numpy(has.to_numpy().copy())
            for row_id, score in zip(rows.index[keep.numpy()], (images[keep] * refs).sum(-1)):
                values.setdefault(row_id, {})["clip_image"] = float(score)
    return values


def dino_distances(rows: pd.DataFrame, references: pd.Series, device, models: dict | None) -> dict:
    """1 - cosine similarity of DINOv2 CLS embeddings, image against its reference, per row id."""
    import torch
    from transformers import AutoImageProcessor, AutoModel
    path = model_path("dino", models)
    model, processor = AutoModel.from_pretrained(path).to(device).eval(), AutoImageProcessor.from_pretrained(path)

    def embed(paths):
        out = []
        for images in image_batches(paths):
            pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device)
            out.append(torch.nn.functional.normalize(model(pixel_values=pixels).last_hidden_state[:, 0], dim=-1))
        return torch.cat(out)

    has = references[rows.index].notna().to_numpy()
    if not has.any():
        return {}
    with torch.no_grad():
        mine, refs = embed(list(rows.image_path[has])), embed(list(references[rows.index][has]))
    return {row_id: {"dino_distance": float(1 - s)} for row_id, s in zip(rows.index[has], (mine * refs).sum(-1))}


def score_with_models(run_dir: Path, names: list[str], device, models: dict | None = None, trial_ids=None) -> int:
    """Fill in the model-based metrics `names` for rows that lack them; append to metrics.jsonl; return rows scored."""
    from .results import load_results
    device_metrics = [n for n in names if REGISTRY[n].runs_on == "device"]
    if not device_metrics:
        return 0
    table = load_results(run_dir, lora_effect=False)
    if trial_ids is not None:
        table = table[table.trial_id.isin(trial_ids)]
    table = table[table.state == "COMPLETE"]
    references = reference_paths(table)
    values: dict = {}
    clip = {n for n in device_metrics if n in ("clip_score", "clip_image")}
    missing = lambda column: table[column].isna() if column in table else pd.Series(True, index=table.index)  # noqa: E731
    if clip:
        todo = table[np.logical_or.reduce([missing(c) for c in clip])]
        for row_id, scores in (clip_scores(todo, references, device, models, clip) if len(todo) else {}).items():
            values.setdefault(row_id, {}).update(scores)
    if "dino" in device_metrics:
        todo = table[missing("dino_distance")]
        for row_id, scores in (dino_distances(todo, references, device, models) if len(todo) else {}).items():
            values.setdefault(row_id, {}).update(scores)
    with open(Path(run_dir) / METRICS_LOG, "a") as log:
        for row_id, scores in values.items():
            log.write(json.dumps({"trial_id": table.trial_id[row_id], **scores}) + "\n")
    return len(values)


def merge_scores(table: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """Add the columns metrics.jsonl holds (the newest value of each trial's column wins)."""
    path = Path(run_dir) / METRICS_LOG
    if not path.exists() or table.empty:
        return table
    latest: dict = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash: its scores are computed again on the next run
        latest.setdefault(record.pop("trial_id"), {}).update(record)
    scores = pd.DataFrame.from_dict(latest, orient="index")
    table = table.drop(columns=[c for c in scores if c in table])
    return table.merge(scores, left_on="trial_id", right_index=True, how="left")
