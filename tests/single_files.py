"""Single-file checkpoints in the layouts model sites publish, written from a diffusers pipeline (no downloads).

A1111 (the original Stable Diffusion code's names) keeps the whole model in one file:

    model.diffusion_model.*           the UNet (input_blocks / middle_block / output_blocks)
    first_stage_model.*               the VAE (encoder.down.N.block.M, mid.attn_1, ...)
    cond_stage_model.transformer.*    SD1.x's CLIP text encoder, under its own names
    conditioner.embedders.0.transformer.* and conditioner.embedders.1.model.*   SDXL's two (the second OpenCLIP's)

and lllyasviel's ControlNet files name the ControlNet the same way, with its zero convolutions
(`zero_convs.N.0`), `middle_block_out.0` and the hint encoder (`input_hint_block.N`).

These writers rename a diffusers state dict the other way round; the tests check them against the
reference reader (diffusers' `from_single_file`), which must give back every tensor unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
          "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
OPEN_CLIP = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}


def rename_part(rest: str, table: dict) -> str:
    """`rest` with its leading module name renamed by `table` (longest names first)."""
    for old in sorted(table, key=len, reverse=True):
        if rest == old or rest.startswith(old + "."):
            return table[old] + rest[len(old):]
    return rest


def unet_block_names(config) -> dict[str, str]:
    """diffusers UNet/ControlNet module prefix -> LDM prefix, from the config's block layout."""
    layers, levels = config["layers_per_block"], len(config["block_out_channels"])
    names = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
             "add_embedding.linear_2": "label_emb.0.2", "conv_norm_out": "out.0", "conv_out": "out.2",
             "mid_block.resnets.0": "middle_block.0", "mid_block.attentions.0": "middle_block.1",
             "mid_block.resnets.1": "middle_block.2"}
    for level in range(levels):
        for layer in range(layers):
            index = 1 + level * (layers + 1) + layer
            names[f"down_blocks.{level}.resnets.{layer}"] = f"input_blocks.{index}.0"
            names[f"down_blocks.{level}.attentions.{layer}"] = f"input_blocks.{index}.1"
        names[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{(level + 1) * (layers + 1)}.0.op"
        has_attention = "CrossAttn" in config.get("up_block_types", ["CrossAttn"] * levels)[level]
        for layer in range(layers + 1):
            index = level * (layers + 1) + layer
            names[f"up_blocks.{level}.resnets.{layer}"] = f"output_blocks.{index}.0"
            names[f"up_blocks.{level}.attentions.{layer}"] = f"output_blocks.{index}.1"
        names[f"up_blocks.{level}.upsamplers.0"] = f"output_blocks.{level * (layers + 1) + layers}.{2 if has_attention else 1}"
    return names


def ldm_unet(state: dict, config) -> dict:
    """A diffusers UNet or ControlNet state dict under LDM names (resnet parts renamed inside their blocks)."""
    names, out = unet_block_names(config), {}
    for key, tensor in state.items():
        prefix = max((p for p in names if key.startswith(p + ".")), key=len, default=None)
        if prefix is None:
            out[key] = tensor
            continue
        rest = key[len(prefix) + 1:]
        if ".resnets." in "." + prefix + ".":
            rest = rename_part(rest, RESNET)
        out[f"{names[prefix]}.{rest}"] = tensor
    return out


def ldm_vae(state: dict, config) -> dict:
    """A diffusers VAE state dict under LDM names; attention projections become 1x1 convolutions."""
    levels, out = len(config["block_out_channels"]), {}
    for key, tensor in state.items():
        new = key.replace("conv_norm_out", "norm_out")
        for part in ("encoder", "decoder"):
            new = new.replace(f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.")
            for i in range(2):
                new = new.replace(f"{part}.mid_block.resnets.{i}.", f"{part}.mid.block_{i + 1}.")
        for level in range(levels):
            new = new.replace(f"encoder.down_blocks.{level}.resnets.", f"encoder.down.{level}.block.")
            new = new.replace(f"encoder.down_blocks.{level}.downsamplers.0.", f"encoder.down.{level}.downsample.")
            new = new.replace(f"decoder.up_blocks.{level}.resnets.", f"decoder.up.{levels - 1 - level}.block.")
            new = new.replace(f"decoder.up_blocks.{level}.upsamplers.0.", f"decoder.up.{levels - 1 - level}.upsample.")
        new = new.replace("conv_shortcut", "nin_shortcut")
        if ".attn_1." in new:
            head, rest = new.split(".attn_1.")
            new = f"{head}.attn_1.{rename_part(rest, VAE_ATTENTION)}"
            if tensor.dim() == 2:
                tensor = tensor[:, :, None, None]
        out[new] = tensor
    return out


def ldm_open_clip(state: dict) -> dict:
    """SDXL's second text encoder (CLIPTextModelWithProjection) under OpenCLIP's names: q, k, v in one matrix."""
    out, parts = {}, {}
    for key, tensor in state.items():
        if key == "text_projection.weight":
            out["text_projection"] = tensor.T.contiguous()
        elif key == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = tensor
        elif key == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = tensor
        elif key.startswith("text_model.final_layer_norm."):
            out["ln_final." + key.rsplit(".", 1)[1]] = tensor
        elif key.startswith("text_model.encoder.layers."):
            index, rest = key.removeprefix("text_model.encoder.layers.").split(".", 1)
            block = f"transformer.resblocks.{index}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                kind = rest.rsplit(".", 1)[1]
                parts.setdefault((block, kind), {})[rest.split(".")[1]] = tensor
            else:
                out[block + rename_part(rest, OPEN_CLIP)] = tensor
    for (block, kind), qkv in parts.items():
        out[f"{block}attn.in_proj_{kind}"] = torch.cat([qkv["q_proj"], qkv["k_proj"], qkv["v_proj"]])
    return out


def text_model_state(model) -> dict:
    """A CLIP text model's state dict under its published names (`text_model.` first, as its files have them;
    transformers 5 leaves that prefix out of `state_dict()`)."""
    return {k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}": v
            for k, v in model.state_dict().items()}


def a1111_state(pipe) -> dict:
    """A whole pipeline (SD1.x or SDXL) as one A1111 state dict."""
    state = {f"model.diffusion_model.{k}": v for k, v in ldm_unet(pipe.unet.state_dict(), pipe.unet.config).items()}
    state.update({f"first_stage_model.{k}": v for k, v in ldm_vae(pipe.vae.state_dict(), pipe.vae.config).items()})
    if getattr(pipe, "text_encoder_2", None) is not None:
        state.update({f"conditioner.embedders.0.transformer.{k}": v for k, v in text_model_state(pipe.text_encoder).items()})
        state.update({f"conditioner.embedders.1.model.{k}": v for k, v in ldm_open_clip(
            text_model_state(pipe.text_encoder_2)).items()})
    else:
        state.update({f"cond_stage_model.transformer.{k}": v for k, v in text_model_state(pipe.text_encoder).items()})
    return state


def ldm_controlnet(controlnet) -> dict:
    """A diffusers ControlNet as lllyasviel's file names it (`control_model.` prefix, as A1111's files carry)."""
    state = controlnet.state_dict()
    hint_blocks = len([k for k in state if k.startswith("controlnet_cond_embedding.blocks.") and k.endswith(".weight")])
    names = {"controlnet_cond_embedding.conv_in": "input_hint_block.0",
             "controlnet_cond_embedding.conv_out": f"input_hint_block.{2 * (hint_blocks + 1)}",
             "controlnet_mid_block": "middle_block_out.0",
             **{f"controlnet_cond_embedding.blocks.{i}": f"input_hint_block.{2 * (i + 1)}" for i in range(hint_blocks)},
             **{f"controlnet_down_blocks.{i}": f"zero_convs.{i}.0" for i in range(64)}}
    renamed = {}
    for key, tensor in state.items():
        module, kind = key.rsplit(".", 1)
        renamed[f"{names[module]}.{kind}" if module in names else key] = tensor
    return {f"control_model.{k}": v for k, v in ldm_unet(renamed, controlnet.config).items()}


def save_single_file(state: dict, path: Path, dtype=torch.float16) -> Path:
    """Write a state dict as one safetensors file (fp16 by default, as model sites publish them)."""
    from safetensors.torch import save_file
    save_file({k: v.detach().to(dtype).contiguous() for k, v in state.items()}, str(path))
    return Path(path)


def tiny_hint_controlnet(pipe, seed: int = 0):
    """A tiny ControlNet whose hint encoder has the published depth (4 levels, 8 convolutions), which is what
    diffusers' single-file reader expects (it finds the last convolution at `input_hint_block.14`)."""
    from diffusers import ControlNetModel

    from workbench.families.builders import wake_zero_convs
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(4, 8, 8, 16))
    wake_zero_convs(net, seed=seed)
    return net
