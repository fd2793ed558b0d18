"""The benchmarks' code paths, run tiny on the CPU (their numbers mean nothing here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str, cwd: Path = ROOT) -> str:
    """Run benchmarks/<script> offline on 2 threads from `cwd`; fail with its stderr; return its stdout."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=cwd, capture_output=True,
                          timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done.stdout.decode()


@pytest.mark.integration  # 35 s: every path of the GPU-day sweep benchmark, on the CPU
def test_gpu_sweep_smoke_runs_every_path():
    report = json.loads(run_benchmark("gpu_sweep.py", "--smoke").split("\n### ")[0])
    for key in ("naive_images_per_s", "naive_resident_images_per_s", "engine_images_per_s", "ceiling_images_per_s",
                "tflops_per_image"):
        assert report[key] > 0, key
    assert report["images"] == 8


@pytest.mark.slow  # 7 s; the SD1.5 smoke above runs the same script's every path by default
def test_gpu_sweep_smoke_on_the_sdxl_architecture():
    report = json.loads(run_benchmark("gpu_sweep.py", "--smoke", "--arch", "sdxl").split("\n### ")[0])
    assert report["model"] == "tiny-sdxl" and report["engine_images_per_s"] > 0 and report["images"] == 8


@pytest.mark.slow  # 7 s, a GPU-day benchmark's CPU smoke: slow, to keep the default suite under 10 minutes
def test_gpu_profile_smoke_attributes_the_time():
    report = json.loads(run_benchmark("gpu_profile.py", "--smoke").split("\n### ")[0])
    parts = report["parts_s"]
    assert parts["UNet"] > 0 and parts["ControlNet"] > 0 and parts["VAE decode"] > 0 and report["writer_s"] > 0
    assert sum(parts.values()) == pytest.approx(report["wall_s"])  # every second attributed


@pytest.mark.slow  # 11 s a style, a research benchmark's smoke run: slow, to keep the default suite under 10 minutes
@pytest.mark.parametrize("style", ["outlined", "zebra"])
def test_lora_bench_smoke_trains_scores_and_switches(tmp_path, style):
    table = run_benchmark("lora_bench.py", "--ranks", "1", "2", "--steps", "2", "--n-eval", "1", "--style", style,
                          cwd=tmp_path)
    assert "| 1 |" in table and "| 2 |" in table and "Adapter switch" in table and f"{style} strength" in table
    assert (tmp_path / "outputs" / f"lora_bench_{style}_rank2_2steps.png").exists()


@pytest.mark.slow  # 20 s, a research benchmark's smoke run: slow, to keep the default suite under 10 minutes
def test_lora_layout_probe_smoke_reports_both_layouts(tmp_path):
    table = run_benchmark("lora_layout_probe.py", "--unet-steps", "2", "--lora-steps", "2", "--n-plain", "64",
                          cwd=tmp_path)
    assert "(toy)" in table and "(sd15)" in table and table.count("| rank 8 |") == 4
    for layout in ("toy", "sd15"):
        assert (tmp_path / "outputs" / f"lora_layout_{layout}.png").exists()


def test_gpu_check_says_there_is_no_gpu_and_succeeds():
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here: `make gpu-check` runs the real thing")
    assert "no CUDA device on this machine" in run_benchmark("gpu_check.py")


@pytest.mark.slow  # 19 s of fresh interpreters; test_package checks that `import workbench` loads no heavy library
def test_import_time_benchmark_compares_lazy_and_eager():
    report = run_benchmark("import_time.py", "--repeats", "1")
    assert "import workbench (lazy, now)" in report and "Eager / lazy: import" in report


def test_lora_step_smoke_on_both_families():
    """The gpu-check's LoRA step at the profiles' settings, on tiny models and the CPU: the code path runs."""
    out = run_benchmark("lora_step.py", "--smoke")
    assert "| tiny | 32 | no | True |" in out and "| tiny-sdxl | 32 | no | True |" in out


@pytest.mark.slow  # 10 s, a benchmark's smoke run (shared prefixes are tested in test_denoise): slow, for the budget
def test_shared_prefix_benchmark_smoke_counts_the_distinct_sample_steps():
    table = run_benchmark("shared_prefix.py", "--models", "toy", "--sweeps", "end", "--seeds", "1", "--steps", "8")
    cells = [c.strip() for c in next(l for l in table.splitlines() if l.startswith("| toy |")).strip("|").split("|")]
    assert cells[3].startswith("32,") and cells[4].startswith("20,")  # 4 ends x 8 steps; distinct: 2 + 4 + 6 + 8
    assert cells[7] in ("0/255", "1/255", "2/255")  # the suite's tolerance


@pytest.mark.slow  # 20 s: the notebook and its three exercises, each in a fresh kernel state
def test_exercise_times_measures_each_exercise_of_a_notebook():
    printed = run_benchmark("exercise_times.py", "00b")
    assert "| 00b | notebook |" in printed and "GUIDANCE = 1" in printed
    for exercise in (1, 2, 3):
        assert f"| 00b | {exercise} |" in printed
