"""The conditions a ControlNet reads, one record each: how a control image is drawn, with what, and how it is scored.

A control unit's `preprocess` names a condition (`canny`, `depth`, ...). Its record says:
  drawn_by  which library and class draw the map from a picture, and the weights they load
            (hub id, files, size, licence); none for Canny and for an image given as is
  kind      what a ControlNet reads: aliases of one map (`hed` and `pidi` are soft edges drawn by two
            networks) share a kind, and the ControlNets of each family are listed per kind in
            `families/` (`wb.conditions()` shows them side by side)
  network   which network draws it (`models/conditions.network`): hed serves softedge, hed and scribble
  params    the unit axes it reads (Canny's thresholds: `<unit>.low`, `<unit>.high`)
  metric    the metric (`metric_registry`) that scores how well an image keeps the condition: the
            map drawn again from the generated image, compared with the control, as ControlNet++
            (Li et al., ECCV 2024) measures controllability
No torch here: the drawing functions (`models/conditions.py`) are named by a dotted path.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..families import TINY_WEIGHTS  # noqa: F401 (`metric_models: {depth: tiny}`: random weights, small config)
from .shorten import short

ANNOTATORS_ID = "lllyasviel/Annotators"  # the hub repo of controlnet_aux's networks (HED, PiDiNet, lineart, pose)
DEPTH_ID = "depth-anything/Depth-Anything-V2-Small-hf"
SEGMENTER_ID = "openmmlab/upernet-convnext-small"


@dataclass(frozen=True)
class Weights:
    """What a drawing network loads: a hub repo, the files read from it (empty: the whole model), size, licence."""
    model: str
    files: tuple[str, ...]
    size: str
    licence: str


@dataclass(frozen=True)
class Condition:
    """One condition a control unit can draw (see the module docstring)."""
    name: str
    kind: str
    drawn_by: str
    weights: Weights | None
    metric: str
    network: str | None = None
    params: tuple[str, ...] = ()
    notes: str = ""

    @property
    def needs_weights(self) -> bool:
        return self.weights is not None


CONDITIONS = {condition.name: condition for condition in (
    Condition("canny", "canny", "controlnet_aux CannyDetector (OpenCV)", None, "edge",
              params=("low", "high"), notes="white edges on black; scored by edge F1 against the control"),
    Condition("none", "given", "nothing: the image as given (the toy's silhouette, or a map you drew)", None, "edge",
              notes="scored by the IoU of the generated shape with the control's white area (`mask_iou`)"),
    Condition("depth", "depth", "transformers AutoModelForDepthEstimation (Depth Anything V2)",
              Weights(DEPTH_ID, (), "99 MB, 24.8M parameters", "apache-2.0"), "depth", "depth",
              notes="relative inverse depth (disparity), near = white, normalised per image, as ControlNet reads it"),
    Condition("seg", "seg", "transformers UperNetForSemanticSegmentation, ADE20K palette",
              Weights(SEGMENTER_ID, (), "about 330 MB", "mit"), "seg", "seg",
              notes="150 ADE20K classes, each painted in its palette colour (wall (120,120,120), sky (6,230,230), ...)"),
    Condition("openpose", "openpose", "controlnet_aux open_pose Body (body only: face.py imports torchvision)",
              Weights(ANNOTATORS_ID, ("body_pose_model.pth",), "209 MB", "see the repo's card"), "pose", "body",
              notes="18 body keypoints and their limbs on black"),
    Condition("lineart", "lineart", "controlnet_aux LineartDetector",
              Weights(ANNOTATORS_ID, ("sk_model.pth", "sk_model2.pth"), "17 MB + 17 MB", "see the repo's card"),
              "lineart", "lineart", notes="white lines on black"),
    Condition("softedge", "softedge", "controlnet_aux HEDdetector (ControlNetHED_Apache2)",
              Weights(ANNOTATORS_ID, ("ControlNetHED.pth",), "29 MB", "apache-2.0"), "softedge", "hed",
              notes="soft edges, grey levels kept"),
    Condition("hed", "softedge", "controlnet_aux HEDdetector (ControlNetHED_Apache2)",
              Weights(ANNOTATORS_ID, ("ControlNetHED.pth",), "29 MB", "apache-2.0"), "softedge", "hed",
              notes="the same map as softedge"),
    Condition("pidi", "softedge", "controlnet_aux PidiNetDetector",
              Weights(ANNOTATORS_ID, ("table5_pidinet.pth",), "3 MB", "see the repo's card"), "softedge", "pidi",
              notes="soft edges from PiDiNet, a smaller network than HED"),
    Condition("scribble", "scribble", "controlnet_aux HEDdetector, thinned and thresholded (scribble=True)",
              Weights(ANNOTATORS_ID, ("ControlNetHED.pth",), "29 MB", "apache-2.0"), "softedge", "hed",
              notes="HED's edges made into a binary scribble"),
)}
PREPROCESSORS = tuple(CONDITIONS)


def condition(name: str) -> Condition:
    """The record of a unit's `preprocess`; a ValueError naming the known ones for any other."""
    if name not in CONDITIONS:
        close = difflib.get_close_matches(str(name), sorted(CONDITIONS), n=1)
        raise ValueError(f"unknown condition (`preprocess`) {short(name)}"
                         + (f" (did you mean {close[0]!r}?)" if close else "") + f"; conditions: {list(CONDITIONS)}")
    return CONDITIONS[name]


def estimator(name: str, models: dict | None = None) -> str | None:
    """The weights a condition draws with: `metric_models` may name them per condition or per metric (a hub id, a
    folder, or "tiny"); else the record's hub id. None for a condition that loads nothing."""
    record = condition(name)
    if record.weights is None:
        return None
    models = models or {}
    return models.get(name, models.get(record.metric, record.weights.model))


def conditions():
    """Every condition as a table (pandas): what draws it, with which weights (id, size, licence), the unit axes it
    reads, the metric that scores it, and the ControlNets that read it in each family (`families/`)."""
    import pandas as pd
    from ..families import condition_controlnets
    rows = []
    for record in CONDITIONS.values():
        weights = record.weights
        rows.append({"condition": record.name, "kind": record.kind, "drawn_by": record.drawn_by,
                     "weights": weights.model if weights else "", "files": ", ".join(weights.files) if weights else "",
                     "size": weights.size if weights else "", "licence": weights.licence if weights else "",
                     "axes": ", ".join(record.params), "metric": record.metric,
                     **{f"controlnets_{family}": ", ".join(ids) or "-"
                        for family, ids in condition_controlnets(record.kind).items()},
                     "notes": record.notes})
    return pd.DataFrame(rows).set_index("condition")
