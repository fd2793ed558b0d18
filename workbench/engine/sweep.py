"""Run a sweep: every trial of a spec becomes one image and one row, and a crash loses almost nothing.

A sweep is one plan (`plan.Plan`: a spec's trials, recorded in the folder); `run_plan`, the engine, draws any plan
(a search's candidates too) in numbered stages:
  1. check the spec and the run folder; write spec.yaml before any image
  2. load each LoRA adapter once; fingerprint the model; expand the trials; drop finished ones
  3. plan: group trials into batch groups (everything but the seed and each control unit's scale), order the
     groups so that adapter, weight and scheduler switches happen least often, cut them into batches
     (on the CPU, no larger than free memory allows: `memory.fit_batch`) (`plan.py`)
  4. per batch: one pipeline call, one torch.Generator per seed and a per-image conditioning
     scale per control unit (a hook on each ControlNet), halving the batch on out-of-memory (`run.py`)
  5. per image, on a writer thread while the next batch generates: flag NaN/black, write the
     PNG atomically with its infotext, score it, log its row (`write.py`)
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable


from ..families import denoiser, family_of, trained_buckets, trained_size, unit_controlnets
from ..lora import activate_lora, inspect_lora_file, load_lora, loaded_from, text_encoder_weight
from ..lora.files import check_safetensors
from ..lora.hotswap import hotswap_plan, open_slot, swap_in
from ..models.conditions import check_condition_weights
from ..models.control import check_control_image, unit_controls
from ..models.fingerprint import file_sha256, module_fingerprint
from ..models.memory import fit_batch
from ..models.pipeline import set_scheduler
from ..models.speed import auto_batch_size, is_compiled
from ..spec.axes import REGISTERED
from ..spec.metric_registry import ALWAYS, metric_names
from ..spec.sizes import SizeRange
from ..spec.files import load_spec
from ..spec.resolve import resolve_spec
from ..spec.sweep_spec import BUILT_IN_SOURCES, SweepSpec, Trial, expand, spec_from_dict, warn_duplicates
from ..spec.units import Unit
from ..store.growth import check_same_fingerprint, is_known, record_spec
from ..store.results import (FAILED, IMAGE_SCHEME, ResultsLog, drawn_before_fixes, finished_trial_ids, load_results,
                             log_name, read_rows)
from ..store.run_folder import RunFolderBusy, open_run_dir, prepare_run_dir  # noqa: F401 (RunFolderBusy: re-exported)
from .generation import warn_long_prompt, warn_unknown_words
from .scoring import check_metrics, score_after_sweep
from .plan import Plan, batch_groups, batch_key, batched_keys, cut_batches, my_groups  # noqa: F401 (re-exported)
from .run import (LEGACY_UNIT, BatchLimit, check_controlnets, embeddings_for, generate_batch,  # noqa: F401 (re-exported)
                  call_pipeline, generate_with_backoff, pipeline_in_use)
from .write import finish_writing, image_flag, record_trial, versions, write_batch  # noqa: F401 (re-exported)


@dataclass
class Progress:
    """What the callback hears after each batch: counts so far and the rows just written."""
    done: int          # trials finished in this run (complete or failed)
    total: int         # trials this run has to do (finished ones from earlier runs excluded)
    skipped: int       # trials already finished by an earlier run
    failed: int
    rows: list = field(default_factory=list)


# ---- 2. adapters, fingerprint -----------------------------------------------------------------

def load_adapters(pipe, adapters: dict) -> None:
    """Load each named LoRA file into the pipeline once; a name loaded from another file is loaded again.

    Adapters stay loaded between sweeps. A name the pipeline already holds is kept only when
    it came from the same file (by sha256): two specs may use one name for different files.
    """
    for name, path in adapters.items():
        if loaded_from(pipe, name) != file_sha256(Path(path)):
            load_lora(pipe, path, name, replace=True)  # refuses pickle files, names a shape mismatch


def check_adapter_files(adapters: dict) -> None:
    """Refuse an adapter whose LoRA file does not exist or is no LoRA file, naming it (before the run folder is made)."""
    for name, path in sorted(adapters.items()):
        if not Path(path).is_file():
            raise FileNotFoundError(f"LoRA file {str(path)!r} does not exist (adapter {name!r}); train one with "
                                    "wb.train_lora, or copy the toy's with `python -m workbench adapters`")
        check_safetensors(Path(path))  # a pickle, or a file named .safetensors that is none
        inspect_lora_file(path)        # LyCORIS, DoRA, a damaged header, alpha or rank: one line each


def model_fingerprint(pipe, adapters: dict) -> str:
    """One hash for base, ControlNet and adapter weights: trial ids change when any of them do."""
    modules = [getattr(pipe, name) for name in family_of(pipe).COMPONENTS]
    modules = [net for module in modules for net in unit_controlnets(module)]  # each unit's ControlNet
    parts = [module_fingerprint(module) for module in modules]
    for name, path in sorted(adapters.items()):
        parts.append(f"{name}={file_sha256(Path(path))[:16]}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def run_sweep(pipe, spec: SweepSpec | dict | str | Path, run_dir: str | Path,
              callback: Callable[[Progress], None] | None = None, should_stop: Callable[[], bool] | None = None,
              rank: int = 0, world_size: int = 1, log: Callable[[str], None] = print,
              max_batch: int | str = "auto", share_prefix: bool = True):
    """Run every unfinished trial of `spec` into `run_dir`; return its rows (this model's trials).

    Args:
        pipe: a loaded pipeline (see `load_pipeline`).
        spec: a SweepSpec, a dict, or a YAML/JSON file.
        run_dir: the run folder; running the same spec into it again resumes, a new spec grows it.
        callback: called with a `Progress` after each batch is written (tqdm, widgets).
        should_stop: polled between batches; return True to stop cleanly (Ctrl-C, a Stop button).
        rank, world_size: this process's share of the unfinished trials, for multi-process runs.
        max_batch: the most images in one pipeline call (a batch group's seeds and scales are batched);
            "auto" measures what fits in free GPU memory (16 on the CPU).
        share_prefix: trials that follow one path for their first steps (the same seed and ControlNet
            strengths so far, differing later in `end` or a schedule) compute those steps once
            (`denoise.py`); each row's `shared_steps` says how many of its steps it shared.
    """
    spec = spec if isinstance(spec, SweepSpec) else spec_from_dict(spec) if isinstance(spec, dict) else load_spec(spec)
    return run_plan(pipe, Plan(spec), run_dir, callback=callback, should_stop=should_stop, rank=rank,
                    world_size=world_size, log=log, max_batch=max_batch, share_prefix=share_prefix)


def run_plan(pipe, plan: Plan, run_dir: str | Path, callback: Callable[[Progress], None] | None = None,
             should_stop: Callable[[], bool] | None = None, rank: int = 0, world_size: int = 1,
             log: Callable[[str], None] = print, max_batch: int | str = "auto", share_prefix: bool = True):
    """The engine: draw a plan's unfinished trials into `run_dir` (stages 1-5); return the rows of its trials.

    A sweep is one plan (`run_sweep`); a search draws one plan per candidate (`studies/search.py`). The
    arguments are `run_sweep`'s.
    """
    plan = replace(plan, spec=resolve_spec(plan.spec))  # the model's defaults and size, from its files where needed
    spec = plan.spec  # (spec.yaml keeps the resolved values)
    if max_batch != "auto" and not (isinstance(max_batch, int) and max_batch >= 1):
        raise ValueError(f"max_batch must be 'auto' or a whole number >= 1, got {max_batch!r}")
    if not (isinstance(world_size, int) and isinstance(rank, int) and 0 <= rank < world_size):
        raise ValueError(f"this process is rank {rank!r} of world size {world_size!r}: a rank runs from 0 to the "
                         "world size - 1 (set RANK and WORLD_SIZE together, as accelerate launch and torchrun do)")
    warn_duplicates(spec)                                                              # 1
    for unit in spec.resolved_units():  # files are read from the spec file's folder
        check_control_image(unit.image, unit.name)
        check_condition_weights(unit.preprocess, spec.metric_models)  # depth, seg, pose...: their network's weights
    check_controlnets(pipe, spec.units)
    check_adapter_files(spec.resolved_adapters())
    check_metrics(metric_names(spec.metrics), spec.metric_models)  # a missing metric model stops us before any image
    if spec.resolution is not None:  # the spec's model name may differ from the pipeline passed in
        SizeRange(trained_size(pipe), "read from the loaded model").check(spec.resolution, "resolution", spec.model)
    run_dir, lock = open_run_dir(run_dir, rank)  # the lock before anything in the folder is written or cleaned
    try:
        scheme = prepare_run_dir(run_dir, spec, plan.records_spec)["trial_id_scheme"]
        with pipeline_in_use(pipe, log):
            return _run_locked(pipe, plan, run_dir, callback, should_stop, rank, world_size, log, max_batch, scheme,
                               share_prefix)
    finally:
        lock.close()


def drawn_differently_now(pipe, run_dir: Path, log) -> set[str]:
    """The finished trials an older version drew otherwise than this one would (`results.drawn_before_fixes`): rows
    whose adapter, now loaded, has text-encoder layers. They are drawn again, and the newest row wins."""
    rows, _ = read_rows(run_dir)
    old = [row for row in rows if drawn_before_fixes(row)]
    redraw = {row["trial_id"] for row in old if text_encoder_weight(pipe, row["adapter"], 1.0) is not None}
    if redraw:
        log(f"{len(redraw)} finished trials were drawn before the text-encoder fix (their adapter's text-encoder "
            "layers did not act); drawing them again")
    return redraw


def control_content(spec: SweepSpec) -> dict:
    """{control image as the spec names it: "sha256:<hex>" of its file} for every unit whose image is a file (a shipped
    photo, `sample:`, is fixed by its name: `samples.SAMPLES` holds its hash)."""
    return {unit.image: f"sha256:{file_sha256(Path(resolved.image))}"
            for unit, resolved in zip(spec.units, spec.resolved_units()) if not unit.image.startswith(BUILT_IN_SOURCES)}


def _run_locked(pipe, plan: Plan, run_dir, callback, should_stop, rank, world_size, log, max_batch, scheme,
                share_prefix):
    """Stages 2-5 of `run_plan`, with the run folder locked (the plan's spec resolved)."""
    spec = plan.spec
    adapters = spec.resolved_adapters()
    fingerprint = model_fingerprint(pipe, adapters)  # adapter files are hashed, not loaded, for this # 2
    if plan.records_spec and not is_known(run_dir, spec):  # growing: only on the folder's own model and adapters
        rows, _ = read_rows(run_dir)
        check_same_fingerprint(run_dir, {r["model_fingerprint"] for r in rows if r.get("model_fingerprint")},
                               fingerprint)
        n = record_spec(run_dir, spec)
        log(f"growing the sweep in {run_dir}: spec {n}; finished trials are reused")
    slot_files, why = hotswap_plan(pipe, adapters, spec.lora_blocks != [None])  # compiled: adapters take turns
    if why:
        log(f"the pipeline is compiled, but its adapters load by name ({why}): each adapter and weight compiles again")
    if slot_files is None:
        load_adapters(pipe, adapters)
    else:
        open_slot(pipe, slot_files)  # before the first image, so every batch runs one traced UNet
    content = control_content(spec) if scheme >= 2 else None  # scheme 1: a folder from before hashes names
    trials = expand(spec, fingerprint, content)
    finished = finished_trial_ids(run_dir, log) - drawn_differently_now(pipe, run_dir, log)
    size = spec.resolution or trained_size(pipe)
    if max_batch == "auto":
        max_batch = auto_batch_size(pipe, size)
        memory = getattr(pipe, "workbench_plan", None)  # a GPU's memory plan (`memory_plan.py`) caps it
        max_batch = min(max_batch, memory.max_batch) if memory is not None else max_batch
        if pipe.device.type == "cuda":
            log(f"batch size {max_batch}, from free GPU memory")
    units = spec.resolved_units()  # one unnamed unit for a spec without `controls`
    ordered = batch_groups(trials, batched_keys(units, share_prefix))
    groups = my_groups(ordered, finished, rank, world_size, share_prefix)
    if world_size > 1 and not groups:
        log(f"process {rank} of {world_size} has no share: the spec makes {len(ordered)} group(s) of trials that one "
            "pipeline call draws together (they differ only in seed and ControlNet scale or schedule), "
            "fewer than the processes; it writes no rows")
    on_cpu, controls, buckets = pipe.device.type == "cpu", {}, trained_buckets(pipe)
    if on_cpu and any(groups):  # refuse what cannot fit before the first image, instead of growing until killed
        width, height = unit_controls(units, trials[0].params, size, controls, spec.metric_models, buckets)[0].size
        max_batch = fit_batch(pipe, width, height, max_batch, log)
    batches = cut_batches(groups, max_batch)
    unfinished = sum(t.trial_id not in finished for t in trials)
    for prompt in set(spec.prompt):
        warn_long_prompt(pipe, prompt)
        warn_unknown_words(pipe, prompt)
    context = {"device": str(pipe.device), "dtype": str(denoiser(pipe).dtype).replace("torch.", ""),
               "image_scheme": IMAGE_SCHEME,
               "model": spec.model, "model_fingerprint": fingerprint, **versions(), **plan.tags,
               "prediction_type": pipe.scheduler.config.get("prediction_type", "epsilon"),
               **getattr(pipe, "workbench_file", {}),  # a single file's name and A1111 hash
               **{f"{unit.key('image')}_sha256": content[unit.image] for unit in spec.units
                  if content and unit.image in content}}
    embeddings, limit = {}, BatchLimit(max_batch)
    progress = Progress(done=0, total=sum(map(len, batches)), skipped=len(trials) - unfinished, failed=0)

    def report(rows: list) -> None:
        """Count a written batch and tell the callback (on this, the generating, thread)."""
        progress.done += len(rows)
        progress.failed += sum(row["state"] == FAILED for row in rows)
        progress.rows = rows
        if callback:
            callback(progress)

    # The writer thread encodes PNGs, scores images and appends rows while the next batch
    # generates, so the GPU does not wait on the disk. One batch is in flight at a time, and
    # a crash or Ctrl-C waits for it (the executor's exit), so a generated image is not lost.
    with ResultsLog(run_dir / log_name(rank)) as results, ThreadPoolExecutor(1, "workbench-writer") as writer:
        pending, stopped = None, False
        for batch in batches:                                                         # 3
            if should_stop and should_stop():
                stopped = True
                break
            params = batch[0].params
            started_at, started = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
            batch_controls = None
            try:                                                                      # 4
                batch_controls = unit_controls(units, params, size, controls, spec.metric_models, buckets)
                if on_cpu:  # other programs may have taken memory since the last batch
                    limit.size = fit_batch(pipe, *batch_controls[0].size, limit.size, log)
                if slot_files is not None:  # in place, in the compiled UNet's one slot (`lora/hotswap.py`)
                    swap_in(pipe, slot_files, params["adapter"], params["lora_weight"])
                else:
                    activate_lora(pipe, params["adapter"], params["lora_weight"], params.get("lora_blocks"))
                set_scheduler(pipe, params["scheduler"])
                for name, axis in REGISTERED.items():  # registered axes (`axes.register_axis`): one value a call
                    if name in params:
                        axis.apply_to(pipe, params[name])
                images, shared = generate_with_backoff(pipe, params, batch, batch_controls,
                                               embeddings_for(pipe, params, embeddings),
                                               limit, log, units, share_prefix)
                error = ""
            except Exception as err:  # a failed batch is recorded, and the sweep goes on
                images, shared, error = [None] * len(batch), [0] * len(batch), f"{type(err).__name__}: {err}"
            seconds = (time.perf_counter() - started) / len(batch)
            # This process's first batch also pays one-time costs (first kernel calls, Canny's
            # import, torch.compile): its rows say so, so `seconds` compares like with like.
            warmup = batch is batches[0]
            if warmup and is_compiled(pipe):
                log(f"first batch took {seconds * len(batch):.1f} s, torch.compile's warm-up included")
            adapter = getattr(denoiser(pipe), "peft_config", {}).get(params["adapter"])
            if slot_files is not None and params["adapter"] is not None:  # the file's, not the padded slot's
                file = slot_files[params["adapter"]]
                lora = {"lora_rank": file.rank, "lora_alpha": file.alpha}
            else:
                lora = {"lora_rank": adapter.r if adapter else None,
                        "lora_alpha": getattr(adapter, "lora_alpha", getattr(adapter, "alpha", None))}
            batch_context = {**context, "warmup": warmup, **lora}
            if pending:
                report(finish_writing(pending, progress.done))
            pending = writer.submit(write_batch, results, run_dir, spec, batch, images, batch_controls, error,
                                    started_at, seconds, batch_context, shared)
        if pending:
            report(finish_writing(pending, progress.done))
        if stopped:
            log(f"stopped after {progress.done} of {progress.total} trials; run again to resume")
    ids = {t.trial_id for t in trials}
    if not stopped and rank == 0:  # the after-sweep metrics, batched on the device, for rows that lack them
        scored = score_after_sweep(run_dir, metric_names(spec.metrics), pipe.device, spec.metric_models, ids)
        if set(scored) - set(ALWAYS):
            log(f"scored images with {', '.join(scored)}")
    # The folder may also hold rows of an earlier model (another fingerprint): return this spec's only.
    table = load_results(run_dir)
    return table if table.empty else table[table.trial_id.isin(ids)].reset_index(drop=True)
