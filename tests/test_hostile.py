"""Files from someone else: no pickle runs, no path leaves the run folder, no reader hangs or blows up memory."""

import os
import pickle
import time

import pytest
import torch
from safetensors.torch import load_file

from workbench import load_results, run_sweep, train_lora
from workbench.spec import spec_from_dict
from workbench.toy.data import make_dataset

CAPTION = "a red circle on a blue background"


class PlantedPickle:
    """Unpickling this creates a file: the proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path, marker):
    with open(path, "wb") as f:
        pickle.dump({"settings": PlantedPickle(marker)}, f)


# ---- 1. no pickle anywhere -----------------------------------------------------------------------

def test_a_planted_training_checkpoint_does_not_run(tiny_pipe, tmp_path):
    marker = tmp_path / "pwned"
    plant(tmp_path / "evil.checkpoint.pt", marker)
    with pytest.raises(ValueError, match="evil.checkpoint.pt is not a checkpoint this project wrote"):
        train_lora(tiny_pipe, make_dataset(4, size=32), rank=2, steps=2, out_dir=tmp_path, adapter_name="evil",
                   load=False)
    assert not marker.exists()


def test_the_toy_trainer_refuses_a_planted_checkpoint(tmp_path):
    from workbench.checkpoints import load_checkpoint
    marker = tmp_path / "pwned"
    plant(tmp_path / "unet.pt", marker)
    with pytest.raises(ValueError, match="not a checkpoint this project wrote"):
        load_checkpoint(tmp_path / "unet.pt")
    assert not marker.exists()


@pytest.fixture(scope="module")
def adapter_file(tmp_path_factory):
    from workbench.families.sd15 import build_tiny_pipeline
    pipe = build_tiny_pipeline(seed=0)
    folder = tmp_path_factory.mktemp("adapter")
    return pipe, train_lora(pipe, make_dataset(4, size=32), rank=2, steps=2, out_dir=folder, load=False)


@pytest.mark.parametrize("name", ["evil.PT", "evil.Bin", "evil.ckpt", "evil.safetensors"])
def test_a_pickle_is_refused_as_a_lora_whatever_its_name(adapter_file, tmp_path, name):
    from workbench.lora import load_lora
    pipe, _ = adapter_file
    marker = tmp_path / "pwned"
    plant(tmp_path / name, marker)
    reason = "is named .safetensors but is not one" if name.endswith(".safetensors") else "only safetensors files"
    with pytest.raises(ValueError, match=reason):
        load_lora(pipe, tmp_path / name, "evil")
    assert not marker.exists()


def test_allow_pickle_is_an_explicit_python_choice_that_warns(adapter_file, tmp_path):
    from workbench.lora import load_lora, unload_adapter
    pipe, path = adapter_file
    torch.save(load_file(str(path)), tmp_path / "mine.bin")  # the same adapter, as a (weights-only) pickle
    with pytest.warns(UserWarning, match="allow_pickle=True: a pickle can run any code"):
        load_lora(pipe, tmp_path / "mine.bin", "mine", allow_pickle=True)
    unload_adapter(pipe, "mine")
    marker = tmp_path / "pwned"
    plant(tmp_path / "evil.bin", marker)  # even then, diffusers reads it with weights_only: nothing runs
    with pytest.warns(UserWarning), pytest.raises(Exception):
        load_lora(pipe, tmp_path / "evil.bin", "evil", allow_pickle=True)
    assert not marker.exists()


def test_a_spec_cannot_allow_a_pickle(tmp_path):
    with pytest.raises(ValueError, match="Unknown spec key: 'allow_pickle'"):
        spec_from_dict({"allow_pickle": True})


# ---- 4. bounded parsing of untrusted PNGs ---------------------------------------------------------

def finishes(function, *args, seconds: float = 20.0):
    """Run function(*args) in a thread; True when it returns within `seconds` (the quadratic parser took minutes)."""
    import threading
    done = threading.Event()
    def run():
        try:
            function(*args)
        except ValueError as err:  # refused, with a short message: finished all the same
            assert len(str(err)) < 1000
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return done.is_set()


@pytest.mark.parametrize("text", ["a" * 400_000, "Steps" + " x" * 200_000, "<lora:" * 70_000,
                                  'p\nSteps: "' + "\\" * 400_000, "p\n" + ("k:" + " " * 1000) * 400])
def test_a_long_infotext_without_separators_parses_in_linear_time(text):
    from workbench.infotext import parse_infotext
    assert finishes(parse_infotext, text)


def test_a_png_with_a_huge_parameters_text_is_refused_unread(tmp_path):
    from PIL import Image

    from workbench.infotext import png_info, read_png_parameters
    Image.new("RGB", (8, 8)).save(tmp_path / "big.png", pnginfo=png_info("a" * 400_000))
    with pytest.raises(ValueError, match="400,000 characters, more than the 65,536"):
        read_png_parameters(tmp_path / "big.png")


def test_the_parameters_chunk_is_read_without_decoding_pixels(tmp_path, monkeypatch):
    from PIL import Image, ImageFile

    from workbench.infotext import format_infotext, png_info, read_png_parameters
    params = {"prompt": CAPTION, "negative_prompt": "", "steps": 4, "scheduler": "ddim", "guidance": 5.0, "seed": 1,
              "conditioning_scale": 1.0, "control_guidance_start": 0.0, "control_guidance_end": 1.0,
              "canny_low": 100, "canny_high": 200}
    Image.new("RGB", (4096, 4096)).save(tmp_path / "large.png", pnginfo=png_info(format_infotext(params, 8, 8, "toy")))
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("the pixels were decoded"))
    assert read_png_parameters(tmp_path / "large.png")["seed"] == 1


from hypothesis import given, settings, strategies as st  # noqa: E402

pieces = st.sampled_from(["<lora:", "a", ":", ",", '"', "\\", " ", "\n", "Steps: 3", "lbw=", ">", "0.5", "Seed"])


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces, max_size=400))
def test_the_infotext_parser_never_crashes_on_hostile_pieces(parts):
    from workbench.infotext import parse_infotext
    text = "".join(parts)
    try:
        parse_infotext(text)
    except ValueError:
        pass  # an empty text, or a number that does not parse: refused, never a crash


# ---- 5. specs that cannot blow up memory or the stack ---------------------------------------------

LAUGHS = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                   + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                      f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
                      for i in range(8)] + ["prompt: *i"])


def test_a_billion_laughs_spec_is_refused_before_anything_expands(tmp_path):
    from workbench.__main__ import main
    (tmp_path / "laughs.yaml").write_text(LAUGHS)
    assert len(LAUGHS) < 600
    started = time.perf_counter()
    assert main(["sweep", str(tmp_path / "laughs.yaml"), "--run-dir", str(tmp_path / "run")]) == 2
    assert time.perf_counter() - started < 30  # 43 s and 5 GB before; refused from the YAML events now
    assert not (tmp_path / "run").exists()


def test_the_alias_refusal_says_why(tmp_path):
    from workbench.spec import load_spec
    (tmp_path / "spec.yaml").write_text("prompt: &p a red circle on a blue background\nnegative_prompt: *p\n")
    with pytest.raises(ValueError, match=r"uses YAML aliases \(\*name\)"):
        load_spec(tmp_path / "spec.yaml")


def test_nesting_hundreds_deep_is_a_clear_error(tmp_path):
    from workbench.spec import load_spec
    (tmp_path / "deep.yaml").write_text("prompt: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_spec(tmp_path / "deep.yaml")
    deep = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested too deeply|must be strings") as caught:
        spec_from_dict({"prompt": [deep]})
    assert len(str(caught.value)) < 600


def test_errors_quote_a_huge_value_shortly():
    with pytest.raises(ValueError) as caught:
        spec_from_dict({"prompt": [["x" * 1_000_000]]})
    assert "prompts must be strings" in str(caught.value) and len(str(caught.value)) < 600


@pytest.mark.parametrize("changes,match", [
    ({"steps": 100_000}, "over the limit of 1000 steps"),
    ({"seed": list(range(1001))}, "over the limit of 1000 seeds"),
    ({"metric_models": {"edge": "x/y"}}, "`metric_models` names 'edge', which loads no model"),
    ({"metric_models": {"dino": ["x"]}}, r"`metric_models` dino: give a hub id or a folder"),
])
def test_limits_name_the_limit(changes, match):
    with pytest.raises(ValueError, match=match):
        spec_from_dict({"model": "tiny", "max_trials": 100_000, **changes})


def test_a_ladder_rung_has_an_upper_bound(tmp_path):
    from workbench.lora import lora_rank_ladder
    (tmp_path / "x.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="over the limit of 4096"):
        lora_rank_ladder(tmp_path / "x.safetensors", ranks=[2, 10**9])


def test_a_huge_spec_file_is_refused_unread(tmp_path):
    from workbench.spec import load_spec
    (tmp_path / "big.yaml").write_text("prompt: " + "x" * 2_000_000)
    with pytest.raises(ValueError, match="more than the 1,000,000 a sweep spec needs"):
        load_spec(tmp_path / "big.yaml")


# ---- 6. a search's budget is the number of images ---------------------------------------------------

def search_spec(**more):
    return {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2,
            "conditioning_scale": {"low": 0.0, "high": 1.5}, "seed": [0, 1], **more}


def test_a_search_budget_counts_every_list_axis(tiny_pipe, tmp_path):
    import json

    from workbench import search
    spec = search_spec(guidance=[3.0, 5.0, 7.0, 9.0])  # 4 guidances x 2 seeds: 8 images a candidate
    with pytest.raises(ValueError, match="buys 1 candidate.* of 8 images each.*give at least 16"):
        search(tiny_pipe, spec, tmp_path / "small", target="edge_recall>=0.0", minimize="conditioning_scale",
               budget=8, log=lambda m: None)
    result = search(tiny_pipe, spec, tmp_path / "run", target="edge_recall>=0.0", minimize="conditioning_scale",
                    budget=16, log=lambda m: None)
    assert result.images <= 16 and len(load_results(tmp_path / "run")) <= 16
    saved = json.loads((tmp_path / "run" / "search.json").read_text())
    assert saved["budget"] == {"images": 16, "images_per_candidate": 8, "candidates": 2}


# ---- 7. concurrency -------------------------------------------------------------------------------

def test_a_second_search_into_a_busy_folder_touches_nothing(tiny_pipe, tmp_path):
    from workbench import search
    from workbench.run_folder import RunFolderBusy, take_lock
    held = take_lock(tmp_path, "search", "a running search")  # the live search
    try:
        with pytest.raises(RunFolderBusy, match="in use by a running search"):
            search(tiny_pipe, search_spec(), tmp_path, target="edge_recall>=0.0", minimize="conditioning_scale",
                   budget=8, log=lambda m: None)
    finally:
        held.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock.search"]  # no journal, no search.yaml


def test_a_busy_run_folder_is_not_written_before_the_lock(tiny_pipe, tmp_path):
    from workbench.run_folder import RunFolderBusy, lock_run_dir
    spec = spec_from_dict({"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2})
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / ".abc.png.1.tmp").write_bytes(b"someone's")  # what cleaning would remove
    held = lock_run_dir(tmp_path, 0)
    try:
        with pytest.raises(RunFolderBusy):
            run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    finally:
        held.close()
    assert not (tmp_path / "spec.yaml").exists() and (tmp_path / "images" / ".abc.png.1.tmp").exists()


def test_a_stray_file_in_images_does_not_stop_a_run(tiny_pipe, tmp_path):
    spec = spec_from_dict({"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2})
    (tmp_path / "images").mkdir()
    for name in (".note.tmp", ".x.tmp", "..tmp", "notes.txt"):
        (tmp_path / "images" / name).write_text("mine")
    table = run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    assert (table.state == "COMPLETE").all() and (tmp_path / "images" / ".note.tmp").exists()


@pytest.mark.parametrize("env,match", [({"RANK": "1"}, "set together"), ({"WORLD_SIZE": "2"}, "set together"),
                                       ({"RANK": "2", "WORLD_SIZE": "2"}, "outside WORLD_SIZE 2"),
                                       ({"RANK": "-1", "WORLD_SIZE": "2"}, "outside WORLD_SIZE 2")])
def test_a_rank_without_its_world_is_refused(tmp_path, monkeypatch, capsys, env, match):
    from workbench.__main__ import main
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "spec.yaml").write_text(f"model: tiny\nprompt: {CAPTION}\ncontrol_image: 'toy:{CAPTION}'\nsteps: 2\n")
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "run")]) == 2
    assert match in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_run_sweep_refuses_a_rank_outside_the_world(tiny_pipe, tmp_path):
    spec = spec_from_dict({"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2})
    with pytest.raises(ValueError, match="rank 3 of world size 2"):
        run_sweep(tiny_pipe, spec, tmp_path, rank=3, world_size=2, log=lambda m: None)


def test_a_short_write_is_completed(tmp_path, monkeypatch):
    from workbench.results import ResultsLog, read_log
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:7])))  # 7 bytes at a time
    with ResultsLog(tmp_path / "results.jsonl") as log:
        log.append({"trial_id": "a" * 16, "state": "COMPLETE", "prompt": "x" * 100})
    rows, problems = read_log(tmp_path / "results.jsonl")
    assert problems == [] and rows[0]["prompt"] == "x" * 100
