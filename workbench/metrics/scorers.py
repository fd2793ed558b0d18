"""Cheap, offline image metrics: how well a generated image follows its Canny control, and how far a LoRA moves it.

Edge agreement re-extracts Canny edges from the generated image with the same
detector and thresholds as the control, then matches edge pixels with a tolerance:
a generated edge pixel counts as right (precision) if a control edge lies within
`tolerance` pixels, and a control edge pixel counts as found (recall) likewise.
F1 = 2PR / (P + R), which equals TP / (TP + (FP + FN) / 2).

`unit_scores` (the `edge` metric) and `lora_effects` (the `lora_effect` metric) are the
scorers the metric registry names; `reference_paths` picks each row's reference image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from ..store.columns import parameter_columns
from ..models.control import make_canny
from ..spec.metric_registry import AfterContext, ScoringContext


@dataclass(frozen=True)
class EdgeScores:
    precision: float
    recall: float
    f1: float


def edge_mask(image) -> np.ndarray:
    """A boolean (H, W) mask of the white pixels of an edge map (PIL or array)."""
    array = np.asarray(image)
    return (array[:, :, 0] if array.ndim == 3 else array) > 127


def dilate(mask: np.ndarray, tolerance: int) -> np.ndarray:
    """Grow a boolean mask by `tolerance` pixels in every direction (a square neighbourhood)."""
    if tolerance == 0:
        return mask
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def edge_scores(control_edges, generated_edges, tolerance: int = 1) -> EdgeScores:
    """Precision, recall and F1 between two edge maps, matching within `tolerance` pixels."""
    control, generated = edge_mask(control_edges), edge_mask(generated_edges)
    if control.shape != generated.shape:
        raise ValueError(f"edge maps differ in size: control {control.shape}, generated {generated.shape}")
    matched_generated = (generated & dilate(control, tolerance)).sum()
    matched_control = (control & dilate(generated, tolerance)).sum()
    precision = matched_generated / generated.sum() if generated.any() else 0.0
    recall = matched_control / control.sum() if control.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return EdgeScores(float(precision), float(recall), float(f1))


def control_edge_scores(control_edges: Image.Image, generated: Image.Image, low: float = 100,
                        high: float = 200, tolerance: int = 1) -> EdgeScores:
    """Re-extract Canny edges from `generated` (same thresholds) and score them against the control."""
    size = min(generated.size)
    return edge_scores(control_edges, make_canny(generated, low, high, resolution=size), tolerance)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """Mean structural similarity of two greyscale images in [0, 1] (Wang et al. 2004, Gaussian window)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = 0.01 ** 2, 0.03 ** 2  # the paper's constants for a data range of 1

    def blur(x):
        return cv2.GaussianBlur(x, (0, 0), sigma)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def image_metrics(control_edges: Image.Image, generated: Image.Image, low: float, high: float) -> dict:
    """The per-row metrics of a sweep: edge precision, recall, F1 and edge-map SSIM."""
    regenerated = make_canny(generated, low, high, resolution=min(generated.size))
    scores = edge_scores(control_edges, regenerated)
    return {"edge_precision": scores.precision, "edge_recall": scores.recall, "edge_f1": scores.f1,
            "edge_ssim": ssim(edge_mask(control_edges).astype(float), edge_mask(regenerated).astype(float))}


def pixel_distance(path_a: str, path_b: str) -> float:
    """Mean absolute difference of two image files' pixels, in [0, 1]."""
    a = np.asarray(Image.open(path_a).convert("RGB"), np.float32)
    b = np.asarray(Image.open(path_b).convert("RGB"), np.float32)
    return float(np.abs(a - b).mean() / 255)


def foreground_mask(image, threshold: float = 60.0) -> np.ndarray:
    """Pixels whose colour is far from the border's median colour: the shape on a flat background."""
    pixels = np.asarray(image.convert("RGB"), np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.linalg.norm(pixels - np.median(border, axis=0), axis=-1) > threshold


def unit_metrics(unit, control: Image.Image, generated: Image.Image, params: dict) -> dict:
    """One control unit's `edge` scores, in columns named after it: edges for Canny units, IoU for given maps.

    A Canny unit's image is scored as `image_metrics` does (`canny.edge_f1`, ...); a unit whose
    control is given as is (`preprocess: none`, a silhouette) by the IoU of the generated
    shape (`foreground_mask`) with the control's white area (`mask.mask_iou`). Other conditions
    (depth, seg, ...) are scored by their own metrics (`condition_scores.py`).
    """
    if unit.preprocess == "canny":
        scores = image_metrics(control, generated, params[unit.key("low")], params[unit.key("high")])
    elif unit.preprocess == "none":
        scores = {"mask_iou": mask_iou(edge_mask(control), foreground_mask(generated))}
    else:
        scores = {}
    return {unit.column(name): value for name, value in scores.items()}


def unit_scores(image: Image.Image, context: ScoringContext) -> dict:
    """The `edge` metric: every unit's scores (`unit_metrics`) against its control."""
    if context.controls is None:
        return {}
    scores = {}
    for unit, control in zip(context.units, context.controls):
        scores.update(unit_metrics(unit, control, image, context.params))
    return scores


def reference_paths(table: pd.DataFrame, axes=("lora_weight", "conditioning_scale")) -> pd.Series:
    """Each row's reference image: the same trial at 0 on the first of `axes` the sweep varies through 0 (else NaN).

    The default looks for LoRA weight 0 (the base model), then conditioning scale 0 (no control).
    """
    done = table[table.state == "COMPLETE"]
    lora = ("adapter", "lora_weight", "lora_blocks")
    for axis in axes:
        if axis in done and (done[axis] == 0).any() and (done[axis] != 0).any():
            skip = lora if axis == "lora_weight" else (axis,)
            keys = [c for c in parameter_columns(table) if c not in skip]
            key = pd.Series([json.dumps(r, default=str) for r in table[keys].to_numpy().tolist()], index=table.index)
            base = dict(zip(key[done.index][done[axis] == 0], done.image_path[done[axis] == 0]))
            return key.map(base)
    return pd.Series(np.nan, index=table.index)


def lora_effects(rows: pd.DataFrame, context: AfterContext, wanted: set) -> dict:
    """The `lora_effect` metric: each image's pixel distance from the same trial at LoRA weight 0, per trial id."""
    references = reference_paths(context.table, axes=("lora_weight",))[rows.index]
    return {trial: {"lora_effect": pixel_distance(path, reference)}
            for trial, path, reference in zip(rows.trial_id, rows.image_path, references) if isinstance(reference, str)}
