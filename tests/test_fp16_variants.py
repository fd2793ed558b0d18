"""fp16 variants (issue #38, item 2): caches and folders that hold `*.fp16.safetensors`, as model repositories publish."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench import generate, load_pipeline
from workbench.models.control import control_for
from workbench.models.pipeline import weights_variant

from hub_cache import write_snapshot

ROOT = Path(__file__).resolve().parents[1]
CAPTION = "a red circle on a blue background"


def test_the_variant_is_read_where_it_is_all_there_is_or_the_dtype_is_half(tmp_path):
    only, both = tmp_path / "only" / "unet", tmp_path / "both" / "unet"
    for folder in (only, both):
        folder.mkdir(parents=True)
        (folder / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"")
    (both / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert weights_variant(only.parent, torch.float32) == "fp16"  # nothing else to read
    assert weights_variant(both.parent, torch.float32) is None    # full precision reads the full files
    assert weights_variant(both.parent, torch.float16) == weights_variant(both.parent, torch.bfloat16) == "fp16"
    assert weights_variant(None, torch.float16) == "fp16" and weights_variant(None, torch.float32) is None  # downloads


@pytest.fixture(scope="module")
def variant_only(tmp_path_factory):
    """The tiny pipeline saved as a repository's fp16 variant only (`save_pretrained(variant="fp16")`)."""
    from workbench.families.sd15 import build_tiny_pipeline
    folder = tmp_path_factory.mktemp("variant") / "tiny-fp16"
    build_tiny_pipeline(seed=0).to(torch.float16).save_pretrained(folder, variant="fp16")
    assert not [p for p in folder.rglob("*.safetensors") if ".fp16." not in p.name]
    return folder


def test_a_folder_of_fp16_variants_only_loads_and_draws_the_models_image(variant_only, tmp_path):
    """The same weights as plain files (the tiny model rounded through fp16), loaded the same way: the same image."""
    from workbench.families.sd15 import build_tiny_pipeline
    build_tiny_pipeline(seed=0).to(torch.float16).to(torch.float32).save_pretrained(tmp_path / "plain")
    control = control_for(f"toy:{CAPTION}", 32)
    images = []
    for folder in (variant_only, tmp_path / "plain"):
        pipe = load_pipeline(str(folder), device="cpu")  # its own controlnet/ beside the base
        assert pipe.unet.dtype == torch.float32  # fp16 files read into fp32 weights, computed in fp32 on the CPU
        images.append(np.asarray(generate(pipe, CAPTION, control, 0, steps=3)[0]))
    assert np.array_equal(images[0], images[1])  # same process, batch, code path and weights


def test_a_hub_cache_of_fp16_variants_only_loads_offline(variant_only, tmp_path):
    hf_home = tmp_path / "hf_home"
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(variant_only), str(copy)], check=True)
    write_snapshot(hf_home, "someone/tiny-fp16", copy)
    script = ("from workbench import load_pipeline; import json; pipe = load_pipeline('someone/tiny-fp16', device='cpu'); "
              "print(json.dumps({'unet': str(pipe.unet.dtype), 'family': type(pipe).__name__}))")
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"unet": "torch.float32",
                                                                 "family": "StableDiffusionControlNetPipeline"}
