"""Rank ladders, as the README names them (`workbench.ladder.ladder_adapters`): they live in `lora/analysis.py`."""

from .lora.analysis import ladder_adapters, lora_rank_ladder, norm_kept_table

__all__ = ["ladder_adapters", "lora_rank_ladder", "norm_kept_table"]
