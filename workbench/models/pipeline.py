"""Load a Stable Diffusion + ControlNet pipeline from a hub id, a local folder or the embedded toy model.

Loading takes three steps:
  1. `resolve_model` turns a name into a source: embedded, local folder or hub id.
  2. `check_model_folder` verifies a folder is a diffusers model with readable weights.
  3. `load_pipeline` loads the ControlNet, then the base pipeline around it, on a device.
A model that is neither on disk nor reachable raises `ModelNotAvailableError`,
which says what to do, instead of a traceback from deep inside the hub client.
"""

from __future__ import annotations

from contextlib import contextmanager

import difflib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

from .devices import pick_device, pick_dtype
from .single_file import SINGLE_FILE_SUFFIXES, is_single_file, load_checkpoint_pipeline, load_controlnet_file
from ..errors import ModelNotAvailableError, model_not_available, models_not_available
from ..families import (CONTROLNET_PRESETS, DEFAULT_MODEL, DOWNLOAD_GB, EMBEDDED, PRESETS, RENAMED_IDS,  # noqa: F401
                       TINY_PRESETS, controlnet_from_denoiser, family_for, family_of_index, preset_family,
                       trained_size)
from ..families.sd15 import SD15_CANNY_ID, SD15_ID  # noqa: F401 (re-exported, as before)
from ..spec.samplers import SCHEDULERS, canonical_sampler, has_karras_twin
from .speed import compile_pipeline, optimize_for_gpu

ASSETS = Path(__file__).parents[1] / "assets"  # the embedded models (families' EMBEDDED and CONTROLNET_PRESETS)
TOY_DIR = ASSETS / EMBEDDED[DEFAULT_MODEL][0]
HUB_ID_PATTERN = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: kind is "embedded", "config" (random weights from configs), "local" (a folder),
    "file" (a single-file checkpoint, `single_file.py`) or "hub"."""
    kind: str
    location: str  # a folder for embedded/local, a hub id for hub, the preset name for config


def resolve_model(name: str, role: str = "base") -> ModelSource:
    """Turn a model name into a source; `role` is "base" or "controlnet" (for messages and folders)."""
    if not isinstance(name, (str, os.PathLike)) or str(name).strip() == "":
        raise ValueError(f"`{role}` must be a hub id, a local folder or one of {sorted(PRESETS)}, "
                         f"got {name!r} ({type(name).__name__})")
    name = os.fspath(name)
    if role == "controlnet" and name in CONTROLNET_PRESETS:
        return ModelSource("embedded", str(ASSETS / CONTROLNET_PRESETS[name]))
    if name in PRESETS:
        if name in TINY_PRESETS:
            return ModelSource("config", name)
        if name in EMBEDDED:
            return ModelSource("embedded", str(ASSETS / EMBEDDED[name][0 if role == "base" else 1]))
        return resolve_model(PRESETS[name][0 if role == "base" else 1], role)
    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local:
        if is_single_file(path):
            return ModelSource("file", str(path))
        if not path.exists():
            raise FileNotFoundError(f"`{role}` {name!r} does not exist. Pass a folder in diffusers layout, a "
                                    f".safetensors checkpoint, a hub id, or one of {sorted(PRESETS)}.")
        if not path.is_dir():
            raise FileNotFoundError(f"`{role}` {name!r} is neither a folder nor a single-file checkpoint "
                                    f"({', '.join(SINGLE_FILE_SUFFIXES)}). Pass a folder in diffusers layout (one "
                                    f"written by save_pretrained), a .safetensors file, a hub id, or one of "
                                    f"{sorted(PRESETS)}.")
        return ModelSource("local", str(path))
    if not HUB_ID_PATTERN.match(name):
        close = difflib.get_close_matches(name, [*PRESETS, *(CONTROLNET_PRESETS if role == "controlnet" else ())], n=1)
        what = "model" if role == "base" else role  # a spec's key, and what load_pipeline's `base` stands for
        raise ValueError(f"{what} {name[:80]!r} is neither a preset {sorted(PRESETS)}, a folder on disk, "
                         "nor a hub id of the form 'owner/name'" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if name in RENAMED_IDS:
        warnings.warn(f"{name!r} was removed from the Hugging Face hub; using its mirror "
                      f"{RENAMED_IDS[name]!r}, which holds the same weights.", stacklevel=3)
        name = RENAMED_IDS[name]
    return ModelSource("hub", name)


def check_model_folder(folder: str | Path, role: str = "base") -> None:
    """Raise a clear error unless `folder` holds a diffusers model whose weight files open."""
    folder = Path(folder)
    marker = "model_index.json" if role == "base" else "config.json"
    if not (folder / marker).is_file():
        hint = ("run `python -m workbench.toy.train` to build the embedded toy model, or "
                if folder == TOY_DIR or folder == TOY_DIR / "controlnet" else "")
        raise FileNotFoundError(f"{folder} is not a diffusers {role} folder: it has no {marker}. "
                                f"Pass a folder written by save_pretrained, {hint}use load_pipeline('tiny').")
    model_folders = [folder] if role == "controlnet" else [
        folder / name for name in json.loads((folder / marker).read_text())
        if (folder / name / "config.json").is_file()]  # unet, vae, text_encoder, controlnet...
    for model_folder in model_folders:
        if not any(any(model_folder.glob(pattern)) for pattern in ("*.safetensors", "*.bin")):
            raise FileNotFoundError(f"{model_folder} has a config.json but no weight file "
                                    "(diffusion_pytorch_model.safetensors or model.safetensors). "
                                    "Restore it (reinstall workbench, or download the model again).")
    from safetensors import safe_open
    for weights in sorted(folder.rglob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt") as f:
                f.keys()
        except Exception as err:  # safetensors raises its own error types for each kind of damage
            raise ValueError(f"weight file {weights} is damaged or not a safetensors file ({err}). "
                             "Restore it (reinstall workbench, or download the model again).") from None


def hub_is_offline() -> bool:
    """True when the hub client is told not to connect (HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


@contextmanager
def quiet_progress_bars():
    """No "Loading pipeline components" or "Loading weights" bars in a notebook's output while a model loads."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging
    shown = [(lib, lib.is_progress_bar_enabled()) for lib in (diffusers_logging, transformers_logging)]
    for lib, _ in shown:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, enabled in shown:
            if enabled:
                lib.enable_progress_bar()


def _from_pretrained(cls, source: ModelSource, role: str, **kwargs):
    """Call cls.from_pretrained on a checked folder, or on a hub id: cache first, then network."""
    with quiet_progress_bars(), warnings.catch_warnings():
        # diffusers still passes an argument the hub client deprecated; the warning says nothing to a user
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks")
        return _from_pretrained_loud(cls, source, role, **kwargs)


def missing_models(sources: list[tuple[ModelSource, str]], reason: str) -> ModelNotAvailableError:
    """One error naming every hub model of a load (source, role) that is not in the cache, with its size."""
    from ..families.hubcache import cached_snapshot
    missing = [(source.location, f"{role} model", DOWNLOAD_GB.get(source.location)) for source, role in sources
               if source.kind == "hub" and cached_snapshot(source.location) is None]
    return models_not_available(missing, reason)


VARIANT = "fp16"  # the half-precision copy model repositories publish beside their fp32 weights (*.fp16.safetensors)


def weights_variant(folder: Path | None, dtype) -> str | None:
    """"fp16" where the fp16 variant files are the ones to read, else None (the plain files).

    A folder or cached snapshot that holds only variant files can be read only so; one that holds both
    gives the variant to a half-precision load (half the bytes to read). A download (`folder` None) in
    half precision asks for the variant: SD1.5 is then about 2 GB instead of 4, SDXL 7 instead of 14.
    """
    half = dtype in (torch.float16, torch.bfloat16)
    if folder is None:
        return VARIANT if half else None
    names = [path.name for path in Path(folder).rglob("*.safetensors")]
    variants = [name for name in names if name.endswith(f".{VARIANT}.safetensors")]
    return VARIANT if variants and (half or len(variants) == len(names)) else None


def _from_pretrained_loud(cls, source: ModelSource, role: str, **kwargs):
    dtype = kwargs.get("dtype")
    if source.kind in ("embedded", "local"):
        check_model_folder(source.location, role)
        variant = weights_variant(Path(source.location), dtype)
        return cls.from_pretrained(source.location, local_files_only=True, variant=variant, **kwargs)
    from ..families.hubcache import cached_snapshot
    snapshot = cached_snapshot(source.location)
    try:
        variant = weights_variant(snapshot, dtype) if snapshot else None
        return cls.from_pretrained(source.location, local_files_only=True, variant=variant, **kwargs)
    except OSError:
        if hub_is_offline():
            raise model_not_available(source.location, f"{role} model", "HF_HUB_OFFLINE=1 is set") from None
    download = weights_variant(None, dtype)  # half precision downloads the fp16 files
    try:
        try:
            return cls.from_pretrained(source.location, variant=download, **kwargs)
        except (OSError, ValueError):  # a repository without the fp16 variant: its plain files
            if download is None:
                raise
            return cls.from_pretrained(source.location, **kwargs)
    except OSError as err:  # connection errors and missing repos both arrive as OSError subclasses
        raise model_not_available(source.location, f"{role} model", type(err).__name__) from None


def read_model_index(source: ModelSource) -> dict:
    """A model's model_index.json (which says its family): from the folder, the hub cache, or the hub."""
    if source.kind in ("embedded", "local"):
        path = Path(source.location) / "model_index.json"
    else:
        from huggingface_hub import hf_hub_download
        try:
            path = hf_hub_download(source.location, "model_index.json", local_files_only=hub_is_offline())
        except Exception:  # not cached and unreachable: the load below raises the clear error
            return {}
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def model_family(base: str, source: ModelSource):
    """The family module of a base model: by preset name, else from its model_index.json."""
    return preset_family(base) or family_of_index(read_model_index(source))


def load_pipeline(base: str = DEFAULT_MODEL, controlnet: str | list[str] | None = None, device: str = "auto",
                  dtype: str | torch.dtype = "auto", compile: bool = False, config: str | None = None,
                  prediction_type: str = "epsilon", allow_pickle: bool = False, memory_gb: float | None = None):
    """Load a Stable Diffusion (1.5 or XL) pipeline with a Canny ControlNet, ready on `device`.

    The family (SD1.5 or SDXL, `workbench.families`) comes from the preset, the folder's
    model_index.json, or a single file's keys: an SDXL folder (two text encoders) loads as SDXL.

    Args:
        base: a hub id (e.g. "stable-diffusion-v1-5/stable-diffusion-v1-5"), a local folder in
            diffusers layout, a single-file checkpoint (`models/single_file.py`: A1111's
            .safetensors layout), or a preset: "toy" (embedded, trained by this project), "sd15"
            (SD1.5 + lllyasviel/sd-controlnet-canny), "sdxl" (SDXL base 1.0 +
            diffusers/controlnet-canny-sdxl-1.0), "tiny" and "tiny-sdxl" (random weights, for tests).
        controlnet: the same kinds of name, or "toy-mask" (the toy's silhouette ControlNet); None
            takes the preset's ControlNet, or the base folder's own `controlnet/` if it has one.
            A list loads one ControlNet per control unit (diffusers' MultiControlNetModel). A single
            file's default is its family's Canny ControlNet (the "sd15"/"sdxl" preset's).
        device: "auto" (cuda > mps > cpu), or a torch device string.
        dtype: "auto" (bf16/fp16 on GPUs, fp32 on CPU), "fp32", "fp16" or "bf16".
        compile: torch.compile the UNet and ControlNet; the first batch of each shape then
            takes longer (warm-up). On CUDA the other GPU settings of `workbench.speed`
            (SDPA, channels_last, an fp32 VAE decode under fp16) are always applied.
        config: for single files, a folder or hub id in diffusers layout whose configs replace the
            family's bundled ones (a fine-tune of another architecture; a tiny model in tests).
        prediction_type: for single files, "epsilon" (default) or "v_prediction": the file does not say.
        allow_pickle: load .ckpt/.pt pickles, which can run code as they load (only files you trust).
        memory_gb: on a GPU, plan for a card of this much memory instead of this card's total
            (`memory_plan.py`: offload, VAE slicing and tiling, the largest batch).
    """
    device = pick_device(device)
    dtype = pick_dtype(dtype, device)
    base_source = resolve_model(base, "base")
    if controlnet is None:
        controlnet = base if base in PRESETS else None
        if base_source.kind == "file":  # one file holds no ControlNet: its family's Canny one
            from ..families import checkpoint_family
            family = checkpoint_family(base_source.location)
            controlnet = family.PRESETS[family.DEFAULT_PROFILE][1] if family else None
    controlnets = list(controlnet) if isinstance(controlnet, (list, tuple)) else [controlnet]
    if not controlnets:
        raise ValueError("`controlnet` is an empty list; give one ControlNet name per control unit")
    if base_source.kind == "config" or any(c in TINY_PRESETS for c in controlnets):
        if not (base_source.kind == "config" and all(c == base for c in controlnets)):
            raise ValueError(f"the {base!r} test model only pairs with itself; got base={base!r}, "
                             f"controlnet={controlnet!r}")
        pipe = preset_family(base).build_tiny()  # built in fp32
        if len(controlnets) > 1:
            pipe.controlnet = MultiControlNetModel([pipe.controlnet, *(tiny_controlnet(pipe, seed) for seed in
                                                                     range(1, len(controlnets)))])
        if dtype != torch.float32:
            pipe.to(dtype=dtype)
    else:
        kwargs = {"dtype": dtype}
        net_sources = [resolve_model(name, "controlnet") for name in controlnets if name is not None]
        controlnet_class = family_for(base).controlnet_class()  # the base's family's ControlNets (read from disk)
        try:
            if net_sources:  # several ControlNets: one MultiControlNetModel holds them
                loaded = [load_controlnet_file(source.location, dtype, config, allow_pickle) if source.kind == "file"
                          else _from_pretrained(controlnet_class, source, "controlnet", dtype=dtype)
                          for source in net_sources]
                kwargs["controlnet"] = loaded[0] if len(loaded) == 1 else MultiControlNetModel(loaded)
            if base_source.kind == "file":
                pipe = load_checkpoint_pipeline(base_source.location, kwargs.get("controlnet"), dtype, config,
                                                prediction_type, allow_pickle)
            else:
                family = model_family(base, base_source)  # its LOAD_KWARGS turn off the safety checker, the watermark
                pipe = _from_pretrained(family.pipeline_class(), base_source, "base", **family.LOAD_KWARGS, **kwargs)
        except ModelNotAvailableError as err:  # name everything missing at once, not one model per attempt
            raise missing_models([(base_source, "base"), *((s, "controlnet") for s in net_sources)],
                                 err.reason) from None
    pipe.set_progress_bar_config(disable=True)  # workbench reports progress itself
    pipe.workbench_model = base  # the name it was loaded by: a study's specs and profile read it (`model_name`)
    real = base_source.kind not in ("config", "embedded")  # the toy and the tiny models are a few MB
    plan = gpu_plan(pipe, len(controlnets), device, memory_gb) if device.type == "cuda" and real else None
    pipe = apply_plan(pipe, plan, device)
    if device.type == "cuda":
        optimize_for_gpu(pipe, compile=compile)
    elif compile:
        compile_pipeline(pipe)
    return pipe


def gpu_plan(pipe, controlnets: int, device, memory_gb: float | None):
    """The memory plan of a real model on a CUDA device: its family at its trained size, with these ControlNets."""
    from ..families import family_of
    from .memory_plan import memory_plan
    from .profiles import gpu_facts
    family = family_of(pipe)
    capability, total = gpu_facts(str(device))
    return memory_plan(family, controlnets, family.DEFAULT_SIZE, capability, memory_gb or total)


def apply_plan(pipe, plan, device):
    """Place `pipe` on `device` as `plan` says: all of it, one model at a time (model offload) or layer by layer;
    VAE slicing and tiling where planned. The plan stays on the pipeline (`workbench_plan`) for run_sweep."""
    if plan is not None and plan.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif plan is not None and plan.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe = pipe.to(device)
    if plan is not None:
        if plan.vae_slicing:
            pipe.vae.enable_slicing()
        if plan.vae_tiling:
            pipe.vae.enable_tiling()
    pipe.workbench_plan = plan
    return pipe


def model_name(pipe, given: str | None = None) -> str:
    """The model name for specs made from `pipe`: `given`, else the name `load_pipeline` loaded it by."""
    name = given or getattr(pipe, "workbench_model", None)
    if not name:
        raise ValueError("this pipeline was not loaded by `wb.load_pipeline`, so its model name is unknown: "
                         "pass model= (a preset, hub id or folder)")
    return name


def tiny_controlnet(pipe, seed: int):
    """Another random ControlNet for a tiny test pipeline, copied from its denoiser (a second control unit)."""
    from ..families.builders import wake_zero_convs
    torch.manual_seed(seed)
    net = controlnet_from_denoiser(pipe, conditioning_embedding_out_channels=tuple(
        pipe.controlnet.config.conditioning_embedding_out_channels))
    wake_zero_convs(net, seed=seed)
    return net


def set_scheduler(pipe, name: str) -> None:
    """Swap the pipeline's sampler, keeping its noise schedule (a no-op if it is already `name`, config included).

    A1111's spellings are accepted ("DPM++ 2M Karras"). DPM++ SDE needs torchsde (a dependency of workbench).
    """
    import diffusers
    name = canonical_sampler(name)
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; known: {sorted(SCHEDULERS)}")
    cls = getattr(diffusers, SCHEDULERS[name].diffusers_class)
    config = SCHEDULERS[name].config(has_karras_twin(name))
    if type(pipe.scheduler) is not cls or any(pipe.scheduler.config.get(k) != v for k, v in config.items()):
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **config)
