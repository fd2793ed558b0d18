"""What rank does a style need? Train adapters per (rank, training seed), sweep them, plot style and content.

A rank study answers the question with a curve, not one picture: for each rank r it trains
one adapter per training seed (cached, so a re-run only sweeps), draws held-out toy scenes at
several LoRA weights, and scores every image:
  style_strength   how much of the style shows (0 none, about 1 drawn), the thing LoRA adds;
  colour_fidelity  whether the prompt's colours survive, the thing LoRA must not break.
The figure shows both against rank, the mean over training seeds with a band from the worst
to the best seed: where the style curve flattens is the rank the style needs. Beside it, the
best adapter cut to smaller ranks by SVD (`ladder.py`): if a truncated adapter keeps the style,
the directions beyond that rank were not needed.

Alpha policy (the scale s of  w * s * B @ A, with w the LoRA weight):
  "r"       alpha = r, s = 1 at every rank (this project's default);
  "fixed"   alpha = the study's smallest rank, s = alpha / r (the LoRA paper keeps alpha fixed
            while r changes, so s shrinks as r grows); a number sets alpha itself;
  "rslora"  alpha = the smallest rank with s = alpha / sqrt(r) (Kalajdzievski 2023).
"""

from __future__ import annotations

import random
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from .lora import DEFAULT_STEPS, lora_rank_ladder, train_lora, training_pairs
from .lora.analysis import ladder_adapters
from .lora.files import cache_key, dataset_hash, file_parameters
from .curves import plot_rank_study
from .spec import spec_from_dict
from .sweep import run_sweep
from .toy.world import PALETTE, SHAPES, Scene, scene_from_caption

DEFAULT_WEIGHTS = (0.0, 0.5, 1.0, 1.25)


@dataclass
class RankStudy:
    """A rank study's results: every image's row, the ladder's rows, the adapters, and the figure."""
    table: pd.DataFrame          # one row per image: adapter, lora_rank, train_seed, lora_weight, scores
    ladder_table: pd.DataFrame   # the best adapter cut to each rank, at weight 1
    adapters: dict               # adapter name -> file
    parameters: dict             # rank -> trainable parameters of one adapter
    figure: object


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


# Notebook 02's study adapters, shipped in fp16 (benchmarks/ship_study_adapters.py): members "<key>/<name>.safetensors"
SHIPPED_ADAPTERS = Path(__file__).parent / "assets" / "lora-study.zip"


def shipped_adapter(key: str, name: str, folder: Path) -> Path | None:
    """Copy a shipped adapter with this cache key into `folder`; None when the package has none."""
    member = f"{key}/{name}.safetensors"
    if not SHIPPED_ADAPTERS.exists():
        return None
    with zipfile.ZipFile(SHIPPED_ADAPTERS) as archive:
        if member not in archive.namelist():
            return None
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.safetensors"
        partial = target.with_suffix(".partial")
        partial.write_bytes(archive.read(member))
        partial.replace(target)  # a crash mid-copy leaves no half file under the real name
    return target


def cached_adapter(pipe, images, captions, rank, alpha, use_rslora, steps, lr, seed, cache_dir: Path, name: str):
    """Train one adapter, or find it in the cache, or copy it there from the shipped ones.

    The cache key hashes the base, the data and every setting, so a shipped adapter is used
    only for exactly the settings it was trained with.
    """
    key = cache_key(pipe.unet, dataset_hash(images, captions), rank, alpha, use_rslora, steps, lr, seed)
    folder = Path(cache_dir) / key
    path = folder / f"{name}.safetensors"
    if not path.exists():
        shipped_adapter(key, name, folder)
    if not path.exists():
        train_lora(pipe, (images, captions), rank, alpha=alpha, use_rslora=use_rslora, steps=steps, lr=lr, seed=seed,
                   out_dir=folder, adapter_name=name, load=False)
    return path


def sweep_scenes(pipe, captions, adapters: dict, weights, eval_seeds, sample_steps, run_dir: Path, log) -> pd.DataFrame:
    """Every adapter at every weight on every held-out scene; one run folder per scene (resumable)."""
    tables = []
    for i, caption in enumerate(captions):
        plain = replace(scene_from_caption(caption), style=None).caption
        spec = spec_from_dict({"model": "toy", "prompt": [caption], "control_image": f"toy:{plain}",
                               "steps": sample_steps, "adapters": {k: str(v) for k, v in adapters.items()},
                               "adapter": list(adapters), "lora_weight": list(weights), "seed": list(eval_seeds)})
        tables.append(run_sweep(pipe, spec, run_dir / f"scene{i}", log=log).assign(scene=caption))
    return pd.concat(tables, ignore_index=True)


def rank_study(pipe, dataset, ranks=(1, 2, 4, 8, 16), seeds=(0, 1, 2), steps: int = DEFAULT_STEPS, lr: float = 1e-3,
               alpha="r", style: str | None = None, scenes: int = 6, weights=DEFAULT_WEIGHTS, eval_seeds=(0,),
               sample_steps: int = 20, run_dir: str | Path = "runs/rank-study",
               cache_dir: str | Path = "runs/lora-cache", log=print) -> RankStudy:
    """Train one adapter per (rank, training seed) on `dataset`, sweep them on held-out scenes, and plot.

    Args:
        pipe: the toy pipeline (its scores read toy scenes).
        dataset: the style's training data (a ToyDataset, or (images, captions)).
        ranks, seeds: the ranks, and the training seeds that give each rank its band.
        steps, lr: training settings, the same for every adapter. alpha: the alpha policy.
        style: the style's name (default: read from the dataset's captions).
        scenes: how many held-out scenes to draw; weights, eval_seeds: the sweep's LoRA weights
            and sampling seeds; sample_steps: denoising steps per image.
        run_dir, cache_dir: where the sweeps and the adapters go; both resume.
    Returns a RankStudy with the table, the ladder's table, the adapters and the figure.
    """
    images, captions = training_pairs(dataset)
    style = style or next((c.rsplit(" in ", 1)[1].removesuffix(" style") for c in captions if " in " in c), None)
    if style is None:
        raise ValueError("the dataset's captions name no style ('... in <style> style'); pass style=")
    ranks, seeds = sorted(set(ranks)), list(seeds)
    run_dir, smallest = Path(run_dir), min(ranks)
    adapters, meta = {}, {}
    for rank in ranks:
        a, rslora = alpha_for(alpha, rank, smallest)
        for seed in seeds:
            name = f"r{rank}-s{seed}"
            log(f"adapter {name} (alpha {a:g}{', rsLoRA' if rslora else ''})")
            adapters[name] = cached_adapter(pipe, images, captions, rank, a, rslora, steps, lr, seed, Path(cache_dir),
                                            name)
            meta[name] = (rank, seed)
    held_out = held_out_captions(scenes, style)
    table = sweep_scenes(pipe, held_out, adapters, weights, eval_seeds, sample_steps, run_dir / "ranks", log)
    table["train_seed"] = table.adapter.map(lambda n: meta[n][1])
    table["lora_rank"] = table.adapter.map(lambda n: meta[n][0])
    best = best_adapter(table, max(ranks))
    ladder = lora_rank_ladder(adapters[best], ranks=[r for r in ranks if r < max(ranks)], out_dir=run_dir / "ladder")
    ladder_table = sweep_scenes(pipe, held_out, ladder_adapters(ladder, prefix="cut"), [1.0], eval_seeds, sample_steps,
                                run_dir / "ladder-sweeps", log)
    ladder_table["lora_rank"] = ladder_table.adapter.map(lambda n: int(n.removeprefix("cut")))
    ladder_table = pd.concat([ladder_table, table[(table.adapter == best) & (table.lora_weight == 1.0)]],
                             ignore_index=True).assign(source=best)
    parameters = {rank: file_parameters(adapters[f"r{rank}-s{seeds[0]}"]) for rank in ranks}
    figure = plot_rank_study(table, ladder_table, parameters)
    return RankStudy(table, ladder_table, adapters, parameters, figure)


def best_adapter(table: pd.DataFrame, rank: int) -> str:
    """The adapter of `rank` with the most style at weight 1 (mean over scenes and sampling seeds)."""
    at_one = table[(table.lora_rank == rank) & (table.lora_weight == 1.0)]
    return str(at_one.groupby("adapter").style_strength.mean().idxmax())
