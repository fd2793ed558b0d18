"""A table of bad inputs to the command line: each gets its own clear error, and never a traceback."""

import re

import pytest
import yaml

from workbench.__main__ import main

CAPTION = "a red circle on a blue background"
GOOD = {"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 1, "seed": [0]}


def spec_file(folder, **changes):
    data = {**GOOD, **changes}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v != "<drop>"}))
    return str(path)


def sweep(folder, **changes):
    return ["sweep", spec_file(folder, **changes), "--run-dir", str(folder / "run")]


def make_files(folder):
    (folder / "not-an-image.png").write_text("hello")
    (folder / "lora.ckpt").write_bytes(b"pickled")
    (folder / "not-a-pipeline").mkdir()
    (folder / "not-a-pipeline" / "readme.txt").write_text("x")
    (folder / "a-file").write_text("x")


CASES = [
    # spec files
    ("unknown key", lambda f: sweep(f, conditioning_scal=[1]), "Unknown spec key: 'conditioning_scal'"),
    ("empty axis", lambda f: sweep(f, seed=[]), "axis `seed` is empty"),
    ("negative scale", lambda f: sweep(f, conditioning_scale=[-1]), "`conditioning_scale` must be >= 0, got -1"),
    ("text scale", lambda f: sweep(f, conditioning_scale=["strong"]), "must be numbers, got 'strong'"),
    ("text lora weight", lambda f: sweep(f, adapters={"r": "x.safetensors"}, adapter=["r"], lora_weight=["1x"]),
     "`lora_weight` values must be numbers"),
    ("adapter not loaded", lambda f: sweep(f, adapter=["rank4"]), "adapter 'rank4' is not loaded"),
    ("weight without adapter", lambda f: sweep(f, lora_weight=[1.0]), "needs an adapter"),
    ("float seed", lambda f: sweep(f, seed=[1.5]), "`seed` values must be integers"),
    ("negative seed", lambda f: sweep(f, seed=[-3]), "`seed` values must be integers >= 0"),
    ("zero steps", lambda f: sweep(f, steps=[0]), "`steps` values must be integers >= 1"),
    ("unknown scheduler", lambda f: sweep(f, scheduler=["heun9"]), "unknown scheduler 'heun9'"),
    ("guidance end > 1", lambda f: sweep(f, control_guidance_end=[2]), r"must be in \[0, 1\]"),
    ("bad mode", lambda f: sweep(f, mode="grid"), "`mode` must be one of"),
    ("zip lengths", lambda f: sweep(f, mode="zip", seed=[0, 1], conditioning_scale=[0, 1, 2]), "same length"),
    ("too many trials", lambda f: sweep(f, seed=list(range(101)), conditioning_scale=list(range(100))),
     "10,100 trials, over max_trials"),
    ("prompt not text", lambda f: sweep(f, prompt=[42]), "prompts must be strings"),
    ("huge resolution", lambda f: sweep(f, model="toy", resolution=100000),
     r"`resolution` 100000 is outside what 'toy' can make: a multiple of 8 from 16 to 256 px"),
    ("resolution not a multiple of 8", lambda f: sweep(f, resolution=30), r"multiple of 8 from 8 to 128 px.*Try 32"),
    ("guidance start after end", lambda f: sweep(f, control_guidance_start=[0.0, 0.8], control_guidance_end=[0.5]),
     r"`control_guidance_start` 0.8 with `control_guidance_end` 0.5 cannot run"),
    ("canny low above high", lambda f: sweep(f, canny_low=[50, 250], canny_high=[200]),
     r"`canny_low` 250 with `canny_high` 200 cannot run .*low <= high"),
    ("spec not a mapping", lambda f: (f.joinpath("list.yaml").write_text("[1, 2]"), ["sweep", str(f / "list.yaml"),
                                      "--run-dir", str(f / "r")])[1], "must be a mapping"),
    ("broken yaml", lambda f: (f.joinpath("bad.yaml").write_text("seed: [1, 2\n"), ["sweep", str(f / "bad.yaml"),
                               "--run-dir", str(f / "r")])[1], "not valid YAML"),
    ("missing spec file", lambda f: ["sweep", str(f / "none.yaml"), "--run-dir", str(f / "r")], "does not exist"),
    ("unknown preprocess", lambda f: sweep(f, control_image="<drop>", controls={"edges": {"controlnet": "tiny", "image": f"toy:{CAPTION}",
                                                                  "preprocess": "sobel"}}),
     r"`preprocess` is one of \['canny', 'none', 'depth'"),
    ("detector without its weights", lambda f: sweep(f, control_image="<drop>", controls={"edges": {"controlnet": "tiny",
                                                                           "image": f"toy:{CAPTION}",
                                                                           "preprocess": "hed"}}),
     "condition 'hed' draws with ControlNetHED.pth"),
    # images
    ("missing control image", lambda f: sweep(f, control_image=str(f / "nope.png")), "does not exist"),
    ("control not an image", lambda f: sweep(f, control_image=str(f / "not-an-image.png")), "not an image file"),
    ("toy caption unknown shape", lambda f: sweep(f, control_image="toy:a red blob on a blue background"), "'blob'"),
    # LoRA files
    ("missing LoRA file", lambda f: sweep(f, adapters={"r": str(f / "none.safetensors")}, adapter=["r"]),
     "LoRA file .* does not exist"),
    ("pickle LoRA file", lambda f: sweep(f, adapters={"r": str(f / "lora.ckpt")}, adapter=["r"]),
     "only safetensors files are loaded"),
    # model folders and ids
    ("model folder missing", lambda f: sweep(f, model=str(f / "no-model")), "does not exist"),
    ("folder not a pipeline", lambda f: sweep(f, model=str(f / "not-a-pipeline")), "model_index.json"),
    ("hub id offline", lambda f: sweep(f, model="someone/some-model"), "Cannot load .*someone/some-model"),
    ("malformed model name", lambda f: sweep(f, model="not a model"), "owner/name"),
    # command-line arguments
    ("bad device", lambda f: sweep(f) + ["--device", "gpu0"], "`device` 'gpu0' is not a torch device"),
    ("bad dtype", lambda f: sweep(f) + ["--dtype", "fp8"], "`dtype` must be 'auto' or one of"),
    ("run dir under a file", lambda f: ["sweep", spec_file(f), "--run-dir", str(f / "a-file" / "run")], "not writable"),
    ("results of no run", lambda f: ["results", str(f / "nothing-here")], "does not exist"),
]


@pytest.mark.parametrize("name,argv,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(tmp_path, capsys, name, argv, expected):
    make_files(tmp_path)
    code = main(argv(tmp_path))
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err.startswith("error: ")
    assert "Traceback" not in captured.out + captured.err
    assert re.search(expected, captured.err), captured.err


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25


def test_a_sweep_of_another_model_in_the_same_run_dir(tmp_path, capsys):
    make_files(tmp_path)
    assert main(sweep(tmp_path)) == 0
    capsys.readouterr()
    assert main(sweep(tmp_path, model="toy", resolution="<drop>")) == 2
    assert "a sweep grows only on its own model" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["sweep", "spec.yaml"], ["frobnicate"], []])
def test_argument_errors_print_usage_not_tracebacks(capsys, argv):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2 and "usage:" in capsys.readouterr().err
