"""Model profiles: the values a lesson or a spec needs on a model and a device. No torch here, no weights loaded.

    P = wb.profile("sd15", "cuda")    # 512 px, 30 steps, guidance 7.5, DPM++ 2M, LoRA at lr 1e-4 in fp16, ...
    P = wb.profile("sdxl", "cpu")     # shortened: 256 px, 2 steps, 1 seed; it says so when printed

Each family module holds what its models' cards and reference scripts say (size, steps, guidance,
sampler, the LoRA recipe, its ControlNets), with the source of every value (`families/sd15.py`,
`families/sdxl.py`); any other hub id or folder gets its family's. A lesson's settings for a real
model (seeds, metrics, rank studies) are the same for every family, so they are here (`LESSON`),
and so is a lesson's shortening on a CPU (`CPU_LESSON`: a quarter of the trained side, two steps),
so that it runs in minutes, not hours. The toy and the tiny test models are lessons' own models:
their profiles carry their lesson settings and are the same everywhere. A model metric whose
weights are not in the hub cache is not requested: the profile reports `lora_effect` instead, and
says what to download.

A spec that leaves out `steps`, `guidance` or `scheduler` takes them from its model's GPU
profile (`families.spec_defaults`), never from the machine it runs on, so one spec gives the same
trial ids everywhere; the toy's are the defaults it always had, so its trial ids never change.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from ..errors import download_command
from ..families import base_profile
from ..families.hubcache import cached_snapshot
from ..spec.metric_registry import REGISTRY
from ..spec.sizes import MIN_FACTOR
from .memory_plan import half_dtype, memory_plan

# A lesson reports lora_effect (mean pixel distance from weight 0) when no model metric can run: it needs no weights.
FALLBACK_METRIC = "lora_effect"
FALLBACK_CONTENT = "edge_f1"  # and the content as how well the image keeps the control's edges (no weights either)
_told: set = set()  # the missing-weights notes already shown in this process
# What a lesson uses on any real model on a GPU: four seeds; edges, CLIP prompt adherence (content) and DINO distance
# from weight 0 (the style's reach); rank studies of ranks 2-32 around the reference scripts' default 4, three
# training seeds each, eight held-out scenes.
LESSON = dict(seeds=[0, 1, 2, 3], metrics=["edge", "clip_score", "dino"], report_metric="dino_distance",
              content_metric="clip_score", ranks=[2, 4, 8, 16, 32], train_seeds=[0, 1, 2], scenes=8)
# On a CPU a real model's lesson is shortened so it runs in minutes: the smallest size its model allows (a quarter of
# its trained side, `sizes.MIN_FACTOR`), two denoising steps, one seed, a few LoRA steps; a rank study of two ranks,
# two training seeds, two scenes.
CPU_LESSON = dict(steps=2, seeds=[0], lora_steps=4, lora_batch=1, mixed_precision="no", ranks=[1, 4],
                  train_seeds=[0, 1], scenes=2)


@dataclass(frozen=True)
class Profile:
    """What a lesson uses on one model and device; every value can be overridden on its own line in a notebook."""
    model: str
    family: str
    device: str                   # the device type these values are for: "cuda", "mps" or "cpu"
    shortened: bool               # a real model on a CPU: small size, few steps and seeds (say so, and why)
    resolution: int               # image side, px
    steps: int                    # denoising steps
    seeds: list                   # seeds a lesson sweeps
    guidance: float               # classifier-free guidance scale
    scheduler: str                # a name of `schedulers.SCHEDULERS`
    lora_steps: int               # LoRA training steps
    lora_batch: int               # images per LoRA step (with gradient accumulation where memory is short)
    lora_lr: float                # LoRA learning rate
    mixed_precision: str          # "no", "fp16" or "bf16" (CUDA only)
    gradient_checkpointing: bool  # recompute activations in the backward pass: less memory, about 20% slower
    metrics: list                 # the metrics a lesson requests (`metric_registry`)
    report_metric: str            # the column a lesson reports: how far the LoRA moves the image (its style)
    content_metric: str           # the column of what a LoRA must keep (colours on the toy, the prompt elsewhere)
    controlnets: list             # lesson 04's two ControlNets
    ranks: list                   # the ranks a rank study trains
    train_seeds: list             # training seeds per rank: their spread is the study's band
    scenes: int                   # held-out scenes a rank study draws
    notes: list = field(default_factory=list)
    second_condition: str = "none"  # what lesson 04's second ControlNet reads (`wb.conditions()`); none: the toy's mask
    condition_models: dict = field(default_factory=dict)  # `metric_models` for it: "tiny" on the random test models
    # the memory plan (`memory_plan.py`): from the card's compute capability and total memory; on a CPU, fp32 as is
    dtype: str = "fp32"           # "bf16", "fp16", "fp32", or "auto" (a GPU profile made without its card)
    offload: str | None = None    # None, "model" (enable_model_cpu_offload) or "sequential"
    vae_slicing: bool = False     # decode a batch one image at a time (the same images)
    vae_tiling: bool = False      # decode one image in tiles (close, not exact)
    max_batch: int | str = "auto"  # run_sweep's max_batch: at most this many images a batch
    # LoRA training's gradient clipping: 1.0 on the real models, as diffusers' scripts; None on the toy and the test
    # models, whose shipped adapters and cache keys were trained without it
    max_grad_norm: float | None = None

    @property
    def spec_resolution(self) -> int | None:
        """The `resolution` a sweep spec takes: None (the model's trained size) unless this profile is shortened."""
        return self.resolution if self.shortened else None

    @property
    def lora_options(self) -> dict:
        """`train_lora`'s keywords from this profile: batch size, mixed precision, checkpointing, and gradient clipping
        where the profile sets it (a real model's; the toy's cache keys stay as they were)."""
        clipping = {} if self.max_grad_norm is None else {"max_grad_norm": self.max_grad_norm}
        return {"batch_size": self.lora_batch, "mixed_precision": self.mixed_precision,
                "gradient_checkpointing": self.gradient_checkpointing, **clipping}

    def short(self) -> str:
        """The profile in one line: model, family, device, and what a lesson's images are drawn with."""
        return (f"profile of {self.model!r} ({self.family}) on {self.device}: {self.resolution} px, {self.steps} steps, "
                f"guidance {self.guidance}, {self.scheduler}, seeds {self.seeds}"
                + (" (SHORTENED for a CPU)" if self.shortened else ""))

    def __str__(self) -> str:
        lines = [f"profile of {self.model!r} ({self.family}) on {self.device}"
                 + (": SHORTENED for a CPU, so a lesson runs in minutes; use a GPU for real results" if self.shortened
                    else "")]
        lines += [f"  {name} = {getattr(self, name)!r}" for name in (
            "resolution", "steps", "seeds", "guidance", "scheduler", "lora_steps", "lora_batch", "lora_lr",
            "max_grad_norm", "mixed_precision", "gradient_checkpointing", "metrics", "report_metric", "content_metric",
            "controlnets", "ranks", "train_seeds", "scenes", "dtype", "offload", "vae_slicing", "vae_tiling",
            "max_batch")]
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])


def device_type(device: str) -> str:
    """"cuda", "mps" or "cpu" for a device name; "auto" asks torch what this machine has."""
    if device == "auto":
        from .devices import pick_device  # torch, only when the machine must be asked
        return pick_device("auto").type
    return str(device).split(":")[0]


def available_metrics(metrics: list, report: str, content: str) -> tuple[list, str, str, list]:
    """Metrics whose model weights are cached, the metrics to report (style, content), and a note for any left out.

    Without their weights the style is reported as `lora_effect` and the content as `edge_f1` (needs no model).
    """
    missing = [name for name in metrics if REGISTRY[name].model and cached_snapshot(REGISTRY[name].model) is None]
    if not missing:
        return list(metrics), report, content, []
    kept = [name for name in metrics if name not in missing]
    wanted = sorted({REGISTRY[name].model for name in missing})
    note = (f"{', '.join(missing)} need {', '.join(wanted)}, not in the hub cache: this profile reports "
            f"{FALLBACK_METRIC} (and content as {FALLBACK_CONTENT}) instead. Download with "
            f"{download_command(*wanted)} to score with them.")
    columns = {column for name in missing for column in REGISTRY[name].columns}
    return (kept, FALLBACK_METRIC if report in columns else report,
            FALLBACK_CONTENT if content in columns else content, [note])


def gpu_facts(device: str) -> tuple[tuple[int, int], float] | None:
    """(compute capability, total memory in GB) of a CUDA device, the facts a memory plan is made from; None on a
    machine without CUDA (a GPU profile asked for on a laptop)."""
    import torch
    if not torch.cuda.is_available():
        return None
    index = torch.device(device).index or 0
    return torch.cuda.get_device_capability(index), torch.cuda.get_device_properties(index).total_memory / 2 ** 30


PLANNED_CAPABILITY = (8, 0)  # a card planned for by its memory alone (memory_gb=, no CUDA here): Ampere or later


def plan_values(family, real: bool, device: str, resolution: int, controlnets: int, memory_gb: float | None) -> dict:
    """The profile's memory-plan fields on a CUDA `device` (the card's, or `memory_gb`); a test model never offloads."""
    facts = gpu_facts(device)
    if facts is None and memory_gb is None:  # no card to ask: the dtype is picked where the model loads
        return {"dtype": "auto"}
    capability, total = facts or (PLANNED_CAPABILITY, memory_gb)
    if not real:  # the toy and the tiny models are a few MB: everything on the GPU, batches as the probe measures
        return {"dtype": half_dtype(capability)}
    plan = memory_plan(family, controlnets, resolution, capability, memory_gb or total)
    return {"dtype": plan.dtype, "offload": plan.offload, "vae_slicing": plan.vae_slicing,
            "vae_tiling": plan.vae_tiling, "max_batch": plan.max_batch}


def profile(model: str = "toy", device: str = "auto", memory_gb: float | None = None) -> Profile:
    """The profile of `model` (a preset, hub id or folder) on `device` ("auto", "cpu", "cuda", ...); loads nothing.

    On a GPU it holds a memory plan (`memory_plan.py`) for the lesson's two ControlNets at its resolution, from the
    card's compute capability and total memory; `memory_gb` says another card's memory (to plan for it)."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"`model` must be a preset, hub id or folder (a string), got {model!r}")
    family, values = base_profile(model)
    where = device_type(device)
    real = model not in family.PROFILES or model == family.DEFAULT_PROFILE  # not the toy or a tiny test model
    if real:
        values = {**LESSON, **values}
    shortened = real and where == "cpu"
    if shortened:
        values.update(CPU_LESSON, resolution=values["resolution"] // MIN_FACTOR)
    if where != "cuda" and values["mixed_precision"] != "no":
        values["mixed_precision"] = "no"  # autocast training is for CUDA here
    metrics, report, content, notes = available_metrics(values.pop("metrics"), values.pop("report_metric"),
                                                        values.pop("content_metric"))
    for note in notes:
        if note not in _told:  # said once per process
            _told.add(note)
            warnings.warn(note, stacklevel=2)
    plan = plan_values(family, real, device if device != "auto" else "cuda", values["resolution"],
                       len(values["controlnets"]), memory_gb) if where == "cuda" else {}
    return Profile(model=model, family=family.NAME, device=where, shortened=shortened, metrics=metrics,
                   report_metric=report, content_metric=content, notes=notes, **values, **plan)
