"""LoRA adapters on the UNet's attention projections: train, save with metadata, summarise.

LoRA replaces a frozen weight W by  W' = W + (alpha / r) * B @ A,  where A is (r, in),
B is (out, r), and only A and B are trained. In SD's UNet the attention projections are
`to_q`, `to_k`, `to_v` and `to_out.0` (not `q_proj`/`v_proj`, which are CLIP's names).

Alpha policy: alpha defaults to r, so alpha / r = 1 at every rank and a rank sweep compares
ranks at the same scale (kohya's default alpha = 1 would scale a rank-128 adapter by 1/128).
`use_rslora=True` scales by alpha / sqrt(r) instead (Kalajdzievski 2023).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from tqdm.auto import tqdm

from .families import family_of
from .fingerprint import file_sha256, module_fingerprint

TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
# Enough for the toy model's outlined style to show at weight 1 (about 30 s a rank on 2 CPU
# cores); 600 steps look no better (benchmarks/RESULTS.md, lora_bench).
DEFAULT_STEPS = 300


def training_pairs(dataset) -> tuple[torch.Tensor, list[str]]:
    """(images as (N, 3, H, W) floats in [-1, 1], captions) from a ToyDataset or (images, captions)."""
    if hasattr(dataset, "images") and hasattr(dataset, "captions"):
        images, captions = dataset.images, dataset.captions
    elif isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        images, captions = dataset
    else:
        raise ValueError("dataset must be a ToyDataset or a pair (images, captions)")
    if len(images) == 0:
        raise ValueError("dataset is empty: give at least one (image, caption) pair")
    if len(images) != len(captions):
        raise ValueError(f"dataset has {len(images)} images but {len(captions)} captions; they must pair up")
    if not isinstance(images, torch.Tensor):
        import numpy as np
        from .control import load_image
        images = torch.stack([torch.from_numpy(np.asarray(load_image(i)).copy()).permute(2, 0, 1) for i in images])
    images = images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()
    return images, list(captions)


def smallest_target_dim(unet) -> int:
    """The smallest in/out size among the layers LoRA targets: the largest rank that makes sense."""
    layers = [getattr(m, "base_layer", m) for name, m in unet.named_modules()
              if any(name.endswith("." + t) for t in TARGET_MODULES)]  # peft wraps adapted layers
    return min(min(m.in_features, m.out_features) for m in layers if isinstance(m, torch.nn.Linear))


def check_rank(unet, rank) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"LoRA `rank` must be a positive integer, got {rank!r}")
    limit = smallest_target_dim(unet)
    if rank > limit:
        raise ValueError(f"LoRA `rank` {rank} is larger than the smallest targeted layer ({limit} features); "
                         f"use rank <= {limit}")


def dataset_hash(images: torch.Tensor, captions: list[str]) -> str:
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update("\n".join(captions).encode())
    return digest.hexdigest()[:16]


class TrainingCheckpoint:
    """A LoRA training run's resumable state in one file, used only by a run with the same settings."""

    def __init__(self, path: Path, settings: dict):
        self.path, self.settings = path, settings

    def save(self, step: int, losses: list, trainable: list, optimizer, generator) -> None:
        state = {"settings": self.settings, "step": step, "losses": losses,
                 "weights": [p.detach().clone() for p in trainable], "optimizer": optimizer.state_dict(),
                 "generator": generator.get_state()}
        torch.save(state, self.path.with_suffix(".tmp"))
        self.path.with_suffix(".tmp").replace(self.path)  # a kill mid-save keeps the previous checkpoint

    def restore(self, trainable: list, optimizer, generator) -> tuple[int, list]:
        """Load the checkpoint into the run if it matches; return (first step, losses so far)."""
        if not self.path.exists():
            return 0, []
        state = torch.load(self.path, weights_only=False)
        if state["settings"] != self.settings:
            warnings.warn(f"ignoring {self.path}: it was saved by a run with other settings", stacklevel=3)
            return 0, []
        with torch.no_grad():
            for p, saved in zip(trainable, state["weights"]):
                p.copy_(saved)
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        return state["step"], state["losses"]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def train_lora(pipe, dataset, rank: int, alpha: float | None = None, steps: int = DEFAULT_STEPS, lr: float = 1e-3,
               batch_size: int = 8, seed: int = 0, use_rslora: bool = False, out_dir: str | Path = "runs/lora",
               adapter_name: str | None = None, callback: Callable[[int, float], None] | None = None,
               load: bool = True, checkpoint_every: int = 50) -> Path:
    """Train a LoRA adapter on the UNet with the noise-prediction loss; save it; return the file.

    Args:
        pipe: the pipeline whose UNet is adapted (its weights stay frozen).
        dataset: a ToyDataset, or (images, captions) with images as a uint8 tensor or PIL list.
        rank: r, the inner size of B @ A. alpha: defaults to r (see the module docstring).
        steps, lr, batch_size, seed: training settings; the same seed gives the same adapter.
        out_dir: where `<adapter_name>.safetensors` and `<adapter_name>.losses.csv` go.
        callback: called as callback(step, loss) after each step.
        load: load the result into `pipe` as adapter `adapter_name` (default f"rank{rank}").
        checkpoint_every: save the adapter, optimiser and random state this often to
            `<adapter_name>.checkpoint.pt`; an interrupted run with the same settings resumes
            from it and ends with the same adapter as an uninterrupted one.
    """
    unet, device = pipe.unet, pipe.device
    check_rank(unet, rank)
    images, captions = training_pairs(dataset)
    alpha = float(rank if alpha is None else alpha)
    adapter_name = adapter_name or f"rank{rank}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with torch.no_grad():  # the frozen parts run once: latents and text embeddings
        latents = torch.cat([pipe.vae.encode(images[i:i + 64].to(device, pipe.vae.dtype)).latent_dist.mean
                             for i in range(0, len(images), 64)]) * pipe.vae.config.scaling_factor
        context, extra = text_conditioning(pipe, captions)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=TARGET_MODULES,
                        use_rslora=use_rslora)
    training_name = f"{adapter_name}-training"
    with warnings.catch_warnings():  # peft warns that a second adapter joins the first: that is the plan
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        unet.add_adapter(config, adapter_name=training_name)
    unet.set_adapter(training_name)
    disabled = lora_disabled(unet)
    if disabled:  # a sweep's disable_lora() (an adapter-free row) would keep the new adapter out of the forward
        unet.enable_adapters()
    unet.requires_grad_(False)
    trainable = [p for n, p in unet.named_parameters() if training_name in n]
    for p in trainable:
        p.requires_grad_(True)
        p.data = p.data.float()  # LoRA weights train in fp32 even on a half-precision UNet
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    scheduler = pipe.scheduler
    data_hash, base_fingerprint = dataset_hash(images, captions), module_fingerprint(unet)  # LoRA excluded
    checkpoint = TrainingCheckpoint(out / f"{adapter_name}.checkpoint.pt",
                                    settings=dict(rank=rank, alpha=alpha, use_rslora=use_rslora, steps=steps, lr=lr,
                                                  batch_size=batch_size, seed=seed, data=data_hash,
                                                  base=base_fingerprint))
    start, losses = checkpoint.restore(trainable, optimizer, generator)
    try:
        for step in tqdm(range(start, steps), desc=f"LoRA {adapter_name}", leave=False, initial=start, total=steps,
                         disable=callback is not None):
            idx = torch.randint(0, len(latents), (batch_size,), generator=generator)
            noise = torch.randn(latents[idx].shape, generator=generator).to(device, latents.dtype)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator).to(device)
            noisy = scheduler.add_noise(latents[idx], noise, t)
            loss = F.mse_loss(unet(noisy, t, context[idx], **select_rows(extra, idx)).sample.float(), noise.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                checkpoint.save(step + 1, losses, trainable, optimizer, generator)
            if callback:
                callback(step, loss.item())
    except BaseException:
        remove_adapter(unet, training_name)  # an interrupted run leaves the pipeline as it found it
        if disabled and getattr(unet, "peft_config", None):
            unet.disable_adapters()
        raise
    unet.requires_grad_(False)
    path = out / f"{adapter_name}.safetensors"
    metadata = {"rank": rank, "alpha": alpha, "use_rslora": use_rslora, "steps": steps, "lr": lr, "seed": seed,
                "batch_size": batch_size, "dataset_hash": data_hash, "base_fingerprint": base_fingerprint}
    save_lora(pipe, training_name, config, path, metadata)
    remove_adapter(unet, training_name)
    if disabled and getattr(unet, "peft_config", None):
        unet.disable_adapters()
    checkpoint.remove()
    with open(out / f"{adapter_name}.losses.csv", "w", newline="") as f:
        csv.writer(f).writerows([("step", "loss"), *enumerate(losses)])
    if load:
        pipe.load_lora_weights(str(path), adapter_name=adapter_name)
        adapter_sources(pipe)[adapter_name] = file_sha256(path)
    return path


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
    """Remove one adapter from the pipeline; components left with none are plain modules again."""
    pipe.delete_adapters(adapter_name)
    adapter_sources(pipe).pop(adapter_name, None)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            unwrap_if_unused(component)


def lora_off(pipe) -> None:
    """Switch every adapter off (the base model); nothing to do on a pipeline without adapters."""
    if getattr(pipe.unet, "peft_config", None):
        pipe.disable_lora()


def lora_disabled(unet) -> bool:
    """True when the UNet's LoRA layers are switched off (`disable_lora`), so no adapter acts."""
    return any(getattr(module, "disable_adapters", False) is True for module in unet.modules()
               if hasattr(module, "lora_A"))


def remove_adapter(unet, adapter_name: str) -> None:
    """Delete one adapter from the UNet; when it was the last, the UNet is plain again."""
    unet.delete_adapters(adapter_name)
    unwrap_if_unused(unet)


def text_conditioning(pipe, captions: list[str], chunk: int = 64) -> tuple[torch.Tensor, dict]:
    """Text embeddings of every caption, and the family's extra UNet keywords (SDXL: pooled text, size ids)."""
    family = family_of(pipe)
    tokens = family.tokenize(pipe, captions)
    parts = [family.text_context(pipe, [t[i:i + chunk] for t in tokens]) for i in range(0, len(captions), chunk)]
    return torch.cat([context for context, _ in parts]), concatenate_keywords([extra for _, extra in parts])


def concatenate_keywords(parts: list[dict]) -> dict:
    """Chunks of nested keyword dicts of tensors, joined along the batch dimension."""
    if not parts or not parts[0]:
        return {}
    return {key: concatenate_keywords([p[key] for p in parts]) if isinstance(parts[0][key], dict)
            else torch.cat([p[key] for p in parts]) for key in parts[0]}


def select_rows(keywords: dict, idx: torch.Tensor) -> dict:
    """The rows `idx` of every tensor in a nested keyword dict."""
    return {key: select_rows(value, idx) if isinstance(value, dict) else value[idx] for key, value in keywords.items()}


def save_lora(pipe, adapter_name: str, config: LoraConfig, path: Path, metadata: dict) -> None:
    """Write an adapter in diffusers' LoRA format, with peft's config and our training record.

    Without the config, diffusers reloads alpha as r: an r16/alpha8 adapter would come back
    twice as strong. The training record goes into the same safetensors header.
    """
    from diffusers.utils import convert_state_dict_to_diffusers
    from safetensors.torch import load_file, save_file
    state = get_peft_model_state_dict(pipe.unet, adapter_name=adapter_name)
    state = {k: v.detach().float().contiguous() for k, v in convert_state_dict_to_diffusers(state).items()}
    config_dict = {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.to_dict().items()}
    family_of(pipe).lora_loader().save_lora_weights(path.parent, unet_lora_layers=state, weight_name=path.name,
                                              unet_lora_adapter_metadata=config_dict)
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata() or {})
    header["workbench_training"] = json.dumps(metadata)
    save_file(load_file(str(path)), str(path), metadata=header)


def read_lora_metadata(path: str | Path) -> dict:
    """Rank, alpha and training record stored in a LoRA file's header (empty where absent)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
    info = json.loads(header.get("workbench_training", "{}"))
    if "lora_adapter_metadata" in header:
        peft_config = json.loads(header["lora_adapter_metadata"])
        info.update({k.split(".")[-1]: v for k, v in peft_config.items() if k.split(".")[-1] in ("r", "lora_alpha")})
    return info


def lora_summary(pipe):
    """Per adapter: rank, alpha, scaling, trainable parameters and their share of the UNet."""
    import pandas as pd
    unet = pipe.unet
    base = sum(p.numel() for n, p in unet.named_parameters() if "lora_" not in n)
    rows = []
    for name, config in getattr(unet, "peft_config", {}).items():
        count = sum(p.numel() for n, p in unet.named_parameters() if f".{name}." in n and "lora_" in n)
        scaling = config.lora_alpha / (config.r ** 0.5 if config.use_rslora else config.r)
        rows.append({"adapter": name, "rank": config.r, "alpha": config.lora_alpha, "scaling": scaling,
                     "parameters": count, "percent_of_unet": 100 * count / base})
    return pd.DataFrame(rows)


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")  # UNet, then the text encoders


def loaded_adapters(pipe) -> list[str]:
    return sorted(set(sum(pipe.get_list_adapters().values(), []))) if getattr(pipe.unet, "peft_config", None) else []


def inspect_lora_file(path: str | Path) -> dict:
    """Format, rank and alpha of a LoRA safetensors file, read from its keys and header.

    diffusers/peft files store rank in the shapes of `lora_A`/`lora.down` and alpha in the
    header; kohya/A1111 files (`lora_unet_...lora_down.weight`) store alpha as `.alpha` tensors.
    """
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        downs = [k for k in keys if k.endswith(("lora_down.weight", "lora_A.weight", "lora.down.weight"))]
        ranks = sorted({f.get_slice(k).get_shape()[0] for k in downs})
        alphas = sorted({float(f.get_tensor(k).item()) for k in keys if k.endswith(".alpha")})
    kind = "kohya" if any(k.startswith(KOHYA_PREFIXES) for k in keys) else "diffusers"
    meta = read_lora_metadata(path)
    if not alphas and "lora_alpha" in meta:
        alphas = [float(meta["lora_alpha"])]
    return {"format": kind, "layers": len(downs), "ranks": ranks, "alphas": alphas or None}


def load_lora(pipe, path: str | Path, adapter_name: str, allow_pickle: bool = False, replace: bool = False) -> dict:
    """Load a LoRA file (diffusers or kohya/A1111 safetensors, or a local folder) as a named adapter.

    Pickle files (.bin/.pt/.ckpt) can run arbitrary code when loaded, so they are refused
    unless `allow_pickle=True`. Returns what `inspect_lora_file` reads (rank, alpha, format).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"LoRA file {str(path)!r} does not exist")
    if path.suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise ValueError(f"{path.name} is a pickle file: loading it can run arbitrary code. Convert it to "
                         ".safetensors, or pass allow_pickle=True if you trust its source.")
    if adapter_name in loaded_adapters(pipe):
        if not replace:
            raise ValueError(f"adapter {adapter_name!r} is already loaded; pass replace=True or pick another name")
        pipe.delete_adapters(adapter_name)
    info = inspect_lora_file(path) if path.suffix == ".safetensors" else {"format": "pickle or folder"}
    # diffusers logs every mismatched tensor (86 lines for an SD1.5 file on the toy) before it
    # raises, and transformers prints a "LOAD REPORT" calling a text encoder's own weights
    # missing when only LoRA layers arrive. Both are quiet here: the error below says a
    # mismatch in one line, and check_all_layers_loaded counts what really arrived.
    loggers = [logging.getLogger(name) for name in ("diffusers.loaders", "transformers")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        pipe.load_lora_weights(str(path), adapter_name=adapter_name)
    except (RuntimeError, ValueError) as err:
        message = describe_mismatch(path, str(err), family_of(pipe).NAME)
        if message is None:
            raise
        raise ValueError(message) from None
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    check_all_layers_loaded(pipe, path, adapter_name, info)
    adapter_sources(pipe)[adapter_name] = file_sha256(path) if path.is_file() else None
    return info


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
            found = sum(adapter_name in getattr(module, "lora_A", {}) for module in component.modules())
            if found:
                counts[name] = found
    return counts


def kohya_text_attention_without_out_proj(path: Path) -> bool:
    """Whether a kohya file has text-encoder attention layers but none of their out_proj layers."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        attention = [k for k in f.keys() if k.startswith(KOHYA_PREFIXES[1:]) and "_self_attn_" in k]
    return bool(attention) and not any("_out_proj." in k for k in attention)


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


def lora_delta_spectrum(pipe, adapter: str):
    """Singular values of each layer's update  (alpha / r) * B @ A  for one adapter.

    A rank-r update has at most r non-zero singular values; how fast they fall shows how
    much of the rank the adapter really uses.
    """
    import pandas as pd
    rows = []
    for name, module in pipe.unet.named_modules():
        if not (hasattr(module, "lora_A") and adapter in getattr(module, "lora_A", {})):
            continue
        a, b = module.lora_A[adapter].weight.float(), module.lora_B[adapter].weight.float()
        delta = (b @ a) * module.scaling[adapter]
        for index, value in enumerate(torch.linalg.svdvals(delta.detach()).tolist()[: a.shape[0]]):
            rows.append({"layer": name, "index": index, "singular_value": value})
    if not rows:
        raise ValueError(f"adapter {adapter!r} is not loaded; loaded: {loaded_adapters(pipe)}")
    return pd.DataFrame(rows)


def train_lora_ranks(pipe, dataset, ranks=(1, 2, 4, 8, 16), alpha: float | None = None, steps: int = DEFAULT_STEPS,
                     lr: float = 1e-3, seed: int = 0, cache_dir: str | Path = "runs/lora-cache",
                     callback: Callable[[str, int, float], None] | None = None) -> dict:
    """Train one adapter per rank (cached), load each as `rank<r>`; return {name: file}.

    The cache key hashes the base model, the data, rank, alpha, steps, lr and seed, so a
    re-run with the same settings loads the files instead of training again.
    """
    images, captions = training_pairs(dataset)
    base = module_fingerprint(pipe.unet)
    files = {}
    for rank in ranks:
        name = f"rank{rank}"
        settings = json.dumps([base, dataset_hash(images, captions), rank, alpha, steps, lr, seed])
        folder = Path(cache_dir) / hashlib.sha256(settings.encode()).hexdigest()[:16]
        path = folder / f"{name}.safetensors"
        if not path.exists():
            train_lora(pipe, (images, captions), rank, alpha=alpha, steps=steps, lr=lr, seed=seed, out_dir=folder,
                       adapter_name=name, load=False,
                       callback=(lambda step, loss, n=name: callback(n, step, loss)) if callback else None)
        load_lora(pipe, path, name, replace=True)
        files[name] = path
    return files


def random_lora(pipe, rank: int, path: str | Path, seed: int = 0, std: float = 0.01) -> Path:
    """Save an adapter with random A and B (no training): for speed benchmarks on any base."""
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=float(rank), init_lora_weights=False, target_modules=TARGET_MODULES)
    name = f"random-r{rank}-{seed}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        pipe.unet.add_adapter(config, adapter_name=name)
    with torch.no_grad():
        for param_name, param in pipe.unet.named_parameters():
            if name in param_name:
                param.normal_(0, std)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_lora(pipe, name, config, path, {"rank": rank, "alpha": float(rank), "random": True, "seed": seed})
    remove_adapter(pipe.unet, name)  # unwrapped again when it was the only one
    return path
