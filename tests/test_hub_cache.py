"""The real SD1.5 path, rehearsed offline: a hub cache as `huggingface-cli download` leaves it.

Random weights with the published configs, stored in fp16, and the real CLIP tokenizer.
Both tests together take about a minute on 2 cores: the only guard of the real loading path,
so they run in the default suite.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hub_cache import write_sd15_cache
from lora_files import write_sd15_kohya_lora

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sd15_cache(tmp_path_factory):
    from workbench.families.sd15 import SD15_CANNY_ID, SD15_ID
    root = tmp_path_factory.mktemp("hub")
    write_sd15_cache(root / "hf_home", SD15_ID, SD15_CANNY_ID, root / "work")
    counts = write_sd15_kohya_lora(root / "kohya_te.safetensors")
    return root, counts


def offline_env(hf_home: Path) -> dict:
    return {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2",
            "PYTHONPATH": str(ROOT)}


@pytest.mark.slow  # 39 s with its cache: the full-size SD1.5 rehearsal; tiny caches load offline in the default suite
def test_sd15_preset_sweeps_with_a_kohya_text_encoder_lora_from_the_cache(sd15_cache):
    root, counts = sd15_cache
    spec = {"model": "sd15", "prompt": "a photo of a cat", "control_image": "toy:a red star on a blue background",
            "resolution": 128, "steps": 2, "conditioning_scale": [1.0], "seed": [0],
            "adapters": {"kohya": str(root / "kohya_te.safetensors")}, "adapter": ["kohya"],
            "lora_weight": [0.0, 1.0]}
    (root / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-m", "workbench", "sweep", str(root / "spec.json"),
                           "--run-dir", str(root / "run")], env=offline_env(root / "hf_home"), cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(root / "run" / "results.csv")
    assert len(table) == 2 and (table.state == "COMPLETE").all()
    effect = table.set_index("lora_weight").lora_effect
    assert effect[0.0] == 0 and effect[1.0] > 0  # the adapter changes the image; weight 0 is the base


@pytest.mark.slow  # 26 s with its cache (the full-size rehearsal above)
def test_removed_runwayml_id_loads_the_cached_mirror_and_every_kohya_layer(sd15_cache):
    root, counts = sd15_cache
    script = f"""
import json
from workbench import load_pipeline
from workbench.lora import adapter_layer_counts, load_lora
pipe = load_pipeline("runwayml/stable-diffusion-v1-5", controlnet="lllyasviel/sd-controlnet-canny", device="cpu")
info = load_lora(pipe, {str(root / "kohya_te.safetensors")!r}, "kohya")
print(json.dumps({{"class": type(pipe).__name__, "vocab": len(pipe.tokenizer), "info": info,
                   "ids": pipe.tokenizer("a photo of a cat").input_ids,
                   "counts": adapter_layer_counts(pipe, "kohya")}}))
"""
    done = subprocess.run([sys.executable, "-c", script], env=offline_env(root / "hf_home"), cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["class"] == "StableDiffusionControlNetPipeline" and facts["vocab"] == 49_408
    assert facts["ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]  # CLIP's own ids for this prompt
    assert facts["info"]["format"] == "kohya" and facts["info"]["layers"] == sum(counts.values()) == 200
    assert facts["counts"] == counts  # every UNet and text-encoder layer arrived
