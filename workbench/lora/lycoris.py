"""LyCORIS LoHa and LoKr files (kohya's key names, as LyCORIS and A1111 write them), loaded as peft adapters.

Each layer stores factors whose product is the update of one weight, times s = alpha / r:

    LoHa   dW = s * (w1_a @ w1_b) * (w2_a @ w2_b)          a Hadamard (elementwise) product of two low-rank products
    LoKr   dW = s * kron(w1, w2)                          w1 = lokr_w1 or lokr_w1_a @ lokr_w1_b, w2 likewise

Conv layers store the same factors flattened over the kernel, or with Tucker cores (`hada_t1`, `hada_t2`,
`lokr_t2`). r is the inner rank of the low-rank factors; a LoKr layer whose two factors are both full has
none, and LyCORIS saves it with alpha = its rank, so s = 1 (here r is then taken as alpha).

peft has both adapter types (`LoHaConfig`, `LoKrConfig`), and diffusers switches and scales them by name
like LoRA adapters, so a sweep's `lora_weight` scales s. Loading injects the adapter on each component the
file names (UNet, text encoders; linear and conv layers) and puts the file's factors in place as they
are, so any factorisation the file chose is kept.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .files import LYCORIS_KINDS as KINDS, LYCORIS_RANK_FACTORS, lycoris_kind

def lycoris_layers(state: dict, kind: str) -> dict[str, dict]:
    """{layer name: {factor: tensor, "alpha": float}} of a LyCORIS state dict."""
    factors = KINDS[kind][1]
    layers: dict[str, dict] = {}
    for key, tensor in state.items():
        name, _, part = key.rpartition(".")
        if part in factors:
            layers.setdefault(name, {})[part] = tensor
    for name, parts in layers.items():
        alpha = state.get(f"{name}.alpha")
        parts["alpha"] = None if alpha is None else float(alpha.reshape(-1)[0])
    return layers


def layer_rank(parts: dict) -> int | None:
    """The inner rank of a layer's low-rank factors (None for a LoKr layer of full factors)."""
    for factor in LYCORIS_RANK_FACTORS:
        if factor in parts:
            return int(parts[factor].shape[0])
    return None


def rank_and_alpha(parts: dict) -> tuple[int, float]:
    """(r, alpha) of a layer, so that alpha / r is LyCORIS's scale (alpha = r where the file has none)."""
    rank, alpha = layer_rank(parts), parts["alpha"]
    if rank is None:  # full LoKr factors: LyCORIS's scale is 1
        rank = max(1, round(alpha)) if alpha else 1
        return rank, float(rank)
    return rank, float(rank if alpha is None else alpha)


def module_names(pipe) -> dict[str, tuple[str, str]]:
    """kohya layer name -> (component, module path), for every linear and conv layer of the UNet and text encoders."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from .convert import kohya_name, pipeline_family
    family, layers_per_block = pipeline_family(pipe)
    names = {}
    for component in family.LORA_MODULES:
        model = getattr(pipe, component, None)
        if model is None:
            continue
        for path, module in model.named_modules():
            if ".base_layer" in f".{path}." or not path:
                continue  # the layer an adapter wraps goes by the wrapper's path
            base = module.get_base_layer() if isinstance(module, BaseTunerLayer) else module
            if isinstance(base, (torch.nn.Linear, torch.nn.Conv2d)):
                names[kohya_name(component, path, family, layers_per_block)] = (component, path)
    return names


def place_factors(module, adapter: str, parts: dict, factors: tuple, rank: int, alpha: float) -> None:
    """Put a layer's factors from the file into its peft module as they are, with its own r and alpha."""
    base = module.get_base_layer().weight
    for factor in factors:
        slot = getattr(module, factor)
        if factor in parts:
            slot[adapter] = torch.nn.Parameter(parts[factor].to(base.device, base.dtype), requires_grad=False)
        elif adapter in slot:
            del slot[adapter]
    module.r[adapter], module.alpha[adapter], module.scaling[adapter] = rank, alpha, alpha / rank


def load_lycoris(pipe, path: Path, adapter_name: str) -> dict:
    """Load a LyCORIS LoHa or LoKr safetensors file as the adapter `adapter_name`; return its format, layers, ranks,
    alphas. A layer that names no module of this pipeline, or whose factors do not make its weight's shape, refuses
    the whole file in one line (nothing is left loaded)."""
    import peft
    from peft import inject_adapter_in_model
    from safetensors.torch import load_file
    state = load_file(str(path))
    kind = lycoris_kind(state)
    config_class, factors = getattr(peft, KINDS[kind][0]), KINDS[kind][1]
    layers = lycoris_layers(state, kind)
    names = module_names(pipe)
    unknown = sorted(name for name in layers if name not in names)
    if unknown:
        raise ValueError(f"LoRA file {path.name!r} is {kind} but {len(unknown)} of its {len(layers)} layers name no "
                         f"layer of this pipeline (the first: {unknown[0][:80]!r}): it was made for another base model.")
    by_component: dict[str, dict] = {}
    for name, parts in layers.items():
        component, module_path = names[name]
        by_component.setdefault(component, {})[module_path] = parts
    injected = []
    try:
        for component, targets in by_component.items():
            settings = {module_path: rank_and_alpha(parts) for module_path, parts in targets.items()}
            first_rank, first_alpha = next(iter(settings.values()))
            config = config_class(r=first_rank, alpha=first_alpha, target_modules=sorted(targets),
                                  rank_pattern={p: r for p, (r, _) in settings.items()},
                                  alpha_pattern={p: a for p, (_, a) in settings.items()},
                                  use_effective_conv2d=any("hada_t1" in p or "lokr_t2" in p for p in targets.values()))
            model = getattr(pipe, component)
            inject_adapter_in_model(config, model, adapter_name)
            injected.append(model)
            for module_path, parts in targets.items():
                module = model.get_submodule(module_path)
                place_factors(module, adapter_name, parts, factors, *settings[module_path])
                delta = module.get_delta_weight(adapter_name)  # raises where the factors make another shape
                if delta.shape != module.get_base_layer().weight.shape:
                    raise RuntimeError(f"{module_path}: update {list(delta.shape)}")
    except (RuntimeError, ValueError) as err:
        from peft.tuners.tuners_utils import BaseTunerLayer
        for model in injected:  # leave nothing half-loaded
            for module in model.modules():
                if isinstance(module, BaseTunerLayer) and adapter_name in module.r:
                    module.delete_adapter(adapter_name)
            getattr(model, "peft_config", {}).pop(adapter_name, None)
        raise ValueError(f"LoRA file {path.name!r} is {kind} whose factors do not fit this pipeline "
                         f"({str(err).splitlines()[0][:120]}); it was not loaded.") from None
    ranks = sorted({rank_and_alpha(parts)[0] for parts in layers.values()})
    alphas = sorted({rank_and_alpha(parts)[1] for parts in layers.values()})
    return {"format": kind, "layers": len(layers), "ranks": ranks, "alphas": alphas}
