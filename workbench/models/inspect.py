"""Say what a file is before anyone loads it: a LoRA (which format, which parts, rank, alpha, which base) or a
single-file checkpoint (which family, complete or not). Reads a safetensors header and a few shapes, never a model.

    python -m workbench inspect FILE [--model tiny]       wb.inspect_file(path, pipe=None)

Given a loaded pipeline, it also lists the LoRA layers that do not fit it (no such module, or other shapes).
"""

from __future__ import annotations

from pathlib import Path

from ..families import FAMILIES
from ..lora.files import (KOHYA_PREFIXES, LYCORIS_RANK_FACTORS, PAIR_SUFFIXES, check_safetensors, lycoris_kind, not_lora,
                          read_lora_metadata)

# What a single-file checkpoint holds, by key prefix: A1111's (original Stable Diffusion) layout.
CHECKPOINT_PARTS = {"model.diffusion_model.": "unet", "first_stage_model.": "vae", "cond_stage_model.": "text_encoder",
                    "conditioner.embedders.": "text_encoders"}
SD2_KEY = "cond_stage_model.model.ln_final.weight"  # an OpenCLIP text encoder alone: SD 2.x, which workbench refuses


# kohya's key prefix -> pipeline component, from every family's facts (lora_te_, lora_te1_, lora_te2_, ...)
KOHYA_COMPONENTS = {"lora_unet_": "unet", **{prefix: component for family in FAMILIES
                                            for component, prefix in family.KOHYA_TEXT_PREFIXES.items()}}


def component_of(key: str) -> str:
    """The pipeline component a LoRA key belongs to (unet, a text encoder): by kohya's prefix, else its first part."""
    return next((component for prefix, component in KOHYA_COMPONENTS.items() if key.startswith(prefix)),
                key.split(".", 1)[0])


def lora_kind(keys: list[str]) -> str:
    """A LoRA file's format from its keys: LyCORIS LoHa or LoKr, DoRA, kohya, or diffusers/peft."""
    other = not_lora(keys)
    if other:
        return other[0].removeprefix("a ").removesuffix(" file")
    return lycoris_kind(keys) or ("kohya" if any(k.startswith(KOHYA_PREFIXES) for k in keys) else "diffusers/peft")


def base_family(keys: list[str], shapes: dict) -> str | None:
    """The family a LoRA file was made for: by a text encoder only that family has (SDXL's second) or the original UNet
    names only its kohya layout uses, else by the text width its cross-attention keys read (768 SD1.x, 2048 SDXL);
    None when the file does not say."""
    components = {component_of(k) for k in keys}
    for family in FAMILIES:
        others = {c for other in FAMILIES if other is not family for c in other.KOHYA_TEXT_PREFIXES}
        if components & (set(family.KOHYA_TEXT_PREFIXES) - others) or (
                family.KOHYA_SGM_UNET and any("input_blocks" in k or "output_blocks" in k for k in keys)):
            return family.NAME
    widths = {shape[1] for key, shape in shapes.items() if ("attn2_to_k" in key or "attn2.to_k" in key)
              and key.endswith(tuple(down for down, _ in PAIR_SUFFIXES))}
    return next((family.NAME for family in FAMILIES if widths == {family.CROSS_ATTENTION_DIM}), None)


def inspect_checkpoint(keys: list[str]) -> dict:
    """A single-file checkpoint's family and parts; `complete` when it holds a UNet, a VAE and its text encoder(s)."""
    family = next((f.NAME for f in FAMILIES if f.CHECKPOINT_KEY in keys), "sd2 (not supported)" if SD2_KEY in keys
                  else None)
    parts = sorted({part for prefix, part in CHECKPOINT_PARTS.items() if any(k.startswith(prefix) for k in keys)})
    return {"kind": "checkpoint", "family": family, "parts": parts,
            "complete": {"unet", "vae"} <= set(parts) and bool({"text_encoder", "text_encoders"} & set(parts))}


def inspect_file(path: str | Path, pipe=None) -> dict:
    """What a safetensors file is: a checkpoint (family, parts, complete) or a LoRA (format, components, ranks, alpha,
    the base family it was made for); with `pipe`, the LoRA layers that do not fit that pipeline."""
    from safetensors import SafetensorError, safe_open
    path = Path(path)
    check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            shapes = {k: f.get_slice(k).get_shape() for k in keys if not k.endswith(".alpha")}
            alphas = sorted({float(f.get_tensor(k).reshape(-1)[0]) for k in keys if k.endswith(".alpha")})
    except SafetensorError as err:
        raise ValueError(f"{path.name!r} is not a readable safetensors file ({str(err).splitlines()[0][:100]})") from None
    if any(k.startswith(tuple(CHECKPOINT_PARTS)) for k in keys):
        return {"file": path.name, **inspect_checkpoint(keys)}
    downs = [k for k in keys if k.endswith(tuple(down for down, _ in PAIR_SUFFIXES))]
    meta = read_lora_metadata(path)
    info = {"file": path.name, "kind": "lora", "format": lora_kind(keys),
            "components": sorted({component_of(k) for k in keys if not k.endswith(".alpha")}),
            "layers": len(downs) or len({k.rsplit(".", 1)[0] for k in keys if not k.endswith(".alpha")}),
            "ranks": sorted({shapes[k][0] for k in downs or (k for k in keys
                                                              if k.rsplit(".", 1)[-1] in LYCORIS_RANK_FACTORS)}),
            "alphas": alphas or ([meta["lora_alpha"]] if
                                                                                 "lora_alpha" in meta else None),
            "base": base_family(keys, shapes)}
    if pipe is not None:
        info["not_fitting"] = layers_not_fitting(pipe, downs, shapes)
    return info


def layers_not_fitting(pipe, downs: list[str], shapes: dict) -> list[str]:
    """The LoRA layers (by their down keys) whose module `pipe` lacks, or whose input width differs from it."""
    import torch

    from ..lora.convert import kohya_name, pipeline_family
    family, layers_per_block = pipeline_family(pipe)
    modules = {}
    for component in family.LORA_MODULES:
        for name, module in getattr(pipe, component).named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and "lora_" not in name:
                width = module.in_features if isinstance(module, torch.nn.Linear) else module.in_channels
                kohya = kohya_name(component, name.replace(".base_layer", ""), family, layers_per_block)
                for key in (kohya, kohya.replace("_text_model_", "_", 1), f"{component}.{name}"):
                    modules[key] = width
    misfits = []
    for key in downs:
        layer = next(key[:-len(down)] for down, _ in PAIR_SUFFIXES if key.endswith(down))
        width = modules.get(layer)
        theirs = shapes[key][1]  # a down factor is (r, in) for a linear layer, (r, in, k, k) for a convolution
        if width is None or width != theirs:
            misfits.append(f"{layer} ({'no such layer' if width is None else f'{theirs} wide, the model {width}'})")
    return misfits
