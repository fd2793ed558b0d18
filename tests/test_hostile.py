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


# ---- 2. a run folder's rows cannot point outside it ---------------------------------------------------

def write_spec(folder, control="star.png", **more):
    """A spec file in `folder` whose control image is a file beside it (named relatively)."""
    import yaml

    from workbench.toy.world import render_scene, scene_from_caption
    folder.mkdir(parents=True, exist_ok=True)
    render_scene(scene_from_caption(CAPTION), 32).save(folder / "star.png")
    data = {"model": "tiny", "prompt": CAPTION, "control_image": control, "steps": 2, "seed": [0, 1], **more}
    (folder / "spec.yaml").write_text(yaml.safe_dump(data))
    return folder / "spec.yaml"


def test_a_sweep_resumed_from_another_folder_finds_its_trials(tmp_path, monkeypatch):
    from workbench.__main__ import main
    spec = write_spec(tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "specs/spec.yaml", "--run-dir", "runs/r"]) == 0
    rows = (tmp_path / "runs" / "r" / "results.jsonl").read_text().splitlines()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # a notebook beside the repository's root
    assert main(["sweep", "../specs/spec.yaml", "--run-dir", "../runs/r"]) == 0
    assert (tmp_path / "runs" / "r" / "results.jsonl").read_text().splitlines() == rows  # nothing redrawn
    assert all('"image_path": "images/' in row for row in rows) and spec.exists()


def test_linked_report_images_resolve_from_the_page(tiny_pipe, tmp_path, monkeypatch):
    import re

    from workbench.__main__ import main
    write_spec(tmp_path / "specs")
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "specs/spec.yaml", "--run-dir", "runs/r"]) == 0
    assert main(["report", "runs/r", "--link-images"]) == 0
    page = (tmp_path / "runs" / "r" / "report.html").read_text()
    sources = re.findall(r'"src": ?"([^"]+)"', page)
    assert len(sources) == 2 and all((tmp_path / "runs" / "r" / s).is_file() for s in sources), sources


def test_a_forged_row_cannot_embed_or_upload_a_local_file(tiny_pipe, tmp_path):
    import json

    from workbench.report import write_report
    spec = spec_from_dict({"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2})
    run_sweep(tiny_pipe, spec, tmp_path / "run", log=lambda m: None)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-PASSWORD-1234")
    row = json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])
    forged = [{**row, "trial_id": "f" * 16, "image_path": str(secret)},
              {**row, "trial_id": "e" * 16, "image_path": "../secret.txt"},
              {**row, "trial_id": "d" * 16, "image_path": f"images/{row['trial_id']}.png", "image_sha256": "0" * 64}]
    with open(tmp_path / "run" / "results.jsonl", "a") as log:
        for line in forged:
            log.write(json.dumps(line) + "\n")
    with pytest.warns(UserWarning, match="3 rows name no image of this folder"):
        page = write_report(tmp_path / "run").read_text()
    assert "SECRET" not in page and "U0VDUkVU" not in page  # nor its base64
    table = load_results(tmp_path / "run")
    assert all(path.startswith(str((tmp_path / "run" / "images").absolute())) for path in table.image_path if path)


def test_metrics_jsonl_adds_scores_only(tiny_pipe, tmp_path):
    import json
    spec = spec_from_dict({"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2})
    table = run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    trial = table.trial_id[0]
    with open(tmp_path / "metrics.jsonl", "a") as log:
        log.write(json.dumps({"trial_id": trial, "image_path": "/etc/passwd", "conditioning_scale": 9,
                              "state": "FAILED", "clip_score": 42.0, "dino_distance": "not a number"}) + "\n")
        log.write('{"trial_id": "' + trial + '", "clip_')  # a line torn by a crash
    from workbench.results import append_scores
    append_scores(tmp_path, {trial: {"dino_distance": 0.5}})
    again = load_results(tmp_path)
    assert again.clip_score[0] == 42.0 and again.dino_distance[0] == 0.5
    assert again.conditioning_scale[0] == 1.0 and again.state[0] == "COMPLETE"
    assert again.image_path[0].endswith(f"images/{trial}.png")
    assert (tmp_path / "metrics.jsonl").read_text().splitlines()[-1].startswith('{"trial_id"')  # torn line kept apart


def test_a_spec_names_files_relative_to_its_own_folder(tiny_pipe, tmp_path, monkeypatch):
    from workbench.spec import load_spec
    spec = load_spec(write_spec(tmp_path / "project"))
    monkeypatch.chdir(tmp_path)  # not where the spec is
    table = run_sweep(tiny_pipe, spec, tmp_path / "run", log=lambda m: None)
    assert (table.state == "COMPLETE").all() and set(table.control_image) == {"star.png"}  # rows keep the name


def test_trial_ids_hash_a_control_files_content(tiny_pipe, tmp_path):
    import shutil

    from PIL import Image

    from workbench.spec import load_spec
    path = write_spec(tmp_path / "project")
    first = run_sweep(tiny_pipe, load_spec(path), tmp_path / "project" / "run", log=lambda m: None)
    assert first.control_image_sha256.str.startswith("sha256:").all()
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "project", moved)  # the folder and its control image move together: still found
    again = run_sweep(tiny_pipe, load_spec(moved / "spec.yaml"), moved / "run", log=lambda m: None)
    assert set(again.trial_id) == set(first.trial_id) and len(load_results(moved / "run")) == 2
    Image.new("RGB", (32, 32), "white").save(moved / "star.png")  # the control edited in place
    edited = run_sweep(tiny_pipe, load_spec(moved / "spec.yaml"), moved / "run", log=lambda m: None)
    assert not set(edited.trial_id) & set(first.trial_id) and len(load_results(moved / "run")) == 4


def test_a_folder_from_before_keeps_its_trial_ids(tiny_pipe, tmp_path):
    """A folder with rows but no workbench.json hashes control names (scheme 1), and resumes without redrawing."""
    import json

    from workbench.spec import load_spec
    path = write_spec(tmp_path / "project")
    run_dir = tmp_path / "project" / "run"
    run_dir.mkdir()
    (run_dir / "workbench.json").write_text(json.dumps({"trial_id_scheme": 1, "folder_id": "x"}))
    first = run_sweep(tiny_pipe, load_spec(path), run_dir, log=lambda m: None)
    (run_dir / "workbench.json").unlink()  # as a folder made before the record was
    rows = (run_dir / "results.jsonl").read_text()
    again = run_sweep(tiny_pipe, load_spec(path), run_dir, log=lambda m: None)
    assert (run_dir / "results.jsonl").read_text() == rows and set(again.trial_id) == set(first.trial_id)
    assert json.loads((run_dir / "workbench.json").read_text())["trial_id_scheme"] == 1


def test_rows_store_posix_paths_inside_the_folder(tiny_pipe, tmp_path):
    import json
    spec = spec_from_dict({"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2})
    run_sweep(tiny_pipe, spec, tmp_path, log=lambda m: None)
    row = json.loads((tmp_path / "results.jsonl").read_text().splitlines()[0])
    assert row["image_path"] == f"images/{row['trial_id']}.png"
    # a row written on Windows, or by an older version with a working-directory path, is read the same way
    from workbench.results import image_file
    for stored in (f"images\\{row['trial_id']}.png", f"runs/r/images/{row['trial_id']}.png",
                   f"/elsewhere/images/{row['trial_id']}.png"):
        assert image_file(tmp_path, stored) == (tmp_path / "images" / f"{row['trial_id']}.png").absolute()


def test_a_refused_checkpoint_leaves_the_pipeline_as_it_was(tiny_pipe, tmp_path):
    plant(tmp_path / "evil2.checkpoint.pt", tmp_path / "pwned")
    with pytest.raises(ValueError):
        train_lora(tiny_pipe, make_dataset(4, size=32), rank=2, steps=2, out_dir=tmp_path, adapter_name="evil2",
                   load=False)
    assert not getattr(tiny_pipe.unet, "peft_config", None)


def test_an_image_past_the_decompression_bomb_limit_is_refused_naming_the_file(tmp_path, monkeypatch):
    from PIL import Image

    from workbench.control import load_image
    Image.new("RGB", (64, 64)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4,096 pixels is over it (and over twice it)
    with pytest.raises(ValueError, match="bomb.png.*decompression-bomb limit"):
        load_image(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # over it but under twice it: Pillow only warns
    with pytest.raises(ValueError, match="decompression-bomb limit"):
        load_image(tmp_path / "bomb.png")
