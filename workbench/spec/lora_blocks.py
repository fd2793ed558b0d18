"""LoRA block weights: how much of an adapter acts in the UNet's down, mid and up blocks and the text encoder.

The `lora_blocks` axis of a spec takes named presets or explicit dicts:

    lora_blocks: [all, down-only, up-only]
    lora_blocks: [{down: 0, mid: 1, up: {block_1: 1}}]

Missing parts default to 1. The row's `lora_weight` w multiplies everything, so the UNet's
down blocks get w * down * (alpha/r) * B @ A. diffusers' `set_adapters` applies the scales
(its per-block form, which replaces A1111's LoRA Block Weight extension); block scales act
on the attention layers of each block, which is where LoRA adapters usually sit.
"""

from __future__ import annotations

import json
import numbers

from .shorten import short

PARTS = ("down", "mid", "up", "text_encoder")
BLOCK_PRESETS = {
    "all": {"down": 1, "mid": 1, "up": 1, "text_encoder": 1},
    "down-only": {"down": 1, "mid": 0, "up": 0, "text_encoder": 1},
    "mid-only": {"down": 0, "mid": 1, "up": 0, "text_encoder": 1},
    "up-only": {"down": 0, "mid": 0, "up": 1, "text_encoder": 1},
    "no-text-encoder": {"down": 1, "mid": 1, "up": 1, "text_encoder": 0},
}


def check_block_scale(value, where: str) -> None:
    """A block scale is a finite number, a list of them (one per layer), or {"block_i": ...}."""
    if isinstance(value, bool):
        raise ValueError(f"`lora_blocks` {where} must be a number, got {short(value)}")
    if isinstance(value, numbers.Real):
        return
    if isinstance(value, list):
        for item in value:
            check_block_scale(item, where)
        return
    if isinstance(value, dict) and where in ("down", "up"):
        for key, item in value.items():
            if not (isinstance(key, str) and key.startswith("block_") and key[6:].isdigit()):
                raise ValueError(f"`lora_blocks` {where} keys are 'block_<i>', got {short(key)}")
            check_block_scale(item, f"{where}.{key}")
        return
    raise ValueError(f"`lora_blocks` {where} must be a number, a list or (down/up) {{'block_<i>': ...}}, "
                     f"got {short(value)}")


def block_scales(value) -> dict:
    """The scales a `lora_blocks` value stands for: a preset name, a dict, or a row's JSON label."""
    if isinstance(value, str) and value.startswith("{"):
        value = json.loads(value)
    if isinstance(value, str):
        if value not in BLOCK_PRESETS:
            raise ValueError(f"unknown `lora_blocks` preset {short(value)}; presets: {sorted(BLOCK_PRESETS)}, "
                             f"or a dict with keys {list(PARTS)}")
        return dict(BLOCK_PRESETS[value])
    if not isinstance(value, dict):
        raise ValueError(f"`lora_blocks` values are preset names or dicts, got {short(value)}")
    unknown = sorted(set(value) - set(PARTS))
    if unknown:
        raise ValueError(f"`lora_blocks` keys are {list(PARTS)}, got {unknown}")
    for part, scale in value.items():
        if part == "text_encoder" and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)):
            raise ValueError(f"`lora_blocks` text_encoder must be a number, got {short(scale)}")
        check_block_scale(scale, part)
    return {**{part: 1 for part in PARTS}, **value}


def block_label(value) -> str | None:
    """What a row records: the preset's name, or the dict as compact JSON (None stays None)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(block_scales(value), sort_keys=True, separators=(",", ":"))


def times(value, weight: float):
    """A scale (number, list or nested dict) multiplied by `weight`."""
    if isinstance(value, dict):
        return {key: times(item, weight) for key, item in value.items()}
    if isinstance(value, list):
        return [times(item, weight) for item in value]
    return float(value) * weight


def adapter_weights(pipe, adapter: str, weight: float, blocks) -> dict:
    """`set_adapters` weights for one adapter: its UNet block scales and its text encoders', times `weight`."""
    scales = block_scales(blocks)
    carried_by = [part for part, names in pipe.get_list_adapters().items() if adapter in names]
    weights = {}
    for component in carried_by:
        if component == "unet":
            weights["unet"] = times({part: scales[part] for part in ("down", "mid", "up")}, weight)
        else:  # every text encoder of the family
            weights[component] = times(scales["text_encoder"], weight)
    return weights


# ---- A1111's LoRA Block Weight extension (`<lora:name:w:lbw=1,0,...>`) -------------------------------------------

def block_value(scales: dict, part: str, block, layer):
    """The scale one LBW block gets from our scales, or None where ours cannot be read per block (a top-level list)."""
    value = scales[part]
    if isinstance(value, dict):
        value = value.get(f"block_{block}", 1)
    if isinstance(value, list):
        return value[layer] if block is not None and isinstance(layer, int) and layer < len(value) and \
            isinstance(value[layer], numbers.Real) else None
    return value if isinstance(value, numbers.Real) else None


def to_lbw(value, lbw_blocks: tuple) -> str | None:
    """A `lora_blocks` value as the LBW extension's weight list for a family's blocks ("1,0,0,...,1"), or None where
    it has no such form. The extension has no preset for ours (`up-only` is none of its), so a list is written."""
    scales = block_scales(value)
    weights = [block_value(scales, part, block, layer) for _, part, block, layer in lbw_blocks]
    if any(w is None for w in weights):
        return None
    return ",".join(f"{float(w):g}" for w in weights)


def from_lbw(text: str, families_blocks: list[tuple]):
    """An LBW weight list back as a `lora_blocks` dict, by its length (17 SD1.x, 12 SDXL); our own presets and JSON
    (older PNGs) come back as they are; anything else is returned unchanged for the spec check to name."""
    parts = [p.strip() for p in text.split(",")]
    lbw_blocks = next((blocks for blocks in families_blocks if len(blocks) == len(parts)), None)
    try:
        weights = [float(p) for p in parts]
    except ValueError:
        return text
    if lbw_blocks is None:
        return text
    scales: dict = {"text_encoder": 1.0, "down": {}, "mid": 1.0, "up": {}}
    for (_, part, block, layer), weight in zip(lbw_blocks, weights):
        if block is None:
            scales[part] = weight
        else:
            scales[part].setdefault(f"block_{block}", []).append(weight)
    for part in ("down", "up"):
        flat = {w for layers in scales[part].values() for w in layers}
        scales[part] = flat.pop() if len(flat) == 1 else scales[part]
    preset = next((name for name, preset in BLOCK_PRESETS.items() if preset == scales), None)
    return preset or json.dumps(scales, sort_keys=True, separators=(",", ":"))
