"""Adapters on a pipeline: load a file as a named adapter, switch adapters on and off, blend, fuse, unload.

diffusers keeps adapters by name on each component that carries them (the UNet, text
encoders); `set_adapters(names, weights)` picks which act and how strongly, without reloading.
A blend adds the adapters' updates, each at its own weight:

    W' = W + sum_i  w_i * (alpha_i / r_i) * B_i @ A_i

Fusing (`fuse_lora`) writes that sum into W itself, so each step runs one matrix per layer
instead of W plus the low-rank branch; `unfuse_lora` subtracts it again and the base model
returns within float rounding (W + dW - dW is not always W to the last bit: a pipeline built
from a config, whose fingerprint hashes its tensors, gets a new one). Never change adapter
weights while fused: the unfuse subtracts the update at the weights of that moment, not at
the fused ones. `fused_lora` is a context manager that fuses, and always unfuses on the way out.
"""

from __future__ import annotations

import logging
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from ..spec.lora_blocks import adapter_weights, block_scales
from ..families import denoiser, family_of
from ..models.fingerprint import file_sha256, forget_fingerprint
from .files import check_safetensors, inspect_lora_file, kohya_text_attention_without_out_proj
from .lycoris import load_lycoris


def loaded_adapters(pipe) -> list[str]:
    """The names of every adapter loaded on any component of the pipeline."""
    if not getattr(denoiser(pipe), "peft_config", None):
        return []
    return sorted(set(sum(pipe.get_list_adapters().values(), [])))


@contextmanager
def peft_notes_quiet():
    """Silence peft's notes on what this package does on purpose: a second adapter beside the first, and
    deleting the active adapter (the next one is chosen again by `activate_lora` or a sweep)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        warnings.filterwarnings("ignore", message=r"Adapter .* was active which is now deleted")
        yield


@contextmanager
def loading_quietly():
    """Load LoRA weights without the libraries' log lines, which this package says better itself.

    diffusers logs every mismatched tensor (86 lines for an SD1.5 file on the toy) before it
    raises, and that a UNet-only file has no text-encoder keys; transformers prints a "LOAD
    REPORT" calling a text encoder's own weights missing when only LoRA layers arrive. The
    errors of `load_lora` say a mismatch in one line, and `check_all_layers_loaded` counts
    what really arrived.
    """
    loggers = [logging.getLogger(name) for name in ("diffusers.loaders", "diffusers.utils", "transformers")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with peft_notes_quiet():
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def load_lora(pipe, path: str | Path, adapter_name: str, allow_pickle: bool = False, replace: bool = False) -> dict:
    """Load a LoRA safetensors file (diffusers, peft or kohya/A1111 format, or LyCORIS LoHa/LoKr) as a named adapter.

    Only safetensors files load, checked by suffix and content (`files.check_safetensors`): a
    pickle (.bin/.pt/.ckpt) can run arbitrary code when loaded. `allow_pickle=True` loads
    another file for a Python caller who made it, with a warning; a spec can never ask for it.
    A folder is read through the one .safetensors file it holds. Returns what
    `inspect_lora_file` reads (rank, alpha, format).
    """
    path = lora_file(Path(path))
    use_safetensors = not (allow_pickle and path.suffix.lower() != ".safetensors")
    if use_safetensors:
        check_safetensors(path)
    else:
        warnings.warn(f"loading {path.name} with allow_pickle=True: a pickle can run any code as it loads; "
                      "do this only for a file you made yourself", stacklevel=2)
    if adapter_name in loaded_adapters(pipe):
        if not replace:
            raise ValueError(f"adapter {adapter_name!r} is already loaded; pass replace=True or pick another name")
        with peft_notes_quiet():
            pipe.delete_adapters(adapter_name)
    info = inspect_lora_file(path) if use_safetensors else {"format": "pickle"}
    if info["format"].startswith("LyCORIS"):  # LoHa, LoKr: peft adapters of their own kind
        with loading_quietly():
            info = load_lycoris(pipe, path, adapter_name)
        adapter_sources(pipe)[adapter_name] = file_sha256(path)
        return info
    try:
        with loading_quietly():
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=adapter_name,
                                   use_safetensors=use_safetensors)
    except AttributeError as err:  # peft cannot wrap a LyCORIS-wrapped conv layer in LoRA (it reads `.groups`)
        lycoris = [name for name in loaded_adapters(pipe) if lycoris_adapter(pipe, name)]
        if not lycoris:
            raise
        if adapter_name in loaded_adapters(pipe):
            with peft_notes_quiet():
                pipe.delete_adapters(adapter_name)
        raise ValueError(f"LoRA file {path.name} has conv (LoCon) layers where the LyCORIS adapter {lycoris[0]!r} "
                         f"already sits, which peft cannot stack ({str(err)[:60]}): load {path.name} first, then the "
                         "LyCORIS file.") from None
    except (RuntimeError, ValueError) as err:
        message = describe_mismatch(path, str(err), family_of(pipe).NAME)
        if message is None:
            raise
        raise ValueError(message) from None
    check_all_layers_loaded(pipe, path, adapter_name, info)
    adapter_sources(pipe)[adapter_name] = file_sha256(path)
    return info


def lycoris_adapter(pipe, adapter_name: str) -> bool:
    """Whether `adapter_name` is a LyCORIS (LoHa, LoKr) adapter on the UNet."""
    config = getattr(denoiser(pipe), "peft_config", {}).get(adapter_name)
    return type(config).__name__ in ("LoHaConfig", "LoKrConfig")


def lora_file(path: Path) -> Path:
    """The LoRA file a path names: the file itself, or the one .safetensors file in a folder."""
    if not path.exists():
        raise FileNotFoundError(f"LoRA file {str(path)!r} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".safetensors")
        if len(files) != 1:
            raise ValueError(f"LoRA folder {str(path)!r} holds {len(files)} .safetensors files; name the one to load")
        return files[0]
    return path


def adapter_sources(pipe) -> dict:
    """{adapter name: sha256 of the file it was loaded from}, kept on the pipeline by `load_lora`.

    A sweep that names an adapter reloads it when the name was loaded from another file, so
    the same name in two specs (`r1-s0` of two recipes) never sweeps a stale adapter.
    """
    if not isinstance(getattr(pipe, "_workbench_adapter_sources", None), dict):
        pipe._workbench_adapter_sources = {}
    return pipe._workbench_adapter_sources


def loaded_from(pipe, adapter_name: str) -> str | None:
    """The sha256 of the file `adapter_name` was loaded from; None when it is not loaded, or not by `load_lora`."""
    if adapter_name not in loaded_adapters(pipe):
        return None
    return adapter_sources(pipe).get(adapter_name)


def adapter_layer_counts(pipe, adapter_name: str) -> dict[str, int]:
    """How many layers of each pipeline component (unet, text encoders) carry `adapter_name`."""
    counts = {}
    for name, component in pipe.components.items():
        if isinstance(component, torch.nn.Module):
            found = sum(isinstance(module, BaseTunerLayer) and adapter_name in module.r for module in component.modules())
            if found:
                counts[name] = found
    return counts


def check_all_layers_loaded(pipe, path: Path, adapter_name: str, info: dict) -> None:
    """Refuse a file of which diffusers loaded only part, instead of sweeping a silently weaker adapter.

    diffusers 0.42 reads kohya text-encoder attention keys (`self_attn_q_proj`) through an old
    format that it only recognises when `out_proj` layers are also present; without them it
    skips those layers or fails to guess the format.
    """
    expected = info.get("layers")
    counts = adapter_layer_counts(pipe, adapter_name)
    if not expected or sum(counts.values()) >= expected:
        return
    pipe.delete_adapters(adapter_name)
    found = ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"
    hint = ""
    if kohya_text_attention_without_out_proj(path):
        hint = (" Its text-encoder attention layers come without out_proj layers, a kohya subset that "
                "diffusers 0.42 skips; add zero out_proj layers, or remove the lora_te* keys to use the UNet part.")
    raise ValueError(f"LoRA file {path.name}: diffusers loaded only {sum(counts.values())} of its {expected} "
                     f"layers (by component: {found}), so the adapter would be silently weaker.{hint}")


SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([\d, ]*)\]\) "
                           r"from checkpoint, the shape in current model is torch\.Size\(\[([\d, ]*)\]\)")


def describe_mismatch(path: Path, error: str, family: str) -> str | None:
    """One line for a LoRA made for another base: the first mismatched module, both shapes, the likely cause."""
    found = SIZE_MISMATCH.findall(error)
    if not found:
        return None
    name, theirs, ours = found[0]
    theirs, ours = ([int(n) for n in shape.split(",")] for shape in (theirs, ours))
    module = re.sub(r"\.lora_[AB]\..*", "", name)
    cause = next((f"it was made for a model with {a}-wide attention; this one has {b}"
                  for a, b in zip(theirs, ours) if a != b), "its shapes differ from this model's")
    return (f"LoRA file {path.name} does not fit this base model: {len(found)} of its tensors have other shapes, "
            f"the first in {module} (file {theirs}, model {ours}): {cause}. Use a LoRA trained for this base "
            f"model, or load the base it was made for (this pipeline is {family})")


# ---- switching, blending, fusing ------------------------------------------------------------------

def lora_off(pipe) -> None:
    """Switch every adapter off (the base model); nothing to do on a pipeline without adapters."""
    if getattr(denoiser(pipe), "peft_config", None):
        pipe.disable_lora()


def lora_disabled(unet) -> bool:
    """True when the UNet's LoRA layers are switched off (`disable_lora`), so no adapter acts."""
    return any(getattr(module, "disable_adapters", False) is True for module in unet.modules()
               if isinstance(module, BaseTunerLayer))


def activate_lora(pipe, adapter: str | None, weight: float, blocks: str | None = None) -> None:
    """Switch adapters without reloading: `set_adapters` with a weight (per block with `blocks`), or none."""
    if adapter is None:
        lora_off(pipe)
    elif getattr(denoiser(pipe), "peft_config", None):
        pipe.enable_lora()
        pipe.set_adapters([adapter], adapter_weights=[weight if blocks is None else
                                                      adapter_weights(pipe, adapter, weight, blocks)])


def text_encoder_weight(pipe, adapter: str | None, weight: float, blocks=None) -> float | None:
    """The weight at which `adapter` acts on the text encoders (its `lora_blocks` text-encoder scale included), or
    None when it has no text-encoder layers: what, besides the prompt, changes the prompt embeddings."""
    if adapter is None or not getattr(denoiser(pipe), "peft_config", None):
        return None
    carriers = [component for component, names in pipe.get_list_adapters().items() if adapter in names]
    if carriers == [family_of(pipe).DENOISER] or not carriers:
        return None
    return float(weight) * (1.0 if blocks is None else float(block_scales(blocks)["text_encoder"]))


def check_blend(pipe, weights: dict) -> dict[str, float]:
    """`weights` as {adapter: float}, refusing adapters that are not loaded and weights that are not numbers."""
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f"a blend is a non-empty dict {{adapter name: weight}}, got {weights!r}")
    loaded = loaded_adapters(pipe)
    unknown = [name for name in weights if name not in loaded]
    if unknown:
        raise ValueError(f"adapters {unknown} are not loaded; loaded: {loaded} (load them with wb.load_lora)")
    blend = {}
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) or not np.isfinite(weight):
            raise ValueError(f"the weight of adapter {name!r} must be a finite number, got {weight!r}")
        blend[name] = float(weight)
    return blend


def blend_adapters(pipe, weights: dict) -> None:
    """Switch on several loaded adapters at once, `{name: weight}`; the others are off."""
    blend = check_blend(pipe, weights)
    pipe.enable_lora()
    pipe.set_adapters(list(blend), adapter_weights=list(blend.values()))


def lora_components(pipe) -> list[str]:
    """The pipeline's components that carry LoRA layers (the UNet, text encoders)."""
    return [name for name, component in pipe.components.items() if getattr(component, "peft_config", None)]


@contextmanager
def fused_lora(pipe, weights: dict):
    """Fuse a blend into the weights for the `with` block; unfuse afterwards, even after an error.

        with wb.fused_lora(pipe, {"live": 1.0}):
            images = wb.generate(pipe, prompt, control, seeds=[0, 1])
    """
    blend_adapters(pipe, weights)
    components = fuse(pipe, list(weights))
    try:
        yield pipe
    finally:
        unfuse(pipe, components)


def fuse(pipe, names: list[str]) -> list[str]:
    """Fuse the named, switched-on adapters into the weights of each component that carries LoRA; return those.

    peft writes W + dW through `.data`, which no tensor version counter sees, so the fingerprints kept on
    those components are dropped (`models.fingerprint`): a sweep while fused hashes the fused weights.
    """
    components = lora_components(pipe)
    pipe.fuse_lora(components=components, adapter_names=names)
    for name in components:
        forget_fingerprint(getattr(pipe, name))
    return components


def unfuse(pipe, components: list[str]) -> None:
    """Subtract what `fuse` added (the base returns within float rounding), and drop the kept fingerprints again."""
    pipe.unfuse_lora(components=components)
    for name in components:
        forget_fingerprint(getattr(pipe, name))


# ---- unloading --------------------------------------------------------------------------------------

def unwrap_if_unused(module: torch.nn.Module) -> None:
    """Replace peft's wrappers by the plain layers when no adapter is left on `module`.

    diffusers' `delete_adapters` keeps every target wrapped (`to_q.base_layer.weight`), so a
    model saved after it no longer loads as a plain one.
    """
    from diffusers.utils import recurse_remove_peft_layers
    if getattr(module, "peft_config", None):
        return  # other adapters still use the wrappers
    if any(hasattr(layer, "base_layer") for layer in module.modules()):
        recurse_remove_peft_layers(module)
    if hasattr(module, "peft_config"):
        del module.peft_config
    if hasattr(module, "_hf_peft_config_loaded"):
        module._hf_peft_config_loaded = None


def unload_adapter(pipe, adapter_name: str) -> None:
    """Remove one adapter from every component that carries it; components left with none are plain modules again."""
    if adapter_name in loaded_adapters(pipe):
        with peft_notes_quiet():
            pipe.delete_adapters(adapter_name)
    adapter_sources(pipe).pop(adapter_name, None)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            unwrap_if_unused(component)


def lora_summary(pipe):
    """Per adapter: rank, alpha, scaling, trainable parameters and their share of the UNet."""
    import pandas as pd
    unet = denoiser(pipe)
    factors = ("lora_", "hada_", "lokr_")  # LoRA's and LyCORIS's factor names
    base = sum(p.numel() for n, p in unet.named_parameters() if not any(f in n for f in factors))
    rows = []
    for name, config in getattr(unet, "peft_config", {}).items():
        count = sum(p.numel() for n, p in unet.named_parameters()  # LoRA: to_q.lora_A.<name>.weight, LoHa: ...a.<name>
                    if (f".{name}." in n or n.endswith(f".{name}")) and any(f in n for f in factors))
        alpha = getattr(config, "lora_alpha", getattr(config, "alpha", None))  # LoHa/LoKr: alpha
        scaling = alpha / (config.r ** 0.5 if getattr(config, "use_rslora", False) else config.r)
        rows.append({"adapter": name, "rank": config.r, "alpha": alpha, "scaling": scaling,
                     "parameters": count, "percent_of_unet": 100 * count / base})
    return pd.DataFrame(rows)
