"""The scorers the metric registry (`spec/metric_registry.py`) names.

    scorers.py        edges against the control, silhouettes, LoRA effect: read images, no extra weights
    model_scorers.py  CLIP score and DINO distance: need those models' weights

`workbench.metrics` itself offers what `scorers.py` defines, as the single module of that name always did.
"""

from .scorers import *  # noqa: F401,F403
