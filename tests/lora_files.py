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


# ---- LyCORIS (LoHa, LoKr) ----------------------------------------------------------------------------

LYCORIS_UNET = ("attn1.to_q", "attn2.to_k", "attn2.to_out.0", "resnets.0.conv1")  # linear and 3x3 conv layers
LYCORIS_TEXT = ("self_attn.q_proj", "mlp.fc1")


def original_unet_name(pipe, module: str) -> str:
    """A UNet module's name in kohya's file: diffusers' path (SD1.x), or the original UNet's (SDXL), by the
    single-file writer's own table, which diffusers' single-file reader checks (tests/single_files.py)."""
    from single_files import RESNET, rename_part, unet_block_names
    if getattr(pipe, "text_encoder_2", None) is None:
        return module
    names = unet_block_names(pipe.unet.config)
    prefix = max((p for p in names if module.startswith(p + ".")), key=len)
    rest = module[len(prefix) + 1:]
    return f"{names[prefix]}.{rename_part(rest, RESNET) if '.resnets.' in '.' + prefix + '.' else rest}"


def lycoris_targets(pipe, text: bool = True):
    """(component, kohya key, module path, module) for each layer a LyCORIS test file covers."""
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    parts = [("unet", "lora_unet_", pipe.unet, LYCORIS_UNET)]
    if text:
        parts += ([("text_encoder", "lora_te1_", pipe.text_encoder, LYCORIS_TEXT),
                   ("text_encoder_2", "lora_te2_", pipe.text_encoder_2, LYCORIS_TEXT)] if sdxl
                  else [("text_encoder", "lora_te_", pipe.text_encoder, LYCORIS_TEXT)])
    for component, prefix, model, targets in parts:
        for name, module in model.named_modules():
            if name.endswith(targets):
                path = (original_unet_name(pipe, name) if component == "unet"
                        else name if name.startswith("text_model.") else "text_model." + name)
                yield component, prefix + path.replace(".", "_"), name, module


def write_lycoris(pipe, path: Path, kind: str, rank: int = 2, alpha: float = 1.0, seed: int = 0, text: bool = True,
                  std: float = 0.3) -> dict:
    """A LyCORIS file for `pipe` in kohya's names; returns {(component, module path): dW} by LyCORIS's formulas:

        LoHa  dW = (w1_a @ w1_b) * (w2_a @ w2_b) * alpha / r        (conv: flattened over the kernel)
        LoKr  dW = kron(w1, w2) * alpha / r    (w1 full 2x2 or less; w2 = w2_a @ w2_b, a conv's w2 full, alpha = r)
    """
    import torch
    from safetensors.torch import save_file
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * std

    state, expected = {}, {}
    for component, key, name, module in lycoris_targets(pipe, text):
        shape = tuple(module.weight.shape)
        out_dim, in_dim = shape[0], shape[1]
        flat_in = int(torch.tensor(shape[1:]).prod())
        if kind == "loha":
            w1a, w1b, w2a, w2b = rand(out_dim, rank), rand(rank, flat_in), rand(out_dim, rank), rand(rank, flat_in)
            state |= {f"{key}.hada_w1_a": w1a, f"{key}.hada_w1_b": w1b, f"{key}.hada_w2_a": w2a,
                      f"{key}.hada_w2_b": w2b, f"{key}.alpha": torch.tensor(alpha)}
            delta = ((w1a @ w1b) * (w2a @ w2b) * (alpha / rank)).reshape(shape)
        else:
            rows, cols = (2 if out_dim % 2 == 0 else 1), (2 if in_dim % 2 == 0 else 1)
            w1 = rand(rows, cols)
            if len(shape) == 4:  # conv: a full 4-D w2, saved with alpha = r (LyCORIS's scale 1)
                w2 = rand(out_dim // rows, in_dim // cols, *shape[2:])
                state |= {f"{key}.lokr_w1": w1, f"{key}.lokr_w2": w2, f"{key}.alpha": torch.tensor(float(rank))}
                delta = torch.kron(w1[:, :, None, None], w2)
            else:
                w2a, w2b = rand(out_dim // rows, rank), rand(rank, in_dim // cols)
                state |= {f"{key}.lokr_w1": w1, f"{key}.lokr_w2_a": w2a, f"{key}.lokr_w2_b": w2b,
                          f"{key}.alpha": torch.tensor(alpha)}
                delta = torch.kron(w1, w2a @ w2b) * (alpha / rank)
        expected[component, name] = delta.reshape(shape)
    save_file(state, str(path))
    return expected


def merged_copy(pipe, deltas: dict, weight: float = 1.0):
    """A copy of `pipe` with each delta added into its weight at `weight`: the update by hand (into the base layer
    where an adapter wraps it; switch adapters off before copying)."""
    import copy

    import torch
    merged = copy.deepcopy(pipe)
    with torch.no_grad():
        for (component, name), delta in deltas.items():
            module = getattr(merged, component).get_submodule(name)
            module = module.get_base_layer() if hasattr(module, "get_base_layer") else module
            module.weight += weight * delta.to(module.weight.dtype)
    return merged


def write_locon(pipe, path: Path, rank: int = 2, alpha: float = 1.0, seed: int = 0, std: float = 0.3) -> dict:
    """A kohya LoCon file: LoRA on conv layers too (a 3x3 `lora_down`, a 1x1 `lora_up`) beside linear ones; returns
    {(component, module path): dW}, dW = up @ down * alpha / r flattened over the kernel."""
    import torch
    from safetensors.torch import save_file
    generator = torch.Generator().manual_seed(seed)
    state, expected = {}, {}
    for component, key, name, module in lycoris_targets(pipe, text=False):
        shape = tuple(module.weight.shape)
        kernel = shape[2:]
        down = torch.randn(rank, shape[1], *kernel, generator=generator) * std
        up = torch.randn(shape[0], rank, *([1, 1] if kernel else []), generator=generator) * std
        state |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(alpha)}
        expected[component, name] = (up.flatten(1) @ down.flatten(1) * (alpha / rank)).reshape(shape)
    save_file(state, str(path))
    return expected


def write_sd15_kohya_lora(path: Path, rank: int = 4, alpha: float = 1.0, seed: int = 0) -> dict[str, int]:
    """A random kohya/A1111 SD1.5 LoRA (fp16): UNet attention and every text-encoder layer, as a third party's.

    Returns the number of layers per component (128 UNet, 72 text encoder). Names and shapes
    come from models built on the meta device, so nothing full-size is allocated.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from workbench.families import sd15
    with torch.device("meta"):  # names and shapes only: nothing is allocated
        unet = sd15.denoiser_class()(**sd15.load_config("unet"))
        text_encoder = CLIPTextModel(CLIPTextConfig(**sd15.load_config("text_encoder")))
    generator = torch.Generator().manual_seed(seed)
    state, counts = {}, {"unet": 0, "text_encoder": 0}
    targets = [("unet", "lora_unet_", unet, ("to_q", "to_k", "to_v", "to_out.0")),
               ("text_encoder", "lora_te_", text_encoder,
                ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"))]
    for component, prefix, model, suffixes in targets:
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(suffixes):
                key = (prefix + name).replace(".", "_")
                out_features, in_features = module.weight.shape
                state[f"{key}.lora_down.weight"] = torch.randn(rank, in_features, generator=generator) * 0.05
                state[f"{key}.lora_up.weight"] = torch.randn(out_features, rank, generator=generator) * 0.05
                state[f"{key}.alpha"] = torch.tensor(alpha)
                counts[component] += 1
    save_file({k: v.half() for k, v in state.items()}, str(path))
    return counts
