"""AUTOMATIC1111 "infotext": the `parameters` PNG text chunk its "PNG info" tab reads, written and read both ways.

    a yellow star on a blue background <lora:rank4:0.5:lbw=1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1>
    Negative prompt: blurry
    Steps: 20, Sampler: DDIM, CFG scale: 5.0, Seed: 3, Size: 64x64, Model hash: 0123456789, Model: toy,
    ControlNet 0: "Module: canny, Model: toy, Weight: 1.0, Threshold A: 100, Threshold B: 200, ...",
    Lora hashes: "rank4: 0123456789ab", Workbench units: "[...]", Workbench trial: 3f2a...

The last line is `key: value` pairs; values with commas, colons or quotes are JSON-quoted, as A1111 does.
Every field A1111 and its extensions read is written so that they read it right (`controlnet_entries.py`
for the ControlNet extension's units; the LoRA Block Weight extension's list for `lora_blocks`). What they
cannot say (a ControlNet scale above 2, a scale schedule, a unit's own image, block weights per layer) goes
into the workbench's own fields, which they ignore and which win when the workbench reads its PNGs back.

A PNG may come from anyone: its text is capped (`MAX_INFOTEXT`) and read without decoding the pixels,
and every parse here runs in time linear in the text.
"""

from __future__ import annotations

import re

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..families import FAMILIES, family_for
from ..spec.axes import BUILTIN, REGISTERED
from ..spec.lora_blocks import block_label, from_lbw, to_lbw
from ..spec.samplers import SCHEDULERS, sampler_from_infotext, schedule_type
from .controlnet_entries import format_units, parse_units
from .infotext_fields import model_label, parse_pairs, quote, read_number

MAX_INFOTEXT = 64 * 1024  # characters: A1111 writes a few KB; a longer `parameters` text is refused
# <lora:name>, <lora:name:weight>, <lora:name:weight:lbw=...> (the LBW extension's key) or other named arguments.
# Bounded, so a text of many unclosed tags is read in linear time.
LORA_TAG = re.compile(r"[ \t]{0,64}<lora:([^<>]{1,4500})>")


LABEL = {axis.key: axis.infotext for axis in BUILTIN if axis.infotext}  # "steps" -> "Steps", from the axis records


def number_fields() -> dict:
    """{label: (axis, cast)} of the axes written as a plain number ("Steps: 20"): from the records, built in and
    registered, outside control units (a unit's parameters sit in its ControlNet entry)."""
    casts = {"float": float, "int": int}
    return {axis.infotext: (axis.key, casts[axis.kind]) for axis in (*BUILTIN, *REGISTERED.values())
            if axis.infotext and not axis.unit and axis.kind in casts}


def lora_tag(params: dict, model: str) -> str:
    """`<lora:name:weight>`, with the LBW extension's weight list (for `model`'s family) where the trial has block
    weights it can say. The family is looked up only then: for a file or folder that reads its header or index."""
    blocks = params.get("lora_blocks")
    lbw = to_lbw(blocks, family_for(str(model)).LBW_BLOCKS) if blocks else None
    return f"<lora:{params['adapter']}:{params['lora_weight']}{f':lbw={lbw}' if lbw else ''}>"


def format_infotext(params: dict, width: int, height: int, model: str, trial_id: str = "",
                    model_hash: str | None = None, lora_hashes: dict | None = None) -> str:
    """The A1111 text of one trial's parameters (see the module docstring for the layout).

    `model_hash` is A1111's short hash of a model file (else a fingerprint of the weights); `lora_hashes` maps
    adapter names to A1111's short hashes of their files (`Lora hashes`), so that A1111 can find both.
    """
    prompt = params["prompt"] + (f" {lora_tag(params, model)}" if params.get("adapter") else "")
    pairs = {LABEL["steps"]: params["steps"], LABEL["scheduler"]: SCHEDULERS[params["scheduler"]].a1111_name,
             "Schedule type": schedule_type(params["scheduler"]) or "", LABEL["guidance"]: params["guidance"],
             LABEL["seed"]: params["seed"], "Size": f"{width}x{height}", "Model hash": model_hash or "",
             "Model": model_label(model), LABEL["clip_skip"]: params.get("clip_skip") or ""}  # A1111's order
    pairs.update(format_units(params, model))
    if params.get("adapter") and params.get("lora_blocks") and "lbw=" not in prompt:  # no LBW list can say them
        pairs["Workbench only"] = "; ".join(filter(None, [pairs["Workbench only"], "LoRA block weights per layer"]))
    pairs.update({axis.infotext: params[name] for name, axis in REGISTERED.items()
                  if axis.infotext and name in params and axis.infotext not in pairs and not axis.unit})
    if params.get("adapter") and lora_hashes and params["adapter"] in lora_hashes:
        pairs["Lora hashes"] = f"{params['adapter']}: {lora_hashes[params['adapter']]}"
    pairs.update({"Lora blocks": block_label(params.get("lora_blocks")) if params.get("adapter") else "",
                  "Workbench model": str(model) if model_label(model) != str(model) else "",
                  "Resolution": params.get("resolution") or "",  # the spec's, where it set one (Size is the image's)
                  "Control image": params.get("control_image", ""), "Workbench trial": trial_id})
    tail = ", ".join(f"{key}: {quote(value)}" for key, value in pairs.items() if value not in ("", None))
    lines = [prompt]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    return "\n".join(lines + [tail])


def lora_tags(prompt: str) -> tuple[str, list[dict]]:
    """The prompt without its `<lora:...>` tags, and each tag as {name, weight, lbw} (weight 1 where none is given)."""
    tags = []
    for match in LORA_TAG.finditer(prompt):
        name, *args = match.group(1).split(":")
        weight, lbw = 1.0, None
        for i, arg in enumerate(args[:8]):
            if arg.startswith("lbw="):
                lbw = arg[4:]
            elif i == 0 and "=" not in arg:
                weight = read_number({"LoRA weight": arg}, "LoRA weight", float)
        tags.append({"name": name.strip(), "weight": weight, "lbw": lbw})
    return LORA_TAG.sub("", prompt), tags


def parse_infotext(text: str) -> dict:
    """Read an infotext back into sweep parameters (the inverse of `format_infotext`); it may be A1111's own.

    Besides a spec's parameters it reads `loras` (every LoRA tag), `model_hash`, `lora_hashes`, and the module
    and model of each A1111 ControlNet unit (`controlnet_entries.parse_units`), which `spec_from_png` checks.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("infotext is empty")
    lines = text.strip("\n").split("\n")
    pairs = parse_pairs(lines[-1]) if len(lines) > 1 or "Steps:" in lines[-1] else {}
    body = lines[:-1] if pairs else lines
    negative_at = next((i for i, line in enumerate(body) if line.startswith("Negative prompt:")), len(body))
    prompt = "\n".join(body[:negative_at])
    negative = "\n".join(body[negative_at:])[len("Negative prompt:"):].strip() if negative_at < len(body) else ""
    params = {"negative_prompt": negative}
    params["prompt"], params["loras"] = lora_tags(prompt)
    if len(params["loras"]) == 1:  # one adapter a trial: several are for `spec_from_png` to name
        tag = params["loras"][0]
        params["adapter"], params["lora_weight"] = tag["name"], tag["weight"]
        if "Lora blocks" in pairs or tag["lbw"]:
            params["lora_blocks"] = pairs.get("Lora blocks") or from_lbw(tag["lbw"], [f.LBW_BLOCKS for f in FAMILIES])
    readers = {**number_fields(), "Resolution": ("resolution", int),
               **{axis.infotext: (name, str)  # a registered text axis
                  for name, axis in REGISTERED.items() if axis.infotext and axis.kind in ("text", "name")}}
    for key, (name, cast) in readers.items():
        if key in pairs and name not in params:
            params[name] = pairs[key] if cast is str else read_number(pairs, key, cast)
    if "Sampler" in pairs:  # a missing "Schedule type" is read as before A1111 1.9: no Karras sigmas
        params["scheduler"] = sampler_from_infotext(pairs["Sampler"], pairs.get("Schedule type"))
    if "Size" in pairs and "x" in pairs["Size"]:
        width, _, height = pairs["Size"].partition("x")
        params["width"], params["height"] = read_number({"width": width}, "width", int), \
            read_number({"height": height}, "height", int)
    for key, name in (("Workbench model", "model"), ("Model", "model"), ("Model hash", "model_hash"),
                      ("Control image", "control_image"), ("Workbench trial", "trial_id")):
        if key in pairs and name not in params:
            params[name] = pairs[key]
    if "Lora hashes" in pairs:
        params["lora_hashes"] = dict(item.strip().rsplit(": ", 1) for item in pairs["Lora hashes"].split(",")[:64]
                                     if ": " in item)
    params.update(parse_units(pairs))
    return params


def png_info(text: str) -> PngInfo:
    """A PNG text chunk named `parameters`, as A1111 writes it."""
    info = PngInfo()
    info.add_text("parameters", text)
    return info


def read_png_parameters(path) -> dict:
    """The sweep parameters stored in a PNG written by workbench (or by A1111).

    The text chunk is read from the PNG's header chunks only (`image.info`, as opening the
    file reads them), never by decoding pixels or frames, and a text over MAX_INFOTEXT
    characters is refused.
    """
    with Image.open(path) as image:
        text = image.info.get("parameters")
    if not isinstance(text, str) or not text:
        raise ValueError(f"{path} has no `parameters` text chunk")
    if len(text) > MAX_INFOTEXT:
        raise ValueError(f"{path}: its `parameters` text is {len(text):,} characters, more than the {MAX_INFOTEXT:,} "
                         "an infotext holds; it was not read")
    return parse_infotext(text)
