"""How AUTOMATIC1111 and its extensions read a PNG's infotext, re-implemented from their documented behaviour, so
the tests can check that what the workbench writes reads right there (nothing here is imported by the package).

- A1111's `parse_generation_parameters` (modules/infotext_utils.py): the last line is split by one regex into
  `key: value` pairs (a value is a JSON-quoted string or runs to the next comma), a `WxH` value becomes
  `key-1`/`key-2`, and the lines above are the prompt, then "Negative prompt:".
- Its extra-network tags (modules/extra_networks.py): `<lora:name:arg:arg...>` split on ":", positional arguments
  read as floats (the first is the weight, 1 if none), `key=value` arguments passed on by name.
- The LoRA Block Weight extension's `lbw=`: a preset name or one weight per block, 17 for SD1.x, 12 for SDXL.
- The ControlNet extension's unit parser (scripts/infotext.py, internal_controlnet/args.py): the entry is split
  on every comma and each piece on ": " with no quoting (a piece that does not split in two drops the unit),
  `Weight` must lie in 0-2 (else the unit is dropped), and a Canny threshold outside its 1-255 slider is reset
  to the default (100, 200).
"""

from __future__ import annotations

import json
import re

RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")
RE_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
LBW_PRESETS = ("NONE", "ALL", "INS", "IND", "INALL", "MIDD", "OUTD", "OUTS", "OUTALL", "ALL0.5")
LBW_LENGTHS = (17, 12)  # SD1.x, SDXL


def unquote(text: str) -> str:
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_generation_parameters(text: str) -> dict:
    """A1111's reading of an infotext: {"Prompt", "Negative prompt", "Steps", "Size-1", "Size-2", ...}."""
    *lines, last = text.strip().split("\n")
    if len(RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[16:].strip()
        if in_negative:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    result = {"Prompt": prompt, "Negative prompt": negative}
    for key, value in RE_PARAM.findall(last):
        value = unquote(value)
        size = RE_IMAGESIZE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.groups()
        else:
            result[key] = value
    return result


def lora_tags(prompt: str) -> list[dict]:
    """Each `<lora:...>` tag as A1111 reads it: {name, weight, named}; a positional argument that is no number raises
    ValueError, as A1111's LoRA network does (the dict form of `lbw={...:...}` did)."""
    tags = []
    for kind, args in RE_EXTRA_NETWORK.findall(prompt):
        if kind != "lora":
            continue
        name, *rest = args.split(":")
        positional = [float(a) for a in rest if "=" not in a]
        named = dict(a.split("=", 1) for a in rest if "=" in a)
        tags.append({"name": name, "weight": positional[0] if positional else 1.0, "named": named})
    return tags


def lbw_weights(value: str) -> list[float] | str:
    """The LBW extension's reading of `lbw=`: a preset's name, or the weights (raises ValueError otherwise)."""
    if value in LBW_PRESETS:
        return value
    weights = [float(w) for w in value.split(",")]
    if len(weights) not in LBW_LENGTHS:
        raise ValueError(f"lbw has {len(weights)} weights, not one of {LBW_LENGTHS}")
    return weights


def parse_controlnet_unit(text: str) -> dict | None:
    """The ControlNet extension's reading of one `ControlNet <i>` entry; None where it drops the unit."""
    fields = {}
    for item in text.split(","):
        pieces = item.strip().split(": ")
        if len(pieces) != 2:
            return None
        fields[pieces[0]] = pieces[1]
    try:
        weight = float(fields.get("Weight", 1.0))
    except ValueError:
        return None
    if not 0.0 <= weight <= 2.0:
        return None
    if fields.get("Module") == "canny":
        for key, default in (("Threshold A", 100.0), ("Threshold B", 200.0)):
            value = float(fields.get(key, default))
            fields[key] = value if 1 <= value <= 255 else default
    return fields
