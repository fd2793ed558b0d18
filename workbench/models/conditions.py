"""Draw a condition's map from a picture (depth, segmentation, pose, line art, soft edges, scribbles), and read the
numbers its metric compares (a depth map, class ids, keypoints). The records are in `spec/conditions.py`.

Who draws what:
  depth      transformers' Depth Anything V2 (AutoModelForDepthEstimation, what `pipeline("depth-estimation")`
             loads): relative inverse depth, near = white, scaled to [0, 1] per image, as ControlNet reads it
  seg        transformers' UperNet (ConvNeXt), each pixel's ADE20K class painted in the ADE20K palette
  openpose   controlnet_aux's body model alone: its `open_pose` package imports torchvision (face.py) in its
             `__init__`, so `body.py` and `util.py` are imported on their own. transformers' ViTPose would need a
             person detector first; OpenPose's body model finds the people itself, as the ControlNet was trained on
  lineart, softedge (hed), pidi, scribble
             controlnet_aux's LineartDetector, HEDdetector and PidiNetDetector, each module imported alone
controlnet_aux's package `__init__` imports every detector (timm, torchvision, scikit-image), so no module here runs
it. Its detectors' own `from_pretrained` call `torch.load`; here the weights are read with `weights_only=True`.
Weights come from the hub cache only: a missing file is one error naming the repo, the file, its size and the
download command, raised before the first image (`check_condition_weights`). `"tiny"` instead of a hub id builds
each network from a small config with random weights (seed 0): the tests' and the tiny models' estimators.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ModelNotAvailableError, download_command
from ..families.hubcache import hub_cache
from ..spec.conditions import TINY_WEIGHTS, condition, estimator

DETECT_MIN = 64  # controlnet_aux's detectors work on multiples of 64 pixels


# ---- importing controlnet_aux one module at a time ------------------------------------------------------------------

def aux_module(name: str):
    """`controlnet_aux.<name>`, imported without running the `__init__` of the package (or of `open_pose`)."""
    if "controlnet_aux" in sys.modules and hasattr(sys.modules["controlnet_aux"], "__file__"):
        return importlib.import_module(f"controlnet_aux.{name}")  # the real package is already imported
    spec = importlib.util.find_spec("controlnet_aux")
    if spec is None:
        raise ImportError("controlnet_aux is not installed: run `pip install --no-deps controlnet_aux` "
                          "(see the README for why --no-deps)")
    shells = {"controlnet_aux": list(spec.submodule_search_locations)}
    if "." in name:  # open_pose.body: its package's __init__ imports face.py, hence torchvision
        parent = name.rsplit(".", 1)[0]
        shells[f"controlnet_aux.{parent}"] = [str(Path(shells["controlnet_aux"][0]) / parent.replace(".", "/"))]
    saved = {key: sys.modules.get(key) for key in shells}
    for key, path in shells.items():
        shell = types.ModuleType(key)  # an empty package object, so relative imports resolve
        shell.__path__ = path
        sys.modules[key] = shell
    try:
        with warnings.catch_warnings():  # open_pose/body.py imports from scipy.ndimage.filters, deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module(f"controlnet_aux.{name}")
    except ImportError as err:
        raise ImportError(f"controlnet_aux.{name} needs {err.name!r}: install the `aux` extra "
                          "(`pip install 'controlnet-lora-workbench[aux]'`, which adds einops)") from None
    finally:
        for key, module in saved.items():  # a later `import controlnet_aux` runs the real one
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


# ---- weights ---------------------------------------------------------------------------------------------------------

def missing_weights(name: str, model: str, file: str | None = None) -> ModelNotAvailableError:
    record = condition(name)
    what = f"{file} of {model!r}" if file else repr(model)
    return ModelNotAvailableError(
        f"condition {name!r} draws with {what} ({record.weights.size}), which is not in the hub cache {hub_cache()}. "
        f"Download it on a connected machine with {download_command(model)}, or give a folder as "
        f"metric_models: {{{name}: /path}}. No image was made.")


def weight_file(name: str, model: str, file: str) -> str:
    """A controlnet_aux network's file: from a folder, or from the hub cache (never downloaded here)."""
    if Path(model).is_dir():
        path = Path(model) / file
        if not path.is_file():
            raise missing_weights(name, model, file)
        return str(path)
    from huggingface_hub import hf_hub_download
    try:
        return hf_hub_download(model, file, cache_dir=hub_cache(), local_files_only=True)
    except Exception:
        raise missing_weights(name, model, file) from None


def check_condition_weights(name: str, models: dict | None = None) -> None:
    """Raise ModelNotAvailableError (before any image) when a condition's weights are neither a folder nor cached."""
    record, model = condition(name), estimator(name, models)
    if model is None or model == TINY_WEIGHTS:
        return
    if record.weights.files:
        for file in record.weights.files:
            weight_file(name, model, file)
    elif not Path(model).is_dir():
        from huggingface_hub import snapshot_download
        try:
            snapshot_download(model, cache_dir=hub_cache(), local_files_only=True)
        except Exception:
            raise missing_weights(name, model) from None


def load_state(name: str, model: str, file: str) -> dict:
    import torch
    return torch.load(weight_file(name, model, file), map_location="cpu", weights_only=True)


def seeded(build):
    """`build()` with torch's generator at seed 0, so a "tiny" network's random weights are the same every time."""
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build().eval()


# ---- the networks, loaded once per (condition, weights) ---------------------------------------------------------------

@lru_cache(maxsize=8)
def network(name: str, model: str):
    """The object that draws condition `name` with `model` (a hub id, a folder or "tiny"); loaded once."""
    kind = condition(name).network  # the record says which network: hed serves softedge, hed and scribble
    tiny = model == TINY_WEIGHTS
    if kind == "depth":
        return depth_network(name, model, tiny)
    if kind == "seg":
        return seg_network(name, model, tiny)
    if kind == "body":
        util = aux_module("open_pose.util")  # util first: it imports body, which imports it back
        body = aux_module("open_pose.body")
        pose = body.Body.__new__(body.Body)  # Body(path) would torch.load the file without weights_only
        pose.model = seeded(body.bodypose_model)
        if not tiny:
            pose.model.load_state_dict(util.transfer(pose.model, load_state(name, model, "body_pose_model.pth")))
        return pose
    if kind == "lineart":
        lineart = aux_module("lineart")
        fine, coarse = seeded(lambda: lineart.Generator(3, 1, 3)), seeded(lambda: lineart.Generator(3, 1, 3))
        if not tiny:
            fine.load_state_dict(load_state(name, model, "sk_model.pth"))
            coarse.load_state_dict(load_state(name, model, "sk_model2.pth"))
        return lineart.LineartDetector(fine, coarse)
    if kind == "pidi":
        pidi = aux_module("pidi")
        net = seeded(pidi.pidinet)
        if not tiny:
            state = load_state(name, model, "table5_pidinet.pth")["state_dict"]
            net.load_state_dict({key.replace("module.", ""): value for key, value in state.items()})
        return pidi.PidiNetDetector(net)
    hed = aux_module("hed")  # kind "hed"
    net = seeded(hed.ControlNetHED_Apache2)
    if not tiny:
        net.load_state_dict(load_state(name, model, "ControlNetHED.pth"))
    return hed.HEDdetector(net)


def depth_network(name: str, model: str, tiny: bool):
    """(image processor, Depth Anything model): from the cache, a folder, or a small random config."""
    from transformers import (AutoModelForDepthEstimation, DepthAnythingConfig, DepthAnythingForDepthEstimation,
                              Dinov2Config, DPTImageProcessorPil)
    if tiny:
        backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                                patch_size=14, image_size=56, reshape_hidden_states=False,
                                out_features=["stage1", "stage2", "stage3", "stage4"])
        config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
                                     neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8)
        processor = DPTImageProcessorPil(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                                         image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
        return processor, seeded(lambda: DepthAnythingForDepthEstimation(config))
    processor, net = from_cache(name, model, DPTImageProcessorPil, AutoModelForDepthEstimation)
    return processor, net.eval()


def seg_network(name: str, model: str, tiny: bool):
    """(image processor, UperNet model): from the cache, a folder, or a small random config (150 classes)."""
    from transformers import ConvNextConfig, SegformerImageProcessorPil, UperNetConfig, UperNetForSemanticSegmentation
    if tiny:
        backbone = ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                                  out_features=["stage1", "stage2", "stage3", "stage4"])
        config = UperNetConfig(backbone_config=backbone, hidden_size=16, num_labels=150, use_auxiliary_head=False)
        processor = SegformerImageProcessorPil(size={"height": 64, "width": 64})
        return processor, seeded(lambda: UperNetForSemanticSegmentation(config))
    processor, net = from_cache(name, model, SegformerImageProcessorPil, UperNetForSemanticSegmentation)
    return processor, net.eval()


def from_cache(name: str, model: str, *classes) -> list:
    """Each of `classes` (an image processor, a model) loaded from a folder or the hub cache; never downloaded."""
    try:
        return [cls.from_pretrained(model, cache_dir=hub_cache(), local_files_only=True) for cls in classes]
    except OSError:
        raise missing_weights(name, model) from None


# ---- what each network reads off a picture ---------------------------------------------------------------------------

def depth_map(image: Image.Image, model: str) -> np.ndarray:
    """Relative inverse depth of `image` at its size, float in [0, 1], near = 1 (min-max per image; flat: all 0)."""
    import torch
    processor, net = network("depth", model)
    with torch.no_grad():
        output = net(**processor(images=image, return_tensors="pt"))
    depth = processor.post_process_depth_estimation(output, target_sizes=[(image.height, image.width)])
    depth = depth[0]["predicted_depth"].float().numpy()
    low, high = depth.min(), depth.max()
    return (depth - low) / (high - low) if high > low else np.zeros_like(depth)


def segment(image: Image.Image, model: str) -> np.ndarray:
    """Each pixel's ADE20K class id (0-149) at the image's size."""
    import torch
    processor, net = network("seg", model)
    with torch.no_grad():
        output = net(**processor(images=image, return_tensors="pt"))
    classes = processor.post_process_semantic_segmentation(output, target_sizes=[(image.height, image.width)])
    return classes[0].numpy().astype(np.int64)


def ade_palette() -> np.ndarray:
    """ADE20K's 150 class colours (150, 3) uint8, as the seg ControlNets were trained on (controlnet_aux's table)."""
    return np.asarray(aux_module("util").ade_palette(), np.uint8)


def paint_classes(classes: np.ndarray) -> Image.Image:
    """Class ids painted in the ADE20K palette: the image a seg ControlNet reads."""
    return Image.fromarray(ade_palette()[np.clip(classes, 0, 149)])


def classes_of(painted) -> np.ndarray:
    """The class ids of a palette-painted map: each pixel's nearest palette colour (a resized map blends some). The
    published palette paints classes 6 and 48 alike, (140, 140, 140): such a pixel reads as class 6."""
    pixels = np.asarray(painted.convert("RGB") if isinstance(painted, Image.Image) else painted, np.int32)
    palette = ade_palette().astype(np.int32)
    distances = ((pixels[:, :, None, :] - palette[None, None]) ** 2).sum(-1)
    return distances.argmin(-1)


def find_people(image: Image.Image, model: str) -> tuple:
    """OpenPose's body model on `image`: (the model, its candidate keypoints, and each person's row of indices)."""
    pose = network("openpose", model)
    candidate, subset = pose(np.asarray(image.convert("RGB"))[:, :, ::-1].copy())  # OpenPose reads BGR
    return pose, candidate, subset


def pose_keypoints(image: Image.Image, model: str) -> np.ndarray:
    """The first person's 18 OpenPose body keypoints as (18, 2) pixel coordinates, NaN where not found (all NaN: no
    person)."""
    _, candidate, subset = find_people(image, model)
    points = np.full((18, 2), np.nan)
    if len(subset):
        person = subset[int(np.argmax(subset[:, -2]))]  # the highest-scoring person
        for part, index in enumerate(person[:18].astype(int)):
            if index >= 0:
                points[part] = candidate[index, :2]
    return points


def draw_pose(image: Image.Image, model: str) -> Image.Image:
    """The OpenPose skeleton of every person found, drawn on black at the image's size."""
    pose, candidate, subset = find_people(image, model)
    util = aux_module("open_pose.util")
    canvas = np.zeros((image.height, image.width, 3), np.uint8)
    for person in pose.format_body_result(candidate, subset):
        keypoints = [None if k is None else k._replace(x=k.x / image.width, y=k.y / image.height)
                     for k in person.keypoints]
        canvas = util.draw_bodypose(canvas, keypoints)
    return Image.fromarray(canvas)


def draw_condition(name: str, image: Image.Image, models: dict | None = None) -> Image.Image:
    """Condition `name`'s map of `image` (RGB, at the image's size), drawn with the weights `models` names."""
    model, kind = estimator(name, models), condition(name).kind
    if kind == "depth":
        grey = (depth_map(image, model) * 255).round().astype(np.uint8)
        return Image.fromarray(np.stack([grey] * 3, -1))
    if kind == "seg":
        return paint_classes(segment(image, model))
    if kind == "openpose":
        return draw_pose(image, model)
    detect = max(DETECT_MIN, (min(image.size) + 63) // 64 * 64)
    extra = {"scribble": True} if name == "scribble" else {}
    drawn = network(name, model)(np.asarray(image.convert("RGB")), detect_resolution=detect,
                                 image_resolution=detect, output_type="pil", **extra)
    return drawn.convert("RGB").resize(image.size, Image.BILINEAR)
