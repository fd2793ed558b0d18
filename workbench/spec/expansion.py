"""How a spec's parameters combine into trials: its dimensions, counted and combined without expanding. No torch.

    mode: product                 every value of every axis with every other (a grid)
    mode: zip                     all axes side by side: trial i takes value i of each
    link: [[adapter, lora_weight]] in a product, these axes step together: value i of one with value i of
                                  the other, one dimension of the grid (each LoRA at its own weight)

A dimension is (names, rows): one axis and its values, or a linked group and its zipped values.
A trial is one row from each dimension, so a linked trial has exactly the parameters (and the
trial id) of the same trial in a full product: growing a folder from one to the other reuses it.
"""

from __future__ import annotations

import itertools
import math


def dimensions(parameters: dict, mode: str = "product", link: list | tuple = ()) -> list[tuple[tuple, list]]:
    """[(names, rows)]: the spec's dimensions in parameter order (a linked group where its first axis stands)."""
    if mode == "zip":
        n = max([len(values) for values in parameters.values() if len(values) > 1], default=1)
        rows = [tuple(values[i] if len(values) > 1 else values[0] for values in parameters.values()) for i in range(n)]
        return [(tuple(parameters), rows)]
    group_of = {name: tuple(group) for group in link for name in group}
    found, seen = [], set()
    for name in parameters:
        names = group_of.get(name, (name,))
        if names not in seen:
            seen.add(names)
            found.append((names, list(zip(*(parameters[n] for n in names)))))
    return found


def combos(parameters: dict, mode: str = "product", link: list | tuple = ()) -> list[dict]:
    """Every trial's parameters, in expansion order, each dict in parameter order."""
    order = list(parameters)
    found = dimensions(parameters, mode, link)
    trials = []
    for choice in itertools.product(*(rows for _, rows in found)):
        values = {name: value for (names, _), row in zip(found, choice) for name, value in zip(names, row)}
        trials.append({name: values[name] for name in order})
    return trials


def count(parameters: dict, mode: str = "product", link: list | tuple = ()) -> int:
    """How many trials the dimensions make, without making them."""
    return math.prod(len(rows) for _, rows in dimensions(parameters, mode, link))


def pairs_of(parameters: dict, names: tuple, mode: str = "product", link: list | tuple = ()) -> list[tuple]:
    """The distinct value tuples of `names` the expansion will produce, from only the dimensions that hold them."""
    found = [(dim_names, rows) for dim_names, rows in dimensions(parameters, mode, link)
             if set(dim_names) & set(names)]
    tuples = []
    for choice in itertools.product(*(rows for _, rows in found)):
        values = {name: value for (dim_names, _), row in zip(found, choice) for name, value in zip(dim_names, row)}
        tuples.append(tuple(values[name] for name in names))
    return list(dict.fromkeys(tuples))


def check_link(link, parameters: dict, mode: str) -> None:
    """Raise ValueError naming what is wrong with a spec's `link` groups."""
    if not isinstance(link, list) or not all(isinstance(group, list) for group in link):
        raise ValueError(f"`link` is a list of groups of axis names, e.g. [[adapter, lora_weight]]; got {str(link)[:80]}")
    if link and mode != "product":
        raise ValueError("`link` steps groups of axes together inside a product; with mode 'zip' every axis is "
                         "already stepped together: leave out `link`, or use mode 'product'")
    seen = set()
    for group in link:
        unknown = [name for name in group if name not in parameters]
        if len(group) < 2 or unknown:
            raise ValueError(f"a `link` group names two or more of the spec's axes, got {str(group)[:80]}"
                             + (f" ({unknown[0]!s:.40} is not one; axes: {list(parameters)})" if unknown else ""))
        twice = seen & set(group)
        if twice:
            raise ValueError(f"axis {sorted(twice)[0]!r} is in two `link` groups; an axis steps with one group")
        seen |= set(group)
        lengths = {name: len(parameters[name]) for name in group}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"linked axes step together, so they need as many values each; got {lengths}")
