"""Score a sweep's images with the metrics its spec names: the dispatch through the metric registry.

  before the sweep   `check_metrics`: every model a metric needs is in the cache (one clear error)
  per image          `writer_scores`: the writer metrics, into the image's row
  after the sweep    `score_after_sweep`: the after metrics, batched over the rows that lack them,
                     appended to metrics.jsonl
Nothing here names a metric: each is a record of `metric_registry.REGISTRY`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..spec.metric_registry import ALWAYS, AfterContext, ScoringContext, metrics_running
from ..store.results import append_scores, load_results


def check_metrics(names: list[str], models: dict | None = None) -> None:
    """Raise ModelNotAvailableError before any image when a metric's model weights are not cached."""
    if any(metric.model for metric in metrics_running(names, "after")):
        from ..metrics.model_scorers import check_weights  # transformers and the hub client, only when a model is needed
        check_weights(names, models)


def writer_scores(names: list[str], image, context: ScoringContext) -> dict:
    """The writer metrics among `names` for one image: {column: value}."""
    scores = {}
    for metric in metrics_running(names, "writer"):
        scores.update(metric.score_function()(image, context))
    return scores


def scored_results(run_dir, what: str):
    """(absolute run folder, its table) with the scores folders from before metrics.jsonl lack filled in; a
    ValueError for a folder with no rows, saying what could not be made of it (`what`: "report", "export")."""
    run_dir = Path(run_dir).resolve()
    if run_dir.is_dir():
        fill_scores(run_dir)  # a folder from before metrics.jsonl held lora_effect
    table = load_results(run_dir)
    if table.empty:
        raise ValueError(f"run folder {str(run_dir)!r} has no rows to {what}")
    return run_dir, table


def fill_scores(run_dir: Path) -> list[str]:
    """Score what needs no model (`ALWAYS`: lora_effect) for rows that lack it, as a sweep does when it ends."""
    return score_after_sweep(run_dir, [], "cpu")


def score_after_sweep(run_dir: Path, names: list[str], device, models: dict | None = None, trial_ids=None) -> list[str]:
    """Score the rows that lack an after metric (of `names`, and `ALWAYS`); append to metrics.jsonl.

    Returns the names of the metrics that scored at least one image.
    """
    metrics = metrics_running([*names, *ALWAYS], "after")
    if not metrics:
        return []
    table = load_results(run_dir)
    table = table[table.state == "COMPLETE"] if len(table) else table
    if table.empty:
        return []
    context = AfterContext(table, Path(run_dir), device, dict(models or {}))
    mine = table.trial_id.isin(trial_ids) if trial_ids is not None else pd.Series(True, index=table.index)
    values: dict = {}
    scored = []
    for scorer in dict.fromkeys(metric.scorer for metric in metrics):  # clip_score and clip_image share one
        share = [metric for metric in metrics if metric.scorer == scorer]
        columns = [column for metric in share for column in metric.columns]
        missing = np.logical_or.reduce([table[c].isna() if c in table else pd.Series(True, index=table.index)
                                        for c in columns])
        todo = table[mine & missing]
        found = share[0].score_function()(todo, context, {metric.name for metric in share}) if len(todo) else {}
        for trial, scores in found.items():
            values.setdefault(trial, {}).update(scores)
        scored += [metric.name for metric in share] if found else []
    append_scores(run_dir, values)
    return scored
