"""A compiled pipeline's sweep: adapters take turns in one LoRA slot, weights are written in place (issue #40, item 4).

Counted with torch._dynamo's counters on a tiny model compiled with `backend="eager"` (tracing and guards as on a GPU,
no code generation). `benchmarks/compile_recompiles.py` sets this against the path by name (3 recompiles there).
"""

import pandas as pd
import pytest
import torch._dynamo
from PIL import Image
from torch._dynamo.utils import counters

from workbench import run_sweep
from workbench.families.sd15 import build_tiny_pipeline
from workbench.lora.hotswap import SLOT, hotswap_plan
from workbench.models.speed import compile_pipeline

from lora_files import write_kohya
from tolerance import assert_images_close

SOURCE = "toy:a red circle on a blue background"


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory):
    """Two UNet-only kohya files of ranks 2 and 4, and one with text-encoder layers."""
    folder, pipe = tmp_path_factory.mktemp("hotswap-loras"), build_tiny_pipeline(seed=0)
    for name, rank, text in (("a", 2, False), ("b", 4, False), ("te", 2, True)):
        write_kohya(pipe, folder / f"{name}.safetensors", rank=rank, alpha=2.0, text=text, seed=rank)
    return folder


def sweep(pipe, folder, lora_files):
    spec = {"model": "tiny", "prompt": ["a red circle"], "control_image": SOURCE, "steps": [2], "seed": [0],
            "adapters": {name: str(lora_files / f"{name}.safetensors") for name in ("a", "b")},
            "adapter": [None, "a", "b"], "lora_weight": [0.5, 1.0], "conditioning_scale": [0.5, 1.0], "metrics": False}
    return run_sweep(pipe, spec, folder, log=lambda *_: None)


def test_a_compiled_sweep_swaps_adapters_and_weights_without_a_recompile(lora_files, tmp_path):
    compiled = build_tiny_pipeline(seed=0)
    torch._dynamo.reset()
    counters.clear()
    compile_pipeline(compiled, backend="eager")
    swapped = sweep(compiled, tmp_path / "compiled", lora_files)
    assert counters["frames"]["ok"] == 2  # the UNet's and the ControlNet's first compile; 12 images, 0 recompiles
    assert list(compiled.unet.peft_config) == [SLOT]  # one slot, padded to rank 4
    reference = sweep(build_tiny_pipeline(seed=0), tmp_path / "eager", lora_files)  # adapters by name, not compiled
    assert len(swapped) == len(reference) == 12
    by_id = reference.set_index("trial_id")
    for row in swapped.itertuples():
        expected = by_id.loc[row.trial_id]
        for column in ("lora_rank", "lora_alpha"):  # the file's rank and alpha, not the slot's padded rank
            ours, theirs = getattr(row, column), expected[column]
            assert (pd.isna(ours) and pd.isna(theirs)) or ours == theirs, (column, ours, theirs)
        assert_images_close(Image.open(row.image_path).convert("RGB"), Image.open(expected.image_path).convert("RGB"),
                            f"{row.adapter} at {row.lora_weight}, scale {row.conditioning_scale}")


def test_what_cannot_take_turns_loads_by_name_and_says_why(lora_files):
    pipe = build_tiny_pipeline(seed=0)
    files = {"a": str(lora_files / "a.safetensors")}
    assert hotswap_plan(pipe, files, blocks=False) == (None, "")  # not compiled: nothing to avoid
    compile_pipeline(pipe, backend="eager")
    plan, why = hotswap_plan(pipe, {**files, "b": str(lora_files / "b.safetensors")}, blocks=False)
    assert why == "" and {name: file.rank for name, file in plan.items()} == {"a": 2, "b": 4}
    assert "text-encoder" in hotswap_plan(pipe, {**files, "te": str(lora_files / "te.safetensors")}, False)[1]
    assert "lora_blocks" in hotswap_plan(pipe, files, blocks=True)[1]
