"""AUTOMATIC1111 "infotext": the `parameters` PNG text chunk its "PNG info" tab reads. No torch here.

    a yellow star on a blue background <lora:rank4:0.5>
    Negative prompt: blurry
    Steps: 20, Sampler: DDIM, CFG scale: 5.0, Seed: 3, Size: 64x64, Model: toy, ControlNet 0: "Module: canny, ..."

The last line is `key: value` pairs; values with commas or quotes are JSON-quoted, as A1111 does.
A PNG may come from anyone: its text is capped (`MAX_INFOTEXT`) and read without decoding the
pixels, and every parse here runs in time linear in the text.
"""

from __future__ import annotations

import json
import re

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..spec.axes import REGISTERED
from ..spec.samplers import SCHEDULERS, sampler_from_infotext, schedule_type
from ..spec.shorten import short
from ..spec.units import LEGACY_KEYS
MAX_INFOTEXT = 64 * 1024  # characters: A1111 writes a few KB; a longer `parameters` text is refused
# <lora:name:weight> or, with block weights, <lora:name:weight:lbw=up-only> (the LBW extension's key). Each part
# is bounded, so a text of many unclosed tags is read in linear time.
LORA_TAG = re.compile(r"[ \t]{0,64}<lora:([^:>]{1,256}):([-+0-9.eE]{1,32})(?::lbw=([^>]{1,4096}))?>")
KEY = re.compile(r"\w[\w \-/+]*")


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
    pairs = {"Steps": params["steps"], "Sampler": SCHEDULERS[params["scheduler"]].a1111_name,
             "Schedule type": schedule_type(params["scheduler"]) or "", "CFG scale": params["guidance"],
             "Seed": params["seed"], "Size": f"{width}x{height}", "Model": model, "Clip skip": params.get("clip_skip") or ""}
    names = unit_names(params)
    for i, name in enumerate(names):  # one entry per ControlNet, as sd-webui-controlnet writes them
        key = (lambda param: LEGACY_KEYS[param]) if not name else (lambda param, name=name: f"{name}.{param}")
        entry = {"Module": params.get(f"{name}.preprocess", "canny") if name else "canny",
                 "Model": params.get(f"{name}.controlnet", model) if name else model,
                 "Weight": params[key("scale")], "Guidance Start": params[key("start")],
                 "Guidance End": params[key("end")], "Threshold A": params[key("low")],
                 "Threshold B": params[key("high")]}
        if params.get(key("schedule")):  # workbench's own field, where the trial has a schedule
            entry["Schedule"] = params[key("schedule")]
        if name:  # workbench's own fields: sd-webui-controlnet ignores keys it does not know
            entry.update({"Unit": name, "Image": params[f"{name}.image"]})
        pairs[f"ControlNet {i}"] = ", ".join(f"{k}: {quote(v)}" for k, v in entry.items())
    pairs.update({axis.infotext: params[name] for name, axis in REGISTERED.items() if axis.infotext and name in params})
    pairs.update({"Control image": params.get("control_image", ""), "Workbench trial": trial_id})
    tail = ", ".join(f"{key}: {quote(value)}" for key, value in pairs.items() if value != "")
    lines = [prompt]
    if params.get("negative_prompt"):
        lines.append(f"Negative prompt: {params['negative_prompt']}")
    return "\n".join(lines + [tail])


def closing_quote(line: str, start: int) -> int:
    """The index of the quote that closes the JSON string opened at `start`, or -1 (one pass, escapes skipped)."""
    i = start + 1
    while i < len(line):
        if line[i] == "\\":
            i += 2
        elif line[i] == '"':
            return i
        else:
            i += 1
    return -1


def parse_pairs(line: str) -> dict:
    """`key: value, key: "quoted, value"` into a dict of strings, in one pass over the line.

    A key runs to its colon; a value is a JSON-quoted string, or runs to the next comma.
    Pieces without a colon, or whose key is not a name, are skipped.
    """
    pairs, i = {}, 0
    while i < len(line):
        colon, comma = line.find(":", i), line.find(",", i)
        if colon == -1:
            break
        if comma != -1 and comma < colon:  # a piece with no key
            i = comma + 1
            continue
        key = line[i:colon].strip()
        start = colon + 1
        while start < len(line) and line[start] == " ":
            start += 1
        end = closing_quote(line, start) if line.startswith('"', start) else -1
        if end != -1 and line[end + 1:end + 2] in ("", ","):
            value, i = line[start:end + 1], end + 2
        else:
            comma = line.find(",", start)
            value, i = line[start:] if comma == -1 else line[start:comma], len(line) if comma == -1 else comma + 1
        if KEY.fullmatch(key):
            pairs[key] = unquote(value)
    return pairs


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
    readers = {"Steps": ("steps", int), "CFG scale": ("guidance", float), "Seed": ("seed", int),
               "Clip skip": ("clip_skip", int),
               **{axis.infotext: (name, {"float": float, "int": int}.get(axis.kind, str))  # registered axes'
                  for name, axis in REGISTERED.items() if axis.infotext}}
    for key, (name, cast) in readers.items():
        if key in pairs:
            params[name] = read_number(pairs, key, cast)
    if "Sampler" in pairs:  # a missing "Schedule type" is read as before A1111 1.9: no Karras sigmas
        params["scheduler"] = sampler_from_infotext(pairs["Sampler"], pairs.get("Schedule type"))
    if "Size" in pairs and "x" in pairs["Size"]:
        width, _, height = pairs["Size"].partition("x")
        params["width"], params["height"] = read_number({"width": width}, "width", int), \
            read_number({"height": height}, "height", int)
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
                params[f"{unit}.{param}" if unit else LEGACY_KEYS[param]] = read_number(entry, key, cast)
        if unit:
            params.update({f"{unit}.image": entry.get("Image", ""), f"{unit}.controlnet": entry.get("Model", ""),
                           f"{unit}.preprocess": entry.get("Module", "canny")})
    return params


def read_number(pairs: dict, key: str, cast):
    """pairs[key] as an int or a float; a value that is not one is refused, quoted shortly."""
    try:
        return cast(pairs[key])
    except ValueError:
        raise ValueError(f"infotext `{key}` must be {'an integer' if cast is int else 'a number'}, "
                         f"got {short(pairs[key])}") from None


# The fields of a "ControlNet <i>" entry that are sweep parameters: (infotext key, unit parameter, type).
UNIT_ENTRY = (("Weight", "scale", float), ("Guidance Start", "start", float), ("Guidance End", "end", float),
              ("Threshold A", "low", int), ("Threshold B", "high", int), ("Schedule", "schedule", str))


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
