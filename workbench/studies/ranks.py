"""What rank does a style need? Train adapters per (rank, training seed), sweep them, plot style and content.

A rank study answers the question with a curve, not one picture: for each rank r it trains
one adapter per training seed (cached, so a re-run only sweeps), draws held-out prompts at
several LoRA weights, and scores every image with two columns that its model's profile names
(`workbench.profile`):
  style    how far the adapter moves the image, the thing LoRA adds: on the toy
           `style_strength` (how much of the style shows); on SD1.5 and SDXL `dino_distance`
           from weight 0, or `lora_effect` (pixel distance) when the DINO weights are not cached;
  content  what the adapter must not break: on the toy `colour_fidelity` (the prompt's colours
           survive); on SD1.5 and SDXL `clip_score` (prompt adherence), or `edge_f1` (the
           image still follows its control) when the CLIP weights are not cached.
The figure shows both against rank, the mean over training seeds with a band from the worst
to the best seed: where the style curve flattens is the rank the style needs. Beside it, the
best adapter cut to smaller ranks by SVD (`lora/analysis.py`): if a truncated adapter keeps
the style, the directions beyond that rank were not needed.

Alpha policy (the scale s of  w * s * B @ A, with w the LoRA weight):
  "r"       alpha = r, s = 1 at every rank (this project's default);
  "fixed"   alpha = the study's smallest rank, s = alpha / r (the LoRA paper keeps alpha fixed
            while r changes, so s shrinks as r grows); a number sets alpha itself;
  "rslora"  alpha = the smallest rank with s = alpha / sqrt(r) (Kalajdzievski 2023).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from ..analysis.curves import plot_rank_study
from ..families import denoiser, trained_size
from ..lora import DEFAULT_STEPS, lora_rank_ladder, train_lora, training_pairs
from ..lora.analysis import ladder_adapters
from ..lora.files import cache_key, dataset_hash, file_parameters
from ..lora.prepare import data_fingerprint
from ..lora.train import key_options
from ..spec.metric_registry import writer_columns
from ..models.pipeline import model_name
from ..models.profiles import profile
from ..store.shipped import SHIPPED, shipped_adapter, shipped_tables, study_key
from ..spec.shorten import short
from ..spec.sweep_spec import spec_from_dict
from ..engine.sweep import run_sweep
from ..toy.world import PALETTE, SHAPES, Scene, scene_from_caption

DEFAULT_WEIGHTS = (0.0, 0.5, 1.0, 1.25)


@dataclass
class RankStudy:
    """A rank study's results: every image's row, the ladder's rows, the adapters, and the figure."""
    table: pd.DataFrame          # one row per image: adapter, lora_rank, train_seed, lora_weight, scores
    ladder_table: pd.DataFrame   # the best adapter cut to each rank, at weight 1
    adapters: dict               # adapter name -> file
    parameters: dict             # rank -> trainable parameters of one adapter
    figure: object
    key: str = ""                # what its tables ship under (`shipped.py`)


def alpha_for(policy, rank: int, smallest: int) -> tuple[float, bool]:
    """(alpha, use_rslora) for one rank under an alpha policy (see the module docstring)."""
    if policy == "r":
        return float(rank), False
    if policy == "fixed":
        return float(smallest), False
    if policy == "rslora":
        return float(smallest), True
    if isinstance(policy, (int, float)) and not isinstance(policy, bool) and policy > 0:
        return float(policy), False
    raise ValueError(f"alpha policy must be 'r', 'fixed', 'rslora' or a positive number, got {policy!r}")


def held_out_captions(n: int, style: str, seed: int = 999) -> list[str]:
    """n distinct toy captions with `style`, drawn with their own seed (the scenes are centred, unlike training's)."""
    rng = random.Random(seed)
    combos = [(s, c, b) for s in SHAPES for c in sorted(PALETTE) for b in sorted(PALETTE) if b != c]
    picked = rng.sample(combos, n)
    return [Scene(s, c, b, .5, .5, .33, 0, style).caption for s, c, b in picked]


SHIPPED_ADAPTERS = SHIPPED  # notebook 02's study adapters and tables (`shipped.py`)


def adapter_key(pipe, data_hash: str, rank, alpha, use_rslora, steps, lr, seed, options: dict | None = None) -> str:
    """The cache key of one adapter of a study (`lora.files.cache_key`, options at their defaults left out)."""
    return cache_key(denoiser(pipe), data_hash, rank, alpha, use_rslora, steps, lr, seed, key_options(options))


def cached_adapter(pipe, data, data_hash: str, rank, alpha, use_rslora, steps, lr, seed, cache_dir: Path, name: str,
                   options: dict | None = None) -> Path:
    """Train one adapter, or find it in the cache, or copy it there from the shipped ones.

    The cache key hashes the base, the data (`data_hash`) and every setting, `options` (more
    `train_lora` keywords) included, so a shipped adapter is used only for exactly the settings
    it was trained with.
    """
    key = adapter_key(pipe, data_hash, rank, alpha, use_rslora, steps, lr, seed, options)
    folder = Path(cache_dir) / key
    path = folder / f"{name}.safetensors"
    if not path.exists():
        shipped_adapter(key, name, folder)
    if not path.exists():
        train_lora(pipe, data, rank, alpha=alpha, use_rslora=use_rslora, steps=steps, lr=lr, seed=seed,
                   out_dir=folder, adapter_name=name, load=False, **(options or {}))
    return path


def toy_controls(prompts: list[str]) -> list[str]:
    """The `toy:` control of each prompt that describes a toy scene (its style word left out), for any model."""
    controls = []
    for prompt in prompts:
        try:
            controls.append("toy:" + replace(scene_from_caption(prompt), style=None).caption)
        except ValueError:
            raise ValueError(f"prompt {short(prompt)} is not a toy scene, so it has no default control: pass "
                             "controls= (one control image per prompt)") from None
    return controls


@dataclass(frozen=True)
class StudySweep:
    """What every sweep of a study shares: the model, its metrics, and how each image is drawn."""
    model: str
    metrics: list
    steps: int
    resolution: int | None   # None: the model's trained size
    eval_seeds: list


def sweep_prompts(pipe, how: StudySweep, prompts, controls, adapters: dict, weights, run_dir: Path,
                  log, first: int = 0) -> pd.DataFrame:
    """Every adapter at every weight on every prompt with its control; one run folder per prompt (resumable),
    `scene<i>` counting from `first`."""
    tables = []
    for i, (prompt, control) in enumerate(zip(prompts, controls), start=first):
        spec = {"model": how.model, "prompt": [prompt], "control_image": control, "steps": how.steps,
                "metrics": how.metrics, "adapters": {k: str(v) for k, v in adapters.items()},
                "adapter": list(adapters), "lora_weight": list(weights), "seed": list(how.eval_seeds)}
        if how.resolution:
            spec["resolution"] = how.resolution
        tables.append(run_sweep(pipe, spec_from_dict(spec), run_dir / f"scene{i}", log=log).assign(scene=prompt))
    return pd.concat(tables, ignore_index=True)


def study_prompts(captions: list[str], prompts, controls, style, scenes: int) -> tuple[list, list]:
    """The evaluation prompts and their controls: given, else `scenes` held-out toy scenes in the data's style."""
    if prompts is None:
        style = style or next((c.rsplit(" in ", 1)[1].removesuffix(" style") for c in captions if " in " in c), None)
        if style is None:
            raise ValueError("the dataset's captions name no style ('... in <style> style'): pass style=, or pass "
                             "prompts= (and controls=) to evaluate on")
        prompts = held_out_captions(scenes, style)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    controls = toy_controls(prompts) if controls is None else list(controls)
    if not prompts or len(controls) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts and {len(controls)} controls: give at least one, and one each")
    return prompts, controls


def rank_study(pipe, dataset, prompts=None, controls=None, *, ranks=(1, 2, 4, 8, 16), seeds=(0, 1, 2),
               steps: int = DEFAULT_STEPS, lr: float = 1e-3, alpha="r", style: str | None = None, scenes: int = 6,
               weights=DEFAULT_WEIGHTS, eval_seeds=(0,), sample_steps: int | None = None,
               resolution: int | None = None, model: str | None = None, metrics: list | None = None,
               report: str | None = None, content: str | None = None, train_options: dict | None = None,
               run_dir: str | Path = "runs/rank-study", cache_dir: str | Path = "runs/lora-cache",
               reuse_shipped: bool = True, log=print) -> RankStudy:
    """Train one adapter per (rank, training seed) on `dataset`, sweep them on held-out prompts, and plot.

    Args:
        pipe: the loaded pipeline (`wb.load_pipeline`); any family.
        dataset: the training data: a folder (`wb.image_folder`), a ToyDataset, or (images, captions).
        prompts, controls: the evaluation prompts and one control image (file or `toy:` source) each;
            default: `scenes` held-out toy scenes in the data's `style` (read from its captions).
        ranks, seeds: the ranks, and the training seeds that give each rank its band.
        steps, lr: training settings, the same for every adapter. alpha: the alpha policy.
        train_options: more `train_lora` keywords (batch_size, mixed_precision, ...), in the cache key.
        weights, eval_seeds: the sweep's LoRA weights and sampling seeds.
        sample_steps, resolution, metrics, report, content: default to the profile of `model` (the
            name the pipeline was loaded by) on its device: denoising steps, image size (the
            trained size unless the profile is shortened), what to score, and the style and
            content columns the figure shows.
        run_dir, cache_dir: where the sweeps and the adapters go; both resume.
        reuse_shipped: where the package ships this exact study's scores (notebook 02's defaults, `shipped.py`),
            load them instead of sweeping (seconds instead of minutes); False sweeps again.
    Returns a RankStudy with the table, the ladder's table, the adapters and the figure.
    """
    model = model_name(pipe, model)
    chosen = profile(model, pipe.device.type)
    report, content = report or chosen.report_metric, content or chosen.content_metric
    size = resolution or (chosen.resolution if chosen.resolution != trained_size(pipe) else None)
    how = StudySweep(model, list(metrics or chosen.metrics), sample_steps or chosen.steps, size, list(eval_seeds))
    data, data_hash, captions = training_set(dataset)
    prompts, controls = study_prompts(captions, prompts, controls, style, scenes)
    ranks, seeds = sorted(set(ranks)), list(seeds)
    run_dir, smallest = Path(run_dir), min(ranks)
    adapters, meta = {}, {}
    log(f"{len(ranks) * len(seeds)} adapters: ranks {ranks} x training seeds {seeds}, each from the cache or trained")
    for rank in ranks:
        a, rslora = alpha_for(alpha, rank, smallest)
        for seed in seeds:
            name = f"r{rank}-s{seed}"
            started = time.perf_counter()
            adapters[name] = cached_adapter(pipe, data, data_hash, rank, a, rslora, steps, lr, seed, Path(cache_dir),
                                            name, train_options)
            meta[name] = (rank, seed)
            left = len(ranks) * len(seeds) - len(adapters)
            if time.perf_counter() - started > 5:  # it trained: say so, and how long the others may take
                log(f"adapter {name} (alpha {a:g}{', rsLoRA' if rslora else ''}) trained in "
                    f"{time.perf_counter() - started:.0f} s" + (f"; the {left} left that are not cached take up to "
                                                                 f"{left * (time.perf_counter() - started) / 60:.1f} "
                                                                 "min more" if left else ""))
    keys = {name: path.parent.name for name, path in adapters.items()}  # each adapter's cache key: its folder
    key = study_key({"adapters": keys, "prompts": prompts, "controls": controls, "weights": list(weights),
                     "sweep": asdict(how), "report": report})
    found = shipped_tables(key) if reuse_shipped else None
    if found is not None:
        table, ladder_table = found
        log("this study's scores ship with the package: loaded instead of sweeping (reuse_shipped=False sweeps)")
    else:
        table, ladder_table = sweep_study(pipe, how, prompts, controls, adapters, meta, weights, report, content,
                                          run_dir, log)
    parameters = {rank: file_parameters(adapters[f"r{rank}-s{seeds[0]}"]) for rank in ranks}
    figure = plot_rank_study(table, ladder_table, parameters, style=report, content=content)
    return RankStudy(table, ladder_table, adapters, parameters, figure, key)


def sweep_study(pipe, how: StudySweep, prompts, controls, adapters: dict, meta: dict, weights, report: str,
                content: str, run_dir: Path, log) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sweep every adapter on every prompt, then the best top-rank adapter cut to each smaller rank."""
    ranks = sorted({rank for rank, _ in meta.values()})
    started = time.perf_counter()
    table = sweep_prompts(pipe, how, prompts[:1], controls[:1], adapters, weights, run_dir / "ranks", log)
    if len(prompts) > 1:
        log(f"sweeps: the first of {len(prompts)} prompts took {time.perf_counter() - started:.0f} s")
        rest = sweep_prompts(pipe, how, prompts[1:], controls[1:], adapters, weights, run_dir / "ranks", log, first=1)
        table = pd.concat([table, rest], ignore_index=True)
    table["train_seed"] = table.adapter.map(lambda n: meta[n][1])
    table["lora_rank"] = table.adapter.map(lambda n: meta[n][0])
    missing = [column for column in (report, content) if column not in table]
    if missing:
        raise ValueError(f"the study's images have no {missing} column: request its metric in `metrics`")
    best = best_adapter(table, max(ranks), report)
    ladder = lora_rank_ladder(adapters[best], ranks=[r for r in ranks if r < max(ranks)], out_dir=run_dir / "ladder")
    ladder_table = ladder_sweeps(pipe, how, prompts, controls, ladder, report, run_dir, log)
    ladder_table = pd.concat([ladder_table, table[(table.adapter == best) & (table.lora_weight == 1.0)]],
                             ignore_index=True).assign(source=best)
    return table, ladder_table


def training_set(dataset) -> tuple[object, str, list[str]]:
    """(the data as `train_lora` takes it, its hash for the cache key, its captions)."""
    if hasattr(dataset, "fingerprint"):  # an image folder, read lazily
        return dataset, data_fingerprint(dataset), list(dataset.captions)
    images, captions = training_pairs(dataset)
    return (images, captions), dataset_hash(images, captions), captions


def ladder_sweeps(pipe, how: StudySweep, prompts, controls, ladder: dict, report: str, run_dir: Path,
                  log) -> pd.DataFrame:
    """The cut adapters at weight 1, and at weight 0 too where the report metric compares with it."""
    weights = [1.0] if report in writer_columns(how.metrics) else [0.0, 1.0]
    table = sweep_prompts(pipe, how, prompts, controls, ladder_adapters(ladder, prefix="cut"), weights,
                          run_dir / "ladder-sweeps", log)
    table = table[table.lora_weight == 1.0].reset_index(drop=True)
    table["lora_rank"] = table.adapter.map(lambda n: int(n.removeprefix("cut")))
    return table


def best_adapter(table: pd.DataFrame, rank: int, column: str = "style_strength") -> str:
    """The adapter of `rank` with the most style (`column`) at weight 1 (mean over scenes and sampling seeds)."""
    at_one = table[(table.lora_rank == rank) & (table.lora_weight == 1.0)]
    return str(at_one.groupby("adapter")[column].mean().idxmax())
