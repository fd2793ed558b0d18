"""A sweep's adapters taking turns in one slot of a compiled UNet: no recompiles when the adapter or its weight moves.

A compiled UNet is traced once and guarded: it compiles again when its modules change (a new adapter adds layers)
and when a float it reads changes (`set_adapters` writes each layer's scale, weight x alpha / r, as a new float).
diffusers' hotswap (`enable_lora_hotswap(target_rank=...)`, then `load_lora_weights(..., hotswap=True)`) keeps one
adapter's layers, pads them to the largest rank, turns the scales into tensors and copies each new adapter's
weights into them. A sweep on a compiled pipeline (`load_pipeline(compile=True)`) loads its adapters into that one
slot in turn, and writes a weight into the scale tensors in place:

    scale = weight x alpha / r     (weight 0: the base model; the layers add zeros)

What cannot take turns this way is loaded by name as usual, and the sweep says why (more compiles): LyCORIS files,
adapters with text-encoder layers (diffusers swaps only the denoiser's), `lora_blocks` (a scale per block), and a
pipeline that already holds named adapters or a slot of a smaller rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from peft.tuners.lora import LoraLayer

from ..families import denoiser, family_of
from ..models.fingerprint import file_sha256
from .adapters import loaded_adapters, loading_quietly
from .files import inspect_lora_file

SLOT = "hotswap"  # the one adapter name a compiled sweep loads; its files take turns in it


@dataclass
class Slot:
    """The slot on one pipeline: which file it holds, its padded rank, and each layer's scale at weight 1."""
    rank: int                                   # the rank its layers were padded to (the largest it takes)
    holds: str | None = None                    # sha256 of the file in it
    layer_scales: list = field(default_factory=list)  # [(scale tensor, its value at weight 1)] of every LoRA layer


def has_text_layers(pipe, path: Path) -> bool:
    """Whether a LoRA file holds layers of the pipeline's text encoders (by `inspect.component_of`'s key names)."""
    from safetensors import safe_open

    from ..models.inspect import component_of
    with safe_open(str(path), framework="pt") as f:
        return any(component_of(key) in family_of(pipe).TEXT_ENCODERS for key in f.keys())


@dataclass(frozen=True)
class SlotFile:
    """One adapter's file, as the slot takes it: its hash, rank (the largest, if layers differ), alpha, layer count."""
    path: Path
    sha: str
    rank: int
    alpha: float
    layers: int


def hotswap_plan(pipe, adapters: dict, blocks: bool) -> tuple[dict | None, str]:
    """({name: SlotFile}, "") when a compiled pipeline's sweep can take these adapters in turns in the slot, else
    (None, why not); (None, "") when the pipeline is not compiled or there are no adapters."""
    from ..models.speed import is_compiled
    if not adapters or not is_compiled(pipe):
        return None, ""
    if blocks:
        return None, "`lora_blocks` sets a scale per block"
    files = {}
    for name, path in adapters.items():
        info = inspect_lora_file(path)
        if info["format"].startswith("LyCORIS"):
            return None, f"{name} is a {info['format']} file"
        if has_text_layers(pipe, Path(path)):
            return None, f"{name} has text-encoder layers (diffusers swaps only the denoiser's)"
        rank = max(info["ranks"])
        files[name] = SlotFile(Path(path), file_sha256(Path(path)), rank,
                               info["alphas"][0] if info["alphas"] else float(rank), info["layers"])
    others = [name for name in loaded_adapters(pipe) if name != SLOT]
    slot = getattr(pipe, "_workbench_slot", None)
    if others:
        return None, f"the pipeline holds adapters by name ({', '.join(others[:3])}); load it again to swap"
    if slot is not None and max(file.rank for file in files.values()) > slot.rank:
        return None, f"its slot was padded to rank {slot.rank}, and an adapter here has a larger one"
    return files, ""


def scale_tensors(pipe) -> list:
    """[(scale tensor, its value now)] of every LoRA layer of the slot: read just after a file goes in (weight 1)."""
    return [(module.scaling[SLOT], float(module.scaling[SLOT])) for module in denoiser(pipe).modules()
            if isinstance(module, LoraLayer) and SLOT in module.scaling]


def open_slot(pipe, files: dict) -> Slot:
    """The pipeline's slot, made the first time with the file of the most layers (a later file may cover fewer, never
    more), padded to the largest rank of `files`: made before a sweep's first image, so no image runs without it."""
    slot = getattr(pipe, "_workbench_slot", None)
    if slot is None:
        first = max(files.values(), key=lambda file: file.layers)
        slot = Slot(rank=max(file.rank for file in files.values()), holds=first.sha)
        # Module.compile traces at the first call: preparing after `.compile()` costs at most one compile, no error
        pipe.enable_lora_hotswap(target_rank=slot.rank, check_compiled="ignore")
        with loading_quietly():
            pipe.load_lora_weights(str(first.path.parent), weight_name=first.path.name, adapter_name=SLOT)
        slot.layer_scales = scale_tensors(pipe)
        object.__setattr__(pipe, "_workbench_slot", slot)
    return slot


def swap_in(pipe, files: dict, adapter: str | None, weight: float) -> None:
    """Make `adapter` at `weight` act through the slot (None: weight 0, the base model): its file swapped in if
    another is there, then every layer's scale tensor set in place to weight x alpha / r."""
    slot = open_slot(pipe, files)
    if adapter is not None and slot.holds != files[adapter].sha:
        path = files[adapter].path
        with loading_quietly():
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=SLOT, hotswap=True)
        slot.holds, slot.layer_scales = files[adapter].sha, scale_tensors(pipe)
    for tensor, at_one in slot.layer_scales:
        tensor.fill_(at_one * (weight if adapter is not None else 0.0))
