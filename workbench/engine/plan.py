"""A sweep's plan stage: what to draw (a `Plan`), and its trials -> batches, each one pipeline call (pure: no model,
no files).

A plan is what the engine (`sweep.run_plan`) draws into a run folder: a spec's trials, and the values each of their
rows carries. A sweep is one plan: its spec, recorded in the folder. A search is many: one candidate a plan, its rows
tagged with the candidate's number, the search spec recorded by the search itself.

Trials that differ only in what a batch can vary per image (the seed, each control unit's scale and
schedule; with shared prefixes their start and end too) form a batch group. Groups are ordered so
that adapter, weight and sampler switches happen least often, shared among processes whole, and cut
into batches of at most `max_batch` images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..spec.axes import BUILTIN, SWITCHES
from ..spec.sweep_spec import SweepSpec, Trial
from ..spec.units import Unit


@dataclass(frozen=True)
class Plan:
    """What the engine draws into one run folder: every trial of `spec` not finished there.

    records_spec: the plan's spec is the folder's (a sweep): spec.yaml is written, and a new spec grows the sweep
        (`store/growth.py`). False when a caller records its own (a search: search.yaml); the folder's
        spec.yaml, if any, still fixes its model.
    tags: values every new row carries besides its trial's (a search's candidate number: {"search_trial": 3}).
    """
    spec: SweepSpec
    records_spec: bool = True
    tags: dict = field(default_factory=dict)


def batched_keys(units: list[Unit], share_prefix: bool = False) -> tuple[str, ...]:
    """Trials differing only in these share one batch: the axes whose record says `batched="always"` (the seed, every
    unit's scale and schedule), and with `share_prefix` the `"shared"` ones too (every unit's start and end: the
    engine's own loop, `denoise.py`, gives each trial its own)."""
    kinds = ("always", "shared") if share_prefix else ("always",)
    axes = [axis for axis in BUILTIN if axis.batched in kinds]  # registered axes are applied per call, never batched
    return tuple(key for axis in axes for key in ([unit.key(axis.name) for unit in units] if axis.unit else [axis.key]))


def batch_key(trial: Trial, batched: tuple[str, ...]) -> tuple:
    """The trial's parameters that one pipeline call shares: all but the `batched` ones."""
    return tuple((k, v) for k, v in trial.params.items() if k not in batched)


def switch_cost(group: list[Trial]) -> tuple:
    """A batch group's place in the order: its values of the switch axes (`axes.SWITCHES`: adapter, LoRA weight,
    blocks, sampler, costliest first), then its first trial's index in the spec."""
    params = group[0].params
    return (*("" if params.get(key) is None else params[key] for key in SWITCHES), group[0].index)


def batch_groups(trials: list[Trial], batched: tuple[str, ...] = ("seed", "conditioning_scale")) -> list[list[Trial]]:
    """Group trials that differ only in the `batched` axes; order the groups so that switches happen least often."""
    groups: dict[tuple, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(batch_key(trial, batched), []).append(trial)
    return sorted(groups.values(), key=switch_cost)


def my_groups(ordered: list[list[Trial]], finished: set, rank: int, world_size: int,
              share_prefix: bool = False) -> list[list[Trial]]:
    """This process's share of the ordered groups (every world_size-th, from `rank`: each process computes the same
    split whatever it finds finished, and seeds stay batched), without the finished trials; with `share_prefix`, a
    seed's trials side by side, so a batch cut at max_batch keeps what they share together."""
    groups = [[t for t in group if t.trial_id not in finished] for group in ordered[rank::world_size]]
    if share_prefix:
        groups = [sorted(group, key=lambda t: (t.params["seed"], t.index)) for group in groups]
    return groups


def cut_batches(groups: list[list[Trial]], max_batch: int) -> list[list[Trial]]:
    """The groups cut into batches of at most `max_batch` trials, in order."""
    return [group[i:i + max_batch] for group in groups for i in range(0, len(group), max_batch)]
