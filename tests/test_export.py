"""Export to MLflow, against a real local store (the `mlflow` extra), not a mock."""

import pytest

from workbench import run_sweep
from workbench.spec import spec_from_dict

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed (make setup installs it)")
CAPTION = "a red circle on a blue background"


@pytest.fixture(scope="module")
def finished(tiny_pipe, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sweep")
    spec = spec_from_dict({"model": "tiny", "prompt": CAPTION, "control_image": f"toy:{CAPTION}", "steps": 2,
                           "conditioning_scale": [0.0, 1.0], "seed": [0, 1, 2]})
    return run_dir, run_sweep(tiny_pipe, spec, run_dir, log=lambda m: None)


@pytest.mark.parametrize("store", ["file", "sqlite"])
def test_one_mlflow_run_per_cell_with_params_metrics_and_images(finished, tmp_path, monkeypatch, store):
    from workbench.export import export_mlflow
    run_dir, table = finished
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    uri = (tmp_path / "mlruns").as_uri() if store == "file" else f"sqlite:///{tmp_path / 'mlflow.db'}"
    counts = export_mlflow(run_dir, tracking_uri=uri, experiment="tiny-sweep", log=lambda m: None)
    assert counts["exported"] == 2 and counts["skipped"] == 0
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tiny-sweep"], output_format="list")
    cells = [r for r in runs if "workbench.cell" in r.data.tags]
    parent = next(r for r in runs if "workbench.sweep" in r.data.tags)
    assert len(cells) == 2 and len(runs) == 3
    client = mlflow.MlflowClient(uri)
    for run in cells:
        scale = float(run.data.params["conditioning_scale"])
        expected = table[table.conditioning_scale == scale].edge_f1.mean()
        assert run.data.metrics["edge_f1"] == pytest.approx(expected) and run.data.params["seeds"] == "0,1,2"
        assert len(client.get_metric_history(run.info.run_id, "edge_f1_by_seed")) == 3
        assert len(client.list_artifacts(run.info.run_id, "images")) == 3
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"grid.png", "results.csv", "spec.yaml"}
    again = export_mlflow(run_dir, tracking_uri=uri, experiment="tiny-sweep", log=lambda m: None)
    assert again["exported"] == 0 and again["skipped"] == 2  # idempotent: nothing logged twice
    assert len(mlflow.search_runs(experiment_names=["tiny-sweep"], output_format="list")) == 3


def test_cli_exports_to_the_default_store_in_the_run_folder(finished, capsys):
    from workbench.__main__ import main
    run_dir, _ = finished
    assert main(["export", str(run_dir), "--to", "mlflow"]) == 0
    assert "exported 2 cells" in capsys.readouterr().out
    assert (run_dir / "mlflow.db").exists() and (run_dir / "mlflow-artifacts").is_dir()


def test_a_cell_that_fails_halfway_is_exported_again(finished, tmp_path, monkeypatch):
    """Tagged only once logged whole: an artifact upload that fails leaves the cell to the next export."""
    from workbench.export import export_mlflow
    run_dir, _ = finished
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    real, calls = mlflow.log_artifact, []

    def fail_once(*args, **kwargs):
        if kwargs.get("artifact_path") == "images":  # a cell's image, not the sweep's own files
            calls.append(args)
            if len(calls) == 2:
                raise OSError("the artifact store went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(mlflow, "log_artifact", fail_once)
    first = export_mlflow(run_dir, tracking_uri=uri, experiment="flaky", log=lambda m: None)
    assert first["failed"] == 1 and first["exported"] == 1
    monkeypatch.setattr(mlflow, "log_artifact", real)
    second = export_mlflow(run_dir, tracking_uri=uri, experiment="flaky", log=lambda m: None)
    assert second["exported"] == 1 and second["skipped"] == 1 and second["failed"] == 0


def test_two_folders_in_one_experiment_do_not_skip_each_other(tiny_pipe, finished, tmp_path, monkeypatch):
    import shutil

    from workbench.export import export_mlflow
    run_dir, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("workbench.json", "mlflow*"))  # same cells
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)  # a stray run id must not become the parent
    assert export_mlflow(run_dir, tracking_uri=uri, experiment="shared", log=lambda m: None)["exported"] == 2
    assert export_mlflow(copy, tracking_uri=uri, experiment="shared", log=lambda m: None)["exported"] == 2
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["shared"], output_format="list")
    assert len([r for r in runs if "workbench.folder" in r.data.tags]) == 2 and len(runs) == 6


def test_a_long_parameter_value_is_shortened_with_its_hash():
    from workbench.export import PARAM_LIMIT, clean
    value = clean("a red circle " * 2000)
    assert len(value) <= PARAM_LIMIT and "(sha256 " in value and clean("short") == "short"
