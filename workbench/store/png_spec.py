"""A PNG becomes a spec with one call: the workbench's own PNGs reproduce exactly, A1111's where they can.

    spec = wb.spec_from_png("00012-965400086.png", control_image="edges.png", adapters={"add_detail": "add_detail.safetensors"})
    wb.run_sweep(pipe, spec, "runs/again")

A PNG holds one image's settings; the spec holds each as a one-value axis. What this workbench cannot
reproduce is refused by name, never dropped: a sampler it does not have, a ControlNet unit whose module
is not Canny or a mask, several LoRAs in one prompt (a trial applies one adapter), a LoRA without its file,
an A1111 PNG without its control image (A1111 keeps it out of the infotext). No torch here.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..families import PRESETS

from ..spec.samplers import SCHEDULERS
from ..spec.shorten import short
from ..spec.sweep_spec import SweepSpec, spec_from_dict
from ..spec.units import LEGACY_KEYS, PREPROCESSORS
from .infotext import read_png_parameters

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
# infotext parameters that are one-value axes of a spec as they are
SPEC_AXES = ("prompt", "negative_prompt", "steps", "guidance", "scheduler", "seed", "clip_skip", "lora_weight",
             "lora_blocks", *LEGACY_KEYS.values())


def refuse(path: Path, what: str, do: str) -> ValueError:
    return ValueError(f"{Path(path).name[:80]!r}: {what}; {do}")


def check_reproducible(path: Path, params: dict) -> None:
    """Refuse, by name, what the workbench cannot reproduce from this PNG."""
    if len(params.get("loras", [])) > 1:
        tags = ", ".join(f"{tag['name'][:40]} {tag['weight']:g}" for tag in params["loras"][:8])
        raise refuse(path, f"its prompt applies {len(params['loras'])} LoRAs ({tags})",
                     "a workbench trial applies one adapter: keep one tag, or blend them with wb.blend_table")
    if params.get("scheduler") not in SCHEDULERS:
        raise refuse(path, f"its sampler {short(params.get('scheduler'))} is not one the workbench has",
                     f"samplers here: {sorted(SCHEDULERS)}")
    units = params.get("control_units", [])
    for i, unit in enumerate(units):
        if unit["preprocess"] not in PREPROCESSORS:
            raise refuse(path, f"its ControlNet {i} runs module {short(unit['preprocess'])} with model "
                         f"{short(unit['controlnet'])}", f"the workbench runs {list(PREPROCESSORS)} units only")
    if len(units) > 1:
        raise refuse(path, f"it has {len(units)} A1111 ControlNet units and no image for each",
                     "write a spec with `controls:`, one image per unit")


def spec_from_png(path: str | Path, model: str | None = None, control_image: str | None = None,
                  adapters: dict | None = None) -> SweepSpec:
    """The spec that remakes a PNG's image: every setting its infotext holds, as one-value axes.

    Args:
        path: a PNG written by the workbench (its own fields make it exact) or by AUTOMATIC1111.
        model: the model to run (default: the PNG's; an A1111 checkpoint name needs its file or a preset here).
        control_image: the control image (default: the PNG's `Control image`; A1111 PNGs have none).
        adapters: {LoRA name in the prompt: its file}, where the PNG's LoRA is not one the spec can find.
    """
    path = Path(path)
    params = read_png_parameters(path)
    check_reproducible(path, params)
    spec = {name: [params[name]] for name in SPEC_AXES if params.get(name) not in (None, "")}
    spec["negative_prompt"] = [params.get("negative_prompt", "")]
    named = sorted({key.split(".", 1)[0] for key in params if key.endswith(".image")})
    if named:
        spec["controls"] = {name: {"controlnet": params[f"{name}.controlnet"], "image": params[f"{name}.image"],
                                   "preprocess": params[f"{name}.preprocess"]} for name in named}
        spec.update({key: [value] for key, value in params.items()
                     if "." in key and key.split(".", 1)[0] in named and key.rsplit(".", 1)[1] not in
                     ("image", "controlnet", "preprocess")})
        spec.pop("control_image", None)
    else:
        image = control_image or params.get("control_image")
        if not image:
            raise refuse(path, "it names no control image (A1111 keeps it out of the infotext)",
                         "pass control_image= the image its ControlNet read")
        spec["control_image"] = image
    if params.get("adapter"):
        name = params["adapter"]
        files = dict(adapters or {})
        if name not in files:
            raise refuse(path, f"its prompt applies the LoRA {short(name)} at {params['lora_weight']:g}",
                         f"pass adapters={{{name!r}: 'path/to/{name}.safetensors'}}")
        spec.update(adapters={name: str(files[name])}, adapter=[name])
    if "resolution" in params:  # the workbench's own field: the spec set one
        spec["resolution"] = params["resolution"]
    elif "width" in params and "trial_id" not in params:  # A1111's: the short side (the control sets the shape)
        spec["resolution"] = min(params["width"], params["height"])
    spec["model"] = model or params.get("model")
    if model is None and not model_is_here(spec["model"]):
        raise refuse(path, f"it was made with model {short(params.get('model'))} (hash "
                     f"{params.get('model_hash', 'none')}), which is no preset, file, folder or hub id here",
                     "pass model= the checkpoint file, folder or preset to use")
    return spec_from_dict(spec)


def model_is_here(name) -> bool:
    """Whether a PNG's model name can be loaded by that name: a preset, a file or folder on disk, or a hub id."""
    return isinstance(name, str) and (name in PRESETS or Path(name).expanduser().exists()
                                      or HUB_ID.fullmatch(name) is not None)
