"""Command line.

    python -m workbench demo                              the README's main job
    python -m workbench sweep spec.yaml --run-dir runs/x  run (or resume) a sweep
    python -m workbench results runs/x                    summarise a run, export Parquet/CSV
    python -m workbench adapters runs/lora                copy the toy's shipped LoRA adapters (rank<r>.safetensors)
"""

from __future__ import annotations

import argparse
import builtins
import os
import signal
import sys
import time


def batch_size(text: str):
    """argparse type for --max-batch: 'auto' or a whole number >= 1."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a whole number >= 1, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workbench", description="ControlNet and LoRA sweep workbench")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a small conditioning-scale x seed sweep on the default model")
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    demo.add_argument("--model", default=None,
                      help="'toy' (default), 'tiny', 'tiny-sdxl', 'sd15', 'sdxl', a hub id or a folder")
    demo.add_argument("--steps", type=int, default=20)
    demo.add_argument("--device", default="auto")
    sweep = commands.add_parser("sweep", help="run or resume the sweep a YAML/JSON spec describes")
    sweep.add_argument("spec", help="spec file (YAML or JSON)")
    sweep.add_argument("--run-dir", required=True, help="run folder; the same spec into it again resumes")
    sweep.add_argument("--device", default="auto")
    sweep.add_argument("--dtype", default="auto")
    sweep.add_argument("--max-batch", default="auto", type=batch_size,
                       help="most images per pipeline call: a number, or 'auto' (from free GPU memory; 16 on CPU)")
    sweep.add_argument("--no-share-prefix", dest="share_prefix", action="store_false",
                       help="draw every trial from noise on its own, even where trials share their first steps")
    sweep.add_argument("--compile", action="store_true",
                       help="torch.compile the UNet and ControlNet (the first batch pays a warm-up)")
    search = commands.add_parser("search", help="find a target in few images: a spec whose axes may be ranges "
                                 "({low: 0, high: 1.5}), searched by bisection or optuna")
    search.add_argument("spec", help="spec file (YAML or JSON) with range axes")
    search.add_argument("--run-dir", required=True, help="run folder; the same command again resumes the search")
    search.add_argument("--target", action="append", default=[], help="e.g. 'edge_f1>=0.9' (repeatable)")
    search.add_argument("--minimize", action="append", default=[], help="a range parameter or a column (repeatable)")
    search.add_argument("--maximize", action="append", default=[], help="a range parameter or a column (repeatable)")
    search.add_argument("--budget", type=int, default=40, help="the most images to draw (default 40)")
    search.add_argument("--stat", default="mean", choices=["mean", "median", "min", "max"],
                        help="how a candidate's seeds are summarised (default mean)")
    search.add_argument("--device", default="auto")
    search.add_argument("--dtype", default="auto")
    export = commands.add_parser("export", help="log a run folder to an experiment tracker (MLflow)")
    export.add_argument("run_dir")
    export.add_argument("--to", default="mlflow", choices=["mlflow"])
    export.add_argument("--tracking-uri", default=None,
                        help="default: sqlite:///RUN_DIR/mlflow.db, artifacts in RUN_DIR/mlflow-artifacts")
    export.add_argument("--experiment", default=None, help="default: the run folder's name")
    report = commands.add_parser("report", help="write RUN_DIR/report.html: the run as one offline page")
    report.add_argument("run_dir")
    report.add_argument("--link-images", action="store_true", help="link images relatively instead of embedding")
    results = commands.add_parser("results", help="summarise a run folder and export results.parquet/.csv")
    results.add_argument("run_dir")
    adapters = commands.add_parser("adapters", help="copy the toy model's shipped LoRA adapters (a style, ranks "
                                   f"{', '.join(map(str, SHIPPED_RANKS))}) into a folder as rank<r>.safetensors")
    adapters.add_argument("folder", nargs="?", default="runs/lora", help="where to write them (default: runs/lora)")
    inspect = commands.add_parser("inspect", help="say what a .safetensors file is: a LoRA (format, parts, rank, alpha, "
                                  "base) or a single-file checkpoint (family, complete)")
    inspect.add_argument("file")
    inspect.add_argument("--model", default=None, help="also list the LoRA layers that do not fit this model "
                         "(a preset, hub id or folder; loads it)")
    return parser


def cmd_inspect(args) -> None:
    from .models.inspect import inspect_file
    from .store.safe_text import printable
    pipe = None
    if args.model:
        from .models.pipeline import load_pipeline
        pipe = load_pipeline(args.model, device="cpu")
    for key, value in inspect_file(args.file, pipe).items():
        if isinstance(value, list) and len(value) > 8:
            value = value[:8] + [f"... {len(value) - 8} more"]
        print(printable(f"{key:12} {value}"))


SHIPPED_RANKS = (1, 2, 4, 8, 16)  # the ranks of notebook 02's study adapters in the package (`shipped.py`)


def cmd_adapters(args) -> None:
    from pathlib import Path

    from .store.shipped import copy_toy_adapters
    for path in copy_toy_adapters(Path(args.folder), SHIPPED_RANKS):
        print(f"wrote {path}")


def cmd_demo(args) -> None:
    from .teaching.demo import run_demo
    from .models.pipeline import DEFAULT_MODEL
    table = run_demo(args.out, model=args.model or DEFAULT_MODEL, steps=args.steps, device=args.device)
    columns = [c for c in ("conditioning_scale", "seed", "state", "edge_f1", "seconds") if c in table]
    print(table[columns].to_string(index=False))
    print(f"\nwrote {args.out}/grid.png, {args.out}/results.parquet and {args.out}/results.csv")


def cmd_sweep(args) -> int | None:
    from .spec.files import load_spec
    spec = load_spec(args.spec)  # validate before importing or loading any model
    rank, world_size = process_rank()  # under `accelerate launch` (or torchrun) each process takes its share of cells
    from tqdm import tqdm

    from .engine.sweep import run_sweep
    from .models.pipeline import load_pipeline
    from .store.safe_text import printable
    device = args.device
    if device == "auto" and "LOCAL_RANK" in os.environ:
        import torch
        if torch.cuda.is_available():
            device = f"cuda:{os.environ['LOCAL_RANK']}"  # one GPU per process under accelerate launch
    controlnets = [unit.controlnet for unit in spec.units] if spec.controls else None  # one per control unit
    pipe = load_pipeline(spec.model, controlnet=controlnets, device=device, dtype=args.dtype, compile=args.compile)
    stop = {"asked": False}

    def on_interrupt(signum, frame):
        if stop["asked"]:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        stop["asked"] = True
        tqdm.write("Ctrl-C: stopping after the current batch (press again to stop now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    bars, started = [], time.time()  # the bar is made at the first batch: nothing drawn before the checks

    def on_progress(progress):
        if not bars:
            # It starts at the trials finished by earlier runs (tqdm's `initial`), so its rate
            # counts only this run's images, timed from the start of the sweep.
            bars.append(tqdm(total=progress.skipped + progress.total, initial=progress.skipped, unit="img",
                             desc="sweep"))
            bars[0].start_t = started
        bar = bars[0]
        bar.set_postfix(failed=progress.failed, skipped=progress.skipped, refresh=False)
        bar.update(progress.skipped + progress.done - bar.n)

    try:
        table = run_sweep(pipe, spec, args.run_dir, callback=on_progress, should_stop=lambda: stop["asked"],
                          rank=rank, world_size=world_size,
                          log=lambda message: tqdm.write(printable(message), file=sys.stderr),
                          max_batch=args.max_batch, share_prefix=args.share_prefix)
    finally:
        signal.signal(signal.SIGINT, previous)
        for bar in bars:
            bar.close()
    print_summary(table, args.run_dir)
    if stop["asked"]:  # stopped by Ctrl-C after saving what was done: 130, as shells expect of an interrupt
        return 130


def process_rank() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) from the environment, as accelerate launch and torchrun set them; (0, 1) when neither is."""
    if ("RANK" in os.environ) != ("WORLD_SIZE" in os.environ):
        raise ValueError("RANK and WORLD_SIZE must be set together (accelerate launch and torchrun set both); "
                         f"got RANK={os.environ.get('RANK')!r:.40}, WORLD_SIZE={os.environ.get('WORLD_SIZE')!r:.40}")
    try:
        rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise ValueError("RANK and WORLD_SIZE must be whole numbers") from None
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK {rank} is outside WORLD_SIZE {world_size}: a rank runs from 0 to {world_size - 1}")
    return rank, world_size


def print_summary(table, run_dir) -> None:
    """Print counts per state and the mean metrics per axis value; text from the folder is printed `printable`."""
    from .store.columns import cell_columns
    from .store.results import export_results, notes_on_old_rows
    from .store.safe_text import printable
    print = lambda *lines: builtins.print(*map(printable, lines))  # noqa: E731 (every line below comes from a folder)
    if table.empty:
        print(f"{run_dir}: no rows yet")
        return
    print(f"{run_dir}: {len(table)} rows, " + ", ".join(f"{n} {s}" for s, n in table.state.value_counts().items()))
    for note in notes_on_old_rows(table):
        print(note)
    axes = [a for a in cell_columns(table) if a != "model" and table[a].astype(str).nunique() > 1]
    metrics = [m for m in table.columns if m.split(".")[-1] in ("edge_f1", "mask_iou")]
    metrics += [m for m in ("edge_ssim", "lora_effect", "seconds") if m in table]
    if axes and metrics:
        means = table.groupby([table[a].astype(str) for a in axes])[metrics].mean()
        if "seconds" in metrics and "warmup" in table:  # seconds of steady batches only
            steady = table[table["warmup"] != True]  # noqa: E712 (old rows have no flag: NaN, kept)
            means["seconds"] = steady.groupby([steady[a].astype(str) for a in axes])["seconds"].mean()
        print(means.round(3).to_string())
    failed = table[table.state == "FAILED"]
    for row in failed.head(5).itertuples():
        print(f"FAILED {row.trial_id}: {row.error}")
    parquet, csv = export_results(table, run_dir)
    print(f"wrote {parquet} and {csv}")


def cmd_search(args) -> None:
    from .studies.search import search, split_ranges
    from .models.pipeline import load_pipeline
    from .spec.files import read_spec_file
    from .spec.sweep_spec import spec_from_dict
    data = read_spec_file(args.spec)
    fixed, _ = split_ranges(data)
    spec = spec_from_dict(fixed)  # validate before loading any model
    controlnets = [unit.controlnet for unit in spec.units] if spec.controls else None
    pipe = load_pipeline(spec.model, controlnet=controlnets, device=args.device, dtype=args.dtype)
    search(pipe, data, args.run_dir, target=args.target, minimize=args.minimize, maximize=args.maximize,
           budget=args.budget, stat=args.stat, log=lambda m: print(m, flush=True))


def cmd_export(args) -> None:
    from .analysis.export import export_mlflow
    export_mlflow(args.run_dir, tracking_uri=args.tracking_uri, experiment=args.experiment)


def cmd_report(args) -> None:
    from .analysis.report import write_report
    path = write_report(args.run_dir, embed=False if args.link_images else None)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in any browser, offline")


def cmd_results(args) -> None:
    from .store.results import load_results
    from .engine.scoring import fill_scores
    fill_scores(args.run_dir)  # a folder from before metrics.jsonl held lora_effect
    print_summary(load_results(args.run_dir), args.run_dir)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import ModelNotAvailableError
    try:
        code = {"demo": cmd_demo, "sweep": cmd_sweep, "search": cmd_search, "export": cmd_export, "report": cmd_report,
                "results": cmd_results, "adapters": cmd_adapters, "inspect": cmd_inspect}[args.command](args)
    except (ValueError, OSError, ModelNotAvailableError, ImportError, MemoryError) as err:
        from .store.safe_text import printable
        print(f"error: {printable(err)}", file=sys.stderr)  # a clear message, not a traceback
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
