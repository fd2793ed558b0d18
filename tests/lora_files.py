"""LoRA files in the layouts users download, written from a loaded tiny pipeline: no downloads.

kohya's sd-scripts writes one `<prefix><module path with _>` group per layer:
`.lora_down.weight` (A, r x d_in), `.lora_up.weight` (B, d_out x r) and `.alpha`. SD1.5 files
name UNet layers by diffusers' module paths and the text encoder `lora_te_`; SDXL files name
UNet layers by the original (SGM) paths (`input_blocks.4.1...`) and the two text encoders
`lora_te1_` and `lora_te2_`. diffusers' kohya converter reads both; these files test it.
"""

from __future__ import annotations

from pathlib import Path

TEXT_LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")
UNET_LAYERS = ("attn1.to_q", "attn2.to_k", "attn2.to_out.0")
COMPONENTS = ("unet", "text_encoder", "text_encoder_2")  # each draws from its own seeded generator


def sgm_name(diffusers_name: str, layers_per_block: int) -> str:
    """The original (SGM) UNet name kohya's SDXL trainer writes, e.g. down_blocks.1.attentions.0 -> input_blocks.3.1."""
    parts = diffusers_name.split(".")
    if parts[0] == "mid_block":
        return ".".join(["middle_block", "1", *parts[3:]])
    block, layer = int(parts[1]), int(parts[3])
    if parts[0] == "down_blocks":
        return ".".join(["input_blocks", str(1 + block * (layers_per_block + 1) + layer), "1", *parts[4:]])
    return ".".join(["output_blocks", str(block * (layers_per_block + 1) + layer), "1", *parts[4:]])


def kohya_parts(pipe, unet: bool = True, text: bool = True, text_layers=TEXT_LAYERS) -> list:
    """(component, kohya prefix, module, target suffixes, SGM names?) for each part a kohya file of `pipe` holds."""
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    parts = [("unet", "lora_unet_", pipe.unet, UNET_LAYERS, sdxl)] if unet else []
    if text and sdxl:
        parts += [("text_encoder", "lora_te1_", pipe.text_encoder, text_layers, False),
                  ("text_encoder_2", "lora_te2_", pipe.text_encoder_2, text_layers, False)]
    elif text:
        parts += [("text_encoder", "lora_te_", pipe.text_encoder, text_layers, False)]
    return parts


def write_kohya(pipe, path: Path, rank: int = 2, alpha: float = 1.0, unet: bool = True, text: bool = True,
                text_layers=TEXT_LAYERS, seed: int = 0, unet_std: float = 0.1, text_std: float = 0.1) -> dict:
    """A kohya LoRA for `pipe` (its family's layout); returns {(component, module name): B @ A * alpha / r}.

    The UNet part depends only on `seed`, whatever `text` says, so a file with and one without the
    text-encoder part differ only there.
    """
    import torch
    from safetensors.torch import save_file
    state, expected = {}, {}
    for component, prefix, model, targets, sgm in kohya_parts(pipe, unet, text, text_layers):
        generator = torch.Generator().manual_seed(seed * 10 + COMPONENTS.index(component))
        std = unet_std if component == "unet" else text_std
        for name, module in model.named_modules():
            if not name.endswith(targets):
                continue
            out_features, in_features = module.weight.shape
            down = torch.randn(rank, in_features, generator=generator) * std
            up = torch.randn(out_features, rank, generator=generator) * std
            key = prefix + (sgm_name(name, pipe.unet.config.layers_per_block) if sgm else name)
            key = key.replace(".", "_")
            state |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(alpha)}
            expected[component, name] = up @ down * (alpha / rank)
    save_file(state, str(path))
    return expected
