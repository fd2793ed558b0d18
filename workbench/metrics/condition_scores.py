"""Controllability per condition, measured the way ControlNet++ (Li et al., ECCV 2024) measures it: draw the
condition again from the generated image, with the same network that drew the control, and compare the two.

  depth     depth_rmse: both maps are relative inverse depth in [0, 1]; the image's is first aligned to the
            control's by the scale and shift that fit it best (least squares), since relative depth has neither.
            0 is perfect. (ControlNet++ takes the RMSE of 8-bit maps; here they are in [0, 1].)
  seg       seg_miou: the mean, over the classes either map holds, of each class's intersection over union.
  softedge, lineart
            *_ssim: the structural similarity of the two maps (grey, in [0, 1]). 1 is perfect.
  pose      pose_pck: of the keypoints found in the control's photo, the fraction found in the image within
            `PCK_THRESHOLD` of the image's long side. 1 is perfect; NaN where the photo shows no one.
The pure comparisons come first; the scorers named by the metric registry (`*_scores(image, context)`) follow.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from ..models.conditions import classes_of, depth_map, draw_condition, pose_keypoints, segment
from ..models.control import load_image, source_image
from ..spec.conditions import estimator
from ..spec.metric_registry import ScoringContext
from .scorers import ssim

PCK_THRESHOLD = 0.05  # a keypoint counts as found within 5% of the image's long side


def aligned_rmse(control: np.ndarray, output: np.ndarray) -> float:
    """RMSE between two relative depth maps after fitting `output` to `control` by scale and shift (least squares)."""
    control, output = np.asarray(control, np.float64).ravel(), np.asarray(output, np.float64).ravel()
    if control.shape != output.shape:
        raise ValueError(f"depth maps differ in size: {control.size} and {output.size} pixels")
    design = np.stack([output, np.ones_like(output)], 1)
    (scale, shift), *_ = np.linalg.lstsq(design, control, rcond=None)
    return float(np.sqrt(np.mean((scale * output + shift - control) ** 2)))


def mean_iou(control: np.ndarray, output: np.ndarray) -> float:
    """Mean intersection over union of two class-id maps, over the classes present in either."""
    control, output = np.asarray(control), np.asarray(output)
    if control.shape != output.shape:
        raise ValueError(f"class maps differ in size: {control.shape} and {output.shape}")
    ious = [((control == c) & (output == c)).sum() / ((control == c) | (output == c)).sum()
            for c in np.union1d(np.unique(control), np.unique(output))]
    return float(np.mean(ious))


def pck(control: np.ndarray, output: np.ndarray, size: tuple[int, int], threshold: float = PCK_THRESHOLD) -> float:
    """Percentage of correct keypoints: of the control's keypoints (rows of (x, y), NaN for missing), the fraction
    the output has within `threshold` x the long side of `size`; NaN when the control has none."""
    control, output = np.asarray(control, np.float64), np.asarray(output, np.float64)
    found = ~np.isnan(control).any(1)
    if not found.any():
        return float("nan")
    distance = np.linalg.norm(control[found] - output[found], axis=1)  # NaN (missed) compares False
    return float(np.mean(distance <= threshold * max(size)))


def grey(image) -> np.ndarray:
    """An image as a grey float array in [0, 1]."""
    return np.asarray(image.convert("L") if isinstance(image, Image.Image) else image, np.float64) / 255.0


# ---- the registry's scorers: every unit of a condition, against its own control -------------------------------------

def units_of(context: ScoringContext, metric: str):
    """(unit, control) for each unit its `metric` scores; none when the batch failed before its controls."""
    if context.controls is None:
        return []
    return [(unit, control) for unit, control in zip(context.units, context.controls) if unit.metric == metric]


def scored(image: Image.Image, context: ScoringContext, metric: str, column: str, score) -> dict:
    """{<unit>.<column>: score(image at the control's size, control, unit, weights)} for each unit `metric` scores."""
    return {unit.column(column): score(image.resize(control.size), control, unit,
                                       estimator(unit.preprocess, context.models))
            for unit, control in units_of(context, metric)}


def depth_scores(image: Image.Image, context: ScoringContext) -> dict:
    """`depth`: depth_rmse per depth unit."""
    return scored(image, context, "depth", "depth_rmse",
                  lambda drawn, control, unit, model: aligned_rmse(grey(control), depth_map(drawn, model)))


def seg_scores(image: Image.Image, context: ScoringContext) -> dict:
    """`seg`: seg_miou per seg unit."""
    return scored(image, context, "seg", "seg_miou",
                  lambda drawn, control, unit, model: mean_iou(classes_of(control), segment(drawn, model)))


def redrawn_ssim(image: Image.Image, context: ScoringContext, metric: str) -> dict:
    """`<metric>_ssim` per unit: the unit's condition drawn again from the image, against its control."""
    return scored(image, context, metric, f"{metric}_ssim", lambda drawn, control, unit, model: ssim(
        grey(control), grey(draw_condition(unit.preprocess, drawn, context.models))))


def softedge_scores(image: Image.Image, context: ScoringContext) -> dict:
    """`softedge`: softedge_ssim per softedge, hed, pidi or scribble unit."""
    return redrawn_ssim(image, context, "softedge")


def lineart_scores(image: Image.Image, context: ScoringContext) -> dict:
    """`lineart`: lineart_ssim per lineart unit."""
    return redrawn_ssim(image, context, "lineart")


@lru_cache(maxsize=16)
def photo_keypoints(source: str, size: tuple[int, int], model: str) -> np.ndarray:
    """The keypoints of a unit's photo at its control's size: found once per sweep, not once per image."""
    return pose_keypoints(load_image(source_image(source, min(size))).resize(size), model)


def pose_scores(image: Image.Image, context: ScoringContext) -> dict:
    """`pose`: pose_pck per openpose unit, the keypoints of its photo against the image's."""
    return scored(image, context, "pose", "pose_pck", lambda drawn, control, unit, model: pck(
        photo_keypoints(unit.image, control.size, model), pose_keypoints(drawn, model), control.size))
