"""Model profiles: the values a lesson and a spec take on each model and device, with the toy's exactly as before."""

import json

import pytest
import yaml

from workbench.profiles import profile
from workbench.spec import expand, resolve_spec, spec_from_dict

CAPTION = "a red circle on a blue background"


def test_the_toy_profile_is_todays_defaults_so_toy_trial_ids_do_not_change():
    left_out = spec_from_dict({"prompt": CAPTION, "seed": [0, 1]})
    written = spec_from_dict({"prompt": CAPTION, "seed": [0, 1], "steps": 20, "guidance": 5.0, "scheduler": "ddim"})
    assert (left_out.steps, left_out.guidance, left_out.scheduler) == ([20], [5.0], ["ddim"])
    assert [t.trial_id for t in expand(left_out, "fp")] == [t.trial_id for t in expand(written, "fp")]
    toy = profile("toy", "cpu")
    assert (toy.resolution, toy.steps, toy.guidance, toy.scheduler, toy.shortened) == (64, 20, 5.0, "ddim", False)
    plan = ("dtype", "offload", "vae_slicing", "vae_tiling", "max_batch")  # a GPU's memory plan differs, nothing else
    on_gpu, on_cpu = profile("toy", "cuda").__dict__, profile("toy", "cpu").__dict__
    assert {k: v for k, v in on_gpu.items() if k not in plan} == {**{k: v for k, v in on_cpu.items() if k not in plan},
                                                                  "device": "cuda"}


@pytest.mark.parametrize("model,steps,guidance,scheduler", [("sd15", 30, 7.5, "dpm++2m"), ("sdxl", 30, 5.0, "euler"),
                                                            ("stabilityai/stable-diffusion-xl-base-1.0", 30, 5.0, "euler"),
                                                            ("someone/an-sd15-finetune", 30, 7.5, "dpm++2m")])
def test_a_spec_that_leaves_values_out_takes_its_models_and_saves_them(tmp_path, model, steps, guidance, scheduler):
    built = spec_from_dict({"model": model, "prompt": CAPTION})
    assert built.resolved == (model != "someone/an-sd15-finetune")  # a name no family lists waits for its files
    spec = resolve_spec(built)
    assert (spec.steps, spec.guidance, spec.scheduler) == ([steps], [guidance], [scheduler])
    spec.save(tmp_path / "spec.yaml")
    saved = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    assert (saved["steps"], saved["guidance"], saved["scheduler"]) == ([steps], [guidance], [scheduler])
    assert spec_from_dict({"model": model, "steps": 7}).steps == [7]  # a value given is kept


def test_a_real_model_on_a_cpu_is_shortened_and_says_so():
    cpu, gpu = profile("sd15", "cpu"), profile("sd15", "cuda")
    assert (cpu.resolution, cpu.steps, cpu.seeds, cpu.shortened) == (128, 2, [0], True)
    assert (gpu.resolution, gpu.steps, gpu.mixed_precision, gpu.shortened) == (512, 30, "fp16", False)
    assert "SHORTENED for a CPU" in str(cpu) and "SHORTENED" not in str(gpu)
    xl = profile("sdxl", "cpu")
    assert (xl.resolution, xl.gradient_checkpointing, xl.controlnets[0]) == (256, True, "diffusers/controlnet-canny-sdxl-1.0")
    for tiny in ("tiny", "tiny-sdxl"):  # test models are the same everywhere: never shortened
        assert not profile(tiny, "cpu").shortened and profile(tiny, "cpu").resolution == 32
    assert profile("toy", "auto").device in ("cpu", "cuda", "mps")
    assert (cpu.ranks, cpu.train_seeds, cpu.scenes) == ([1, 4], [0, 1], 2)  # a rank study in minutes
    for real in (gpu, profile("sdxl", "cuda")):  # the lesson settings every real model shares (`profiles.LESSON`)
        assert (real.seeds, real.ranks, real.train_seeds, real.scenes, real.lora_steps) == (
            [0, 1, 2, 3], [2, 4, 8, 16, 32], [0, 1, 2], 8, 500)
    toy = profile("toy", "cpu")  # notebook 02's study, as its shipped adapters were trained
    assert (toy.ranks, toy.train_seeds, toy.scenes, toy.report_metric, toy.content_metric) == (
        [1, 2, 4, 8, 16], [0, 1, 2], 12, "style_strength", "colour_fidelity")


def fake_snapshot(cache, repo_id):
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc")
    (repo / "snapshots" / "abc").mkdir(parents=True)


def test_model_metrics_are_requested_only_when_their_weights_are_cached(tmp_path, monkeypatch):
    from workbench.metric_registry import CLIP_ID, DINO_ID
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr("workbench.profiles._told", set())  # the note is said once per process
    with pytest.warns(UserWarning, match="not in the hub cache: this profile reports lora_effect"):
        bare = profile("sdxl", "cuda")
    assert bare.metrics == ["edge"] and bare.report_metric == "lora_effect" and bare.content_metric == "edge_f1"
    assert CLIP_ID in bare.notes[0] and DINO_ID in bare.notes[0] and "huggingface-cli download" in bare.notes[0]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "full"))
    for repo_id in (CLIP_ID, DINO_ID):
        fake_snapshot(tmp_path / "full", repo_id)
    full = profile("sdxl", "cuda")
    assert full.metrics == ["edge", "clip_score", "dino"] and full.report_metric == "dino_distance" and not full.notes
    assert full.content_metric == "clip_score"


def test_a_folder_gets_its_familys_profile(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLControlNetPipeline",
                                                           "text_encoder_2": ["transformers", "CLIPTextModel"]}))
    assert profile(str(tmp_path), "cuda").family == "sdxl" and profile(str(tmp_path), "cuda").resolution == 1024
    with pytest.raises(ValueError, match="`model` must be"):
        profile(None)


PURITY_SCRIPT = '''
import json, sys
from workbench.spec import SweepSpec, count_trials, expand, resolve_spec, spec_from_dict
expand(spec_from_dict({"model": "toy", "prompt": "warm-up"}))  # imports done before we listen
events, listening = [], [False]
sys.addaudithook(lambda event, args: events.append((event, str(args[0])[-40:]))
                 if listening[0] and event in ("open", "os.listdir", "os.scandir") else None)
listening[0] = True
folder = sys.argv[1]
def error_of(call) -> str:
    try:
        call()
        return ""
    except ValueError as err:
        return str(err)
built = spec_from_dict({"model": folder, "prompt": "a cat", "resolution": 8192, "seed": [0, 1]})
n = count_trials(built)
refused = error_of(lambda: expand(built))
pure = list(events)
too_big = error_of(lambda: resolve_spec(built))
resolved = resolve_spec(spec_from_dict({"model": folder, "prompt": "a cat", "resolution": 512}))
listening[0] = False
print(json.dumps({"pure": pure, "n": n, "refused": refused, "too_big": too_big, "resolved": resolved.resolved,
                  "defaults": [resolved.steps, resolved.guidance, resolved.scheduler],
                  "read": sorted({path for _, path in events[len(pure):]}), "trials": len(expand(resolved))}))
'''


def test_building_checking_and_expanding_a_spec_reads_no_file_and_resolving_reads_the_model(tmp_path):
    """A spec for an SDXL folder: built, checked and counted with no file opened (audit hooks listen); expanding it
    is refused until `resolve_spec` reads the folder's model_index.json and configs for its defaults and size."""
    import subprocess
    import sys
    folder = tmp_path / "my-sdxl"
    for part, config in (("unet", {"sample_size": 128}), ("vae", {"block_out_channels": [128, 256, 512, 512]})):
        (folder / part).mkdir(parents=True)
        (folder / part / "config.json").write_text(json.dumps(config))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline",
                                                          "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}))
    result = subprocess.run([sys.executable, "-c", PURITY_SCRIPT, str(folder)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["pure"] == [] and facts["n"] == 2
    assert "resolve_spec" in facts["refused"]
    assert "8192" in facts["too_big"] and "1024 px" in facts["too_big"]  # its size, read from its configs
    assert facts["resolved"] and facts["defaults"] == [[30], [5.0], ["euler"]]  # SDXL's, from its model_index.json
    assert any(path.endswith("model_index.json") for path in facts["read"]) and facts["trials"] == 1


def test_real_models_clip_lora_gradients_as_the_reference_scripts_and_the_toy_trains_as_its_adapters_were():
    for model in ("sd15", "sdxl"):
        assert profile(model, "cuda").lora_options["max_grad_norm"] == 1.0  # train_text_to_image_lora*.py's default
        assert profile(model, "cpu").lora_options["max_grad_norm"] == 1.0
    for model in ("toy", "tiny", "tiny-sdxl"):  # their shipped adapters and cache keys were trained without it
        assert "max_grad_norm" not in profile(model, "cpu").lora_options
