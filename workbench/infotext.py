"""AUTOMATIC1111 "infotext": the `parameters` PNG text chunk its "PNG info" tab reads. No torch here.

    a yellow star on a blue background <lora:rank4:0.5>
    Negative prompt: blurry
    Steps: 20, Sampler: DDIM, CFG scale: 5.0, Seed: 3, Size: 64x64, Model: toy, ControlNet 0: "Module: canny, ..."

The last line is `key: value` pairs; values with commas or quotes are JSON-quoted, as A1111 does.
"""

from __future__ import annotations

import json
import re

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .schedulers import SCHEDULERS
from .units import LEGACY_KEYS
# <lora:name:weight> or, with block weights, <lora:name:weight:lbw=up-only> (the LBW extension's key)
LORA_TAG = re.compile(r"\s*<lora:([^:>]+):([-+0-9.eE]+)(?::lbw=([^>]+))?>")
PAIR = re.compile(r'\s*([\w][\w \-/+]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def quote(value) -> str:
    """JSON-quote a value that holds a comma, colon or quote, so the line still splits cleanly."""
    text = str(value)
    return json.dumps(text) if any(c in text for c in ',:"\n') else text


def unquote(text: str) -> str:
    text = text.strip()
    return json.loads(text) if text.startswith('"') and text.endswith('"') and len(text) >= 2 else text


def format_infotext(params: dict, width: int, height: int, model: str, trial_id: str = "") -> str:
    """The A1111 text of one trial's parameters (see the module docstring for the layout)."""
    prompt = params["prompt"]
    if params.get("adapter"):
        blocks = f":lbw={params['lora_blocks']}" if params.get("lora_blocks") else ""
        prompt += f" <lora:{params['adapter']}:{params['lora_weight']}{blocks}>"
    pairs = {"Steps": params["steps"], "Sampler": SCHEDULERS[params["scheduler"]].a1111_name, "CFG scale": params["guidance"],
             "Seed": params["seed"], "Size": f"{width}x{height}", "Model": model}
    names = unit_names(params)
    for i, name in enumerate(names):  # one entry per ControlNet, as sd-webui-controlnet writes them
        key = (lambda param: LEGACY_KEYS[param]) if not name else (lambda param, name=name: f"{name}.{param}")
        entry = {"Module": params.get(f"{name}.preprocess", "canny") if name else "canny",
                 "Model": params.get(f"{name}.controlnet", model) if name else model,
                 "Weight": params[key("scale")], "Guidance Start": params[key("start")],
                 "Guidance End": params[key("end")], "Threshold A": params[key("low")],
                 "Threshold B": params[key("high")]}
        if name:  # workbench's own fields: sd-webui-controlnet ignores keys it does not know
            entry.update({"Unit": name, "Image": params[f"{name}.image"]})
        pairs[f"ControlNet {i}"] = ", ".join(f"{k}: {quote(v)}" for k, v in entry.items())
    pairs.update({"Control image": params.get("control_image", ""), "Workbench trial": trial_id})
    tail = ", ".join(f"{key}: {quote(value)}" for key, value in pairs.items() if value != "")
    lines = [prompt]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    return "\n".join(lines + [tail])


def parse_pairs(line: str) -> dict:
    """`key: value, key: "quoted, value"` into a dict of strings."""
    return {key.strip(): unquote(value) for key, value in PAIR.findall(line)}


def parse_infotext(text: str) -> dict:
    """Read an infotext back into sweep parameters (the inverse of `format_infotext`)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("infotext is empty")
    lines = text.strip("\n").split("\n")
    pairs = parse_pairs(lines[-1]) if len(lines) > 1 or "Steps:" in lines[-1] else {}
    body = lines[:-1] if pairs else lines
    negative_at = next((i for i, line in enumerate(body) if line.startswith("Negative prompt:")), len(body))
    prompt = "\n".join(body[:negative_at])
    negative = "\n".join(body[negative_at:])[len("Negative prompt:"):].strip() if negative_at < len(body) else ""
    params = {"negative_prompt": negative}
    lora = LORA_TAG.search(prompt)
    if lora:
        params["adapter"], params["lora_weight"] = lora.group(1), float(lora.group(2))
        if lora.group(3):
            params["lora_blocks"] = lora.group(3)
        prompt = LORA_TAG.sub("", prompt)
    params["prompt"] = prompt
    readers = {"Steps": ("steps", int), "CFG scale": ("guidance", float), "Seed": ("seed", int)}
    for key, (name, cast) in readers.items():
        if key in pairs:
            params[name] = cast(pairs[key])
    if "Sampler" in pairs:
        names = {sampler.a1111_name: name for name, sampler in SCHEDULERS.items()}
        params["scheduler"] = names.get(pairs["Sampler"], pairs["Sampler"])
    if "Size" in pairs and "x" in pairs["Size"]:
        params["width"], params["height"] = (int(v) for v in pairs["Size"].split("x"))
    if "Model" in pairs:
        params["model"] = pairs["Model"]
    if "Control image" in pairs:
        params["control_image"] = pairs["Control image"]
    if "Workbench trial" in pairs:
        params["trial_id"] = pairs["Workbench trial"]
    for i in range(len(pairs)):
        if f"ControlNet {i}" not in pairs:
            break
        entry = parse_pairs(pairs[f"ControlNet {i}"])
        unit = entry.get("Unit", "")
        for key, param, cast in UNIT_ENTRY:
            if key in entry:
                params[f"{unit}.{param}" if unit else LEGACY_KEYS[param]] = cast(entry[key])
        if unit:
            params.update({f"{unit}.image": entry.get("Image", ""), f"{unit}.controlnet": entry.get("Model", ""),
                           f"{unit}.preprocess": entry.get("Module", "canny")})
    return params


# The fields of a "ControlNet <i>" entry that are sweep parameters: (infotext key, unit parameter, type).
UNIT_ENTRY = (("Weight", "scale", float), ("Guidance Start", "start", float), ("Guidance End", "end", float),
              ("Threshold A", "low", int), ("Threshold B", "high", int))


def unit_names(params: dict) -> list[str]:
    """The control units of a trial's parameters: their names, or [""] for an old-style one-unit trial."""
    names = [key[:-len(".image")] for key in params if key.endswith(".image")]
    return names or [""]


def png_info(text: str) -> PngInfo:
    """A PNG text chunk named `parameters`, as A1111 writes it."""
    info = PngInfo()
    info.add_text("parameters", text)
    return info


def read_png_parameters(path) -> dict:
    """The sweep parameters stored in a PNG written by workbench (or by A1111)."""
    with Image.open(path) as image:
        text = image.text.get("parameters") if hasattr(image, "text") else None
    if not text:
        raise ValueError(f"{path} has no `parameters` text chunk")
    return parse_infotext(text)
