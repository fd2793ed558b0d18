"""Convert LoRA files between the layout this package writes (diffusers) and kohya's, which A1111 and ComfyUI load.

Each layer's update is  dW = s * up @ down  (s = alpha / r). The formats name the factors differently
(`files.py`); a conversion keeps every up, down and s, so the update, and the image, stay the same:

    diffusers   unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight (or .lora_A.weight)
    kohya SD1.5 lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight (+ .alpha)
    kohya SDXL  lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q...  (the original UNet's names, as
                kohya's sd-scripts writes them), text encoders lora_te1_... and lora_te2_...

kohya files carry `alpha` per layer (here s * r) and the header fields A1111 and ComfyUI read
(`ss_network_dim`, `ss_network_alpha`, `ss_base_model_version`). Going back to diffusers folds each
layer's s into its up factor and saves no alpha, which diffusers then reads as alpha = r: the same update.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..families import denoiser, family_of, family_of_index
from .files import check_safetensors, lora_layers, read_lora

FORMATS = ("kohya", "diffusers")  # kohya's names for each family are facts of its module (KOHYA_* in families/)


# A resnet's parts: diffusers' names -> the original UNet's (as kohya's SDXL files name LoCon/LyCORIS conv layers)
RESNET_PARTS = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
                "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
TOP_LEVEL = {"conv_in": "input_blocks.0.0", "conv_out": "out.2", "conv_norm_out": "out.0",
             "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def sgm_name(diffusers_name: str, layers_per_block: int) -> str:
    """The original (SGM) UNet name of a diffusers module: down_blocks.1.attentions.0 -> input_blocks.4.1 (SDXL: 2 a
    block); resnets (down_blocks.0.resnets.1.conv1 -> input_blocks.2.0.in_layers.2), downsamplers and the top-level
    layers too. Upsamplers, whose index depends on the block type, keep their name."""
    for name, original in TOP_LEVEL.items():
        if diffusers_name == name or diffusers_name.startswith(name + "."):
            return original + diffusers_name[len(name):]
    parts = diffusers_name.split(".")
    if parts[0] == "mid_block" and len(parts) >= 3 and parts[1] in ("attentions", "resnets"):
        if parts[1] == "attentions":  # mid_block.attentions.0.* -> middle_block.1.*
            return ".".join(["middle_block", "1", *parts[3:]])
        return ".".join(["middle_block", str(2 * int(parts[2])), *resnet_part(parts[3:])])
    if parts[0] not in ("down_blocks", "up_blocks") or len(parts) < 4:
        return diffusers_name
    block, kind, layer, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
    if kind == "downsamplers" and parts[0] == "down_blocks" and rest[:1] == ["conv"]:
        return ".".join(["input_blocks", str((block + 1) * (layers_per_block + 1)), "0", "op", *rest[1:]])
    if kind not in ("attentions", "resnets"):
        return diffusers_name
    slot, rest = ("1", rest) if kind == "attentions" else ("0", resnet_part(rest))
    if parts[0] == "down_blocks":
        return ".".join(["input_blocks", str(1 + block * (layers_per_block + 1) + layer), slot, *rest])
    return ".".join(["output_blocks", str(block * (layers_per_block + 1) + layer), slot, *rest])


def resnet_part(rest: list[str]) -> list[str]:
    """A resnet's inner module path in the original UNet's names (norm1 -> in_layers.0, ...)."""
    name = next((n for n in RESNET_PARTS if ".".join(rest) == n or ".".join(rest).startswith(n + ".")), None)
    if name is None:
        return rest
    return RESNET_PARTS[name].split(".") + rest[len(name.split(".")):]


def kohya_name(component: str, module: str, family, layers_per_block: int) -> str:
    """A layer's kohya name (no suffix) in `family`'s layout: its prefix, and its module path with `_` for `.`."""
    if component == family.DENOISER:
        path = sgm_name(module, layers_per_block) if family.KOHYA_SGM_UNET else module
        return "lora_unet_" + path.replace(".", "_")
    if component not in family.KOHYA_TEXT_PREFIXES:
        raise ValueError(f"a {family.NAME} LoRA has no component {component!r}; kohya names "
                         f"{['unet', *family.KOHYA_TEXT_PREFIXES]}")
    path = module if module.startswith("text_model.") else "text_model." + module  # transformers 5 drops it
    return family.KOHYA_TEXT_PREFIXES[component] + path.replace(".", "_")


def pipeline_family(pipe) -> tuple:
    """(family module, the UNet's layers per block) of a loaded pipeline, which the kohya names depend on."""
    return family_of(pipe), denoiser(pipe).config.layers_per_block


def convert_lora(src: str | Path, dst: str | Path, format: str = "kohya", pipe=None) -> Path:
    """Write the LoRA file `src` to `dst` in `format` ("kohya" or "diffusers"); return `dst`.

    `pipe` names the base: SDXL files get kohya's SDXL names; without it, a file is taken to be SD1.5's.
    Going to "diffusers" from kohya names needs `pipe`, whose modules say where each `_` was a `.`.
    """
    src, dst = Path(src), Path(dst)
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {list(FORMATS)}, got {str(format)[:40]!r}")
    check_safetensors(src)
    state, header = read_lora(src)
    layers = lora_layers(state, header)
    family, layers_per_block = pipeline_family(pipe) if pipe is not None else (family_of_index({}), 2)  # SD1.x
    if format == "kohya":
        out, metadata = to_kohya(state, layers, family, layers_per_block)
        metadata.update({k: v for k, v in header.items() if k.startswith("workbench_")})  # the training record
    else:
        if pipe is None:
            raise ValueError("converting to diffusers needs the pipeline the LoRA is for (pipe=): kohya names "
                             "replace every '.' by '_', and only its modules tell them apart")
        out, metadata = to_diffusers(state, layers, pipe, family, layers_per_block), {"format": "pt"}
    from safetensors.torch import save_file
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, str(dst), metadata=metadata)
    return dst


def to_kohya(state: dict, layers: list, family, layers_per_block: int) -> tuple[dict, dict]:
    """kohya tensors (down, up and alpha = s * r per layer) and the header A1111 and ComfyUI read."""
    out, ranks, alphas = {}, set(), set()
    for layer in layers:
        component, _, module = layer.name.partition(".")
        if layer.name.startswith(("lora_unet_", "lora_te")):  # already kohya: keep its name
            name = layer.name
        else:
            name = kohya_name(component, module, family, layers_per_block)
        down, up = state[layer.down_key], state[layer.up_key]
        rank = down.shape[0]
        alpha = layer.scale * rank
        out |= {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up,
                f"{name}.alpha": torch.tensor(alpha, dtype=torch.float32)}
        ranks.add(rank)
        alphas.add(round(alpha, 6))
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(max(ranks)),
                "ss_network_alpha": str(alphas.pop() if len(alphas) == 1 else max(alphas)),
                "ss_base_model_version": family.KOHYA_BASE_VERSION, "format": "pt"}
    return out, metadata


def to_diffusers(state: dict, layers: list, pipe, family, layers_per_block: int) -> dict:
    """diffusers tensors: `<component>.<module>.lora_A/B.weight`, each layer's scale folded into its up factor (B)."""
    by_kohya = {}
    for component in family.LORA_MODULES:
        for module, _ in getattr(pipe, component).named_modules():
            if module and "lora_" not in module and "base_layer" not in module:
                name = kohya_name(component, module, family, layers_per_block)
                by_kohya[name] = f"{component}.{module}"
                if component != family.DENOISER:  # files from tools that name text layers without `text_model_`
                    by_kohya[name.replace("_text_model_", "_", 1)] = f"{component}.{module}"
    out, unknown = {}, []
    for layer in layers:
        name = by_kohya.get(layer.name, layer.name if layer.name.startswith(("unet.", "text_encoder")) else None)
        if name is None:
            unknown.append(layer.name)
            continue
        out[f"{name}.lora_A.weight"] = state[layer.down_key].float()  # peft's names, which diffusers reads for
        out[f"{name}.lora_B.weight"] = state[layer.up_key].float() * layer.scale  # every component
    if unknown:
        raise ValueError(f"{len(unknown)} layers of the file name no module of this {family.NAME} pipeline (first: "
                         f"{unknown[0][:80]}); convert it with the pipeline it was made for")
    return out
