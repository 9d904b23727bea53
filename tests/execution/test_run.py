"""``sweep run`` end to end on a real (embedded) Ray: Parquet, resume, exactly-once rows,
the local MLflow store, failing cells, targets. One Ray instance for the module."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sweep.results.manifest import Manifest
from sweep.results.schema import DATASET_SCHEMA, FILE_SCHEMA
from tests.execution.running import KEY, rows, sweep
from tests.execution.specs import base_spec, write_spec

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """One finished sweep (MLflow on its default SQLite store) and its rows."""
    root = tmp_path_factory.mktemp("baseline")
    spec = base_spec(root / "out", mlflow={})
    path = write_spec(root / "spec.yaml", spec)
    result = sweep("run", str(path))
    assert result.exit_code == 0, result.output
    return {"spec": path, "output": root / "out", "text": result.output, "rows": rows(root / "out")}


def test_parquet_rows_and_schema(baseline):
    df, out = baseline["rows"], baseline["output"]
    assert list(df.columns) == [f.name for f in DATASET_SCHEMA if f.name != "cell_seconds"]
    # 2 models x (linf: 3 eps + l2: 2 eps) x 16 samples
    assert len(df) == 2 * (3 + 2) * 16
    assert not df.duplicated(KEY).any()
    files = sorted(out.glob("model=*/attack=*/*.parquet"))
    assert len(files) == 8
    assert all(pq.read_schema(f).remove_metadata() == FILE_SCHEMA for f in files)
    assert set(df["sample_id"]) == set(range(899, 915))  # first 16 of the digits test split
    assert (df["robust"] == (df["clean_correct"] & ~df["success"])).all()
    at_zero = df[df["epsilon"] == 0]
    assert (at_zero["robust"] == at_zero["clean_correct"]).all()
    assert (df["perturbation"] <= df["epsilon"] * (1 + 1e-5) + 1e-6).all()
    assert set(df["attack_name"]) == {"noise"} and set(df["norm"]) == {"linf", "l2"}
    assert (df["target"] == -1).all() and df["min_perturbation"].isna().all()
    # every row is a function of (spec seed, cell): per-cell seeds, all different
    assert df.groupby("cell_id")["seed"].nunique().eq(1).all() and df["seed"].nunique() == 8


def test_run_prints_table_location_pandas_and_mlflow(baseline):
    text = baseline["text"]
    assert "8 cells to compute" in text
    assert "linf: robust accuracy" in text and "worst case" in text and "digits-cnn-at" in text
    assert f"results: {baseline['output']}" in text
    assert "pd.read_parquet(" in text
    assert f"mlflow ui --backend-store-uri sqlite:///{baseline['output']}/_mlflow/mlflow.db" in text


def test_rerun_computes_nothing_and_keeps_rows(baseline):
    out = baseline["output"]
    mtimes = {f: f.stat().st_mtime_ns for f in out.glob("model=*/attack=*/*.parquet")}
    result = sweep("run", str(baseline["spec"]))
    assert result.exit_code == 0, result.output
    assert "8 cells: 8 already done, computing 0" in result.output
    assert {f: f.stat().st_mtime_ns for f in out.glob("model=*/attack=*/*.parquet")} == mtimes
    pd.testing.assert_frame_equal(rows(out), baseline["rows"])


def test_deleted_shard_is_the_only_cell_recomputed(baseline):
    out = baseline["output"]
    victim = sorted(out.glob("model=digits-cnn-at/attack=noise-l2/*.parquet"))[0]
    victim.unlink()
    result = sweep("run", str(baseline["spec"]))
    assert result.exit_code == 0, result.output
    assert "8 cells: 7 already done, computing 1" in result.output
    assert victim.exists()
    pd.testing.assert_frame_equal(rows(out), baseline["rows"])  # same seed, same rows


def test_half_written_shard_is_never_read(baseline):
    out = baseline["output"]
    victim = sorted(out.glob("model=digits-cnn/attack=noise/*.parquet"))[1]
    victim.write_bytes(victim.read_bytes()[:100])  # a truncated file under a result name
    stray = out / "model=digits-cnn" / "attack=noise" / ("f" * 24 + ".parquet")
    stray.write_bytes(b"PAR1 garbage")  # a result-named file no run recorded
    (out / "model=digits-cnn" / "attack=noise" / ".tmp-dead-attempt.parquet").write_bytes(b"x")
    result = sweep("run", str(baseline["spec"]))
    assert result.exit_code == 0, result.output
    assert "moved 2 result file(s)" in result.output and "computing 1" in result.output
    assert not stray.exists() and not list(out.glob("model=*/attack=*/.tmp-*"))
    assert len(list((out / "_quarantine").rglob("*.parquet"))) == 2
    pd.testing.assert_frame_equal(rows(out), baseline["rows"])


def test_fresh_recomputes_every_cell(baseline):
    out = baseline["output"]
    result = sweep("run", str(baseline["spec"]), "--fresh")
    assert result.exit_code == 0, result.output
    assert "recomputing all" in result.output and "computed 8 cell(s)" in result.output
    pd.testing.assert_frame_equal(rows(out), baseline["rows"])


def test_plan_counts_done_cells(baseline):
    result = sweep("plan", str(baseline["spec"]))
    assert result.exit_code == 0, result.output
    assert "cells: 8, done: 8, to compute: 0" in result.output


def test_local_mlflow_store_has_one_run_per_pair_without_duplicates(baseline):
    # runs after the baseline: re-run, shard deleted, half-written, --fresh, all above
    from mlflow.tracking import MlflowClient

    out = baseline["output"]
    client = MlflowClient(f"sqlite:///{out}/_mlflow/mlflow.db")
    exp = client.get_experiment_by_name("t")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep.role") == "child"]
    assert len(parents) == 1 and len(children) == 4
    assert {(r.data.tags["sweep.model"], r.data.tags["sweep.attack"]) for r in children} == {
        (m, a) for m in ("digits-cnn", "digits-cnn-at") for a in ("noise", "noise-l2")}
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.complete"] == "true"
    assert parent.data.params["dataset.name"] == "digits"
    assert "sweep.version.torch" in parent.data.tags
    df = baseline["rows"]
    for run in children:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["sweep.sweep_id"] == parent.data.tags["sweep.sweep_id"]
        assert tags["sweep.complete"] == "true"
        assert "targeted_success_rate" not in run.data.metrics  # untargeted attacks
        part = df[(df["model"] == tags["sweep.model"]) & (df["attack"] == tags["sweep.attack"])]
        expected = part.groupby("epsilon")["robust"].mean()
        steps = {int(k): v for k, v in json.loads(tags["sweep.epsilon_steps"]).items()}
        history = client.get_metric_history(run.info.run_id, "robust_accuracy")
        assert sorted(m.step for m in history) == list(range(len(expected)))  # one point per step
        for m in history:
            assert m.value == pytest.approx(expected[steps[m.step]])
            assert run.data.metrics[f"robust_accuracy_eps_{steps[m.step]!r}"] == pytest.approx(m.value)
        assert run.data.metrics["clean_accuracy"] == pytest.approx(
            part.drop_duplicates("sample_id")["clean_correct"].mean())
        assert run.data.metrics["cells"] == 2


def test_a_failing_model_is_reported_and_the_others_finish(tmp_path):
    spec = base_spec(tmp_path / "out", retries=1)
    spec["models"] = [{"name": "digits-cnn"},
                      {"name": "broken", "factory": "tests.execution.toy_models:fails_on_batches"},
                      {"name": "nan", "factory": "tests.execution.toy_models:nan_on_batches"}]
    spec["attacks"] = spec["attacks"][:1]
    result = sweep("run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert result.exit_code == 1, result.output
    failures = Manifest(tmp_path / "out").failures()
    assert {(f["model"], f["attack"]) for f in failures} == {("broken", "noise"), ("nan", "noise")}
    assert len(failures) == 4
    for f in failures:
        assert f"cell {f['cell_id']} ({f['model']} / noise)" in result.output
    assert "RuntimeError: toy model refuses batches of 8" in result.output
    assert "non-finite logits for 8 of 8 samples" in result.output
    df = pd.read_parquet(tmp_path / "out")
    assert set(df["model"]) == {"digits-cnn"} and len(df) == 3 * 16


def test_targets_random_least_likely_explicit(tmp_path):
    spec = base_spec(tmp_path / "out", mlflow={})
    spec["attacks"] = [
        {"name": "noise", "label": "rand", "targeted": {"mode": "random"}},
        {"name": "noise", "label": "ll", "targeted": "least-likely"},
        {"name": "noise", "label": "expl", "targeted": {"mode": "explicit", "targets": [3]}},
        {"name": "apgd", "label": "ll-dlr", "targeted": "least-likely", "loss": "dlr", "steps": 10},
    ]
    spec["models"] = spec["models"][:1]
    spec["dataset"]["samples"] = 32
    spec["epsilons"]["linf"] = [0.1, 0.2, 0.3]
    result = sweep("run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(tmp_path / "out")
    # robust = correct on a verified adversarial within the budget, targeted or not
    within = df["perturbation"] <= df["epsilon"] * (1 + 1e-5) + 1e-6
    assert within.all()
    assert (df["robust"] == (df["clean_correct"] & (df["adv_pred"] == df["label"]))).all()
    # the case of issue #17: off target, so not a success, yet misclassified: not robust
    off_target = df["clean_correct"] & ~df["success"] & (df["adv_pred"] != df["label"])
    assert (df[off_target]["attack"] == "ll-dlr").any()
    assert not df[off_target]["robust"].any()
    shown = sweep("curves", str(tmp_path / "out"))
    assert shown.exit_code == 0 and "target hit" in shown.output, shown.output
    # MLflow: a targeted child run carries its targeted success rate per epsilon
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/out/_mlflow/mlflow.db")
    exp = client.get_experiment_by_name("t")
    (run,) = client.search_runs([exp.experiment_id], "tags.`sweep.attack` = 'll-dlr'")
    part = df[(df["attack"] == "ll-dlr") & df["clean_correct"]]
    expected = part.groupby("epsilon")["success"].mean()
    for eps, rate in expected.items():
        assert run.data.metrics[f"targeted_success_rate_eps_{eps!r}"] == pytest.approx(rate)
    history = client.get_metric_history(run.info.run_id, "targeted_success_rate")
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert (df["target"] != df["label"]).all() and df["target"].between(0, 9).all()
    rand = df[df["attack"] == "rand"]
    # the same target for a sample in every model: targeted results are comparable
    assert rand.groupby("sample_id")["target"].nunique().eq(1).all()
    assert rand["target"].nunique() > 1
    expl = df[df["attack"] == "expl"]
    assert (expl["target"] == 3).all()
    assert set(expl["sample_id"]) == set(df[df["label"] != 3]["sample_id"])  # label-3 samples left out
    # targeted success means "predicted the target"
    fooled = df[df["success"] & df["clean_correct"]]
    assert (fooled["adv_pred"] == fooled["target"]).all()


def test_unreachable_mlflow_then_sync(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = base_spec(tmp_path / "out", mlflow={"tracking_uri": f"http://127.0.0.1:{port}"})
    spec["models"] = spec["models"][:1]
    path = write_spec(tmp_path / "spec.yaml", spec)
    result = sweep("run", str(path))
    assert result.exit_code == 0, result.output
    assert "MLflow unreachable" in result.output and "sweep sync" in result.output
    assert len(pd.read_parquet(tmp_path / "out")) == (3 + 2) * 16

    store = f"sqlite:///{tmp_path}/mlflow.db"
    first = sweep("sync", str(tmp_path / "out"), "--tracking-uri", store)
    assert first.exit_code == 0, first.output
    assert "2 run(s) logged, 0 already there" in first.output
    again = sweep("sync", str(tmp_path / "out"), "--tracking-uri", store)
    assert "0 run(s) logged, 2 already there" in again.output
    down = sweep("sync", str(tmp_path / "out"))  # the spec's server is still down
    assert down.exit_code == 1 and "MLflow unreachable" in down.output


def test_cascade_rows_components_and_model_checks(tmp_path):
    """A cascade in a real sweep: each row names the member that broke the sample; the
    curves show robust accuracy after each member; the quantized model's masked
    gradients are a warning before the run and a sanity flag after it."""
    spec = base_spec(tmp_path / "out")
    spec["models"] = [{"name": "digits-cnn"},
                      {"name": "quantized", "factory": "tests.execution.toy_models:quantized_input"}]
    spec["attacks"] = [{"label": "aa", "cascade": [
        {"name": "apgd", "label": "apgd-ce", "steps": 10},
        {"name": "square", "queries": 200},
    ]}]
    spec["epsilons"] = {"linf": [0.1, 0.2]}
    path = write_spec(tmp_path / "spec.yaml", spec)
    checked = sweep("validate", str(path))
    assert checked.exit_code == 0
    assert "warning: model 'quantized': zero_gradients" in checked.output
    assert "model 'digits-cnn'" not in checked.output
    result = sweep("run", str(path))
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(tmp_path / "out")
    broken = df["broken_by"].notna()
    assert set(df.loc[broken, "broken_by"]) <= {"apgd-ce", "square"}
    assert (broken == (df["clean_correct"] & ~df["robust"])).all()
    quantized = df[df["model"] == "quantized"]
    # gradients are masked: Square, the black-box member, does the breaking
    assert (quantized["broken_by"] == "square").sum() > (quantized["broken_by"] == "apgd-ce").sum()
    shown = sweep("curves", str(tmp_path / "out"))
    text = " ".join(shown.output.split())  # rich wraps titles at the terminal's width
    assert "cascade aa (linf): robust accuracy after each member" in text, shown.output
    assert "2. square" in text and "model_zero_gradients" in text
    from sweep.analysis.collect import collect

    data = collect(tmp_path / "out")
    last = data.cascades[data.cascades["position"] == 1].set_index(["model", "epsilon"])
    table = data.table[data.table["attack"] == "aa"].set_index(["model", "epsilon"])
    for key, row in last.iterrows():  # after the last member: the cascade's robust accuracy
        assert row["robust_accuracy_after"] == pytest.approx(table.loc[key, "robust_accuracy"])


def test_run_logs_the_curves_to_mlflow(baseline):
    """The end of `sweep run` logs the curve artifacts and CI metrics (`sweep report` no
    longer does: it only reads)."""
    from mlflow.tracking import MlflowClient

    out = baseline["output"]
    client = MlflowClient(f"sqlite:///{out}/_mlflow/mlflow.db")
    exp = client.get_experiment_by_name("t")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    names = {a.path for a in client.list_artifacts(parent.info.run_id, "curves")}
    assert {"curves/curves.csv", "curves/summary.csv", "curves/sanity_flags.json",
            "curves/epsilon_steps.json"} <= names  # fmt: skip
    assert "sweep.curves_fingerprint" in parent.data.tags
    for child in (r for r in runs if r.data.tags.get("sweep.role") == "child"):
        assert child.data.tags["sweep.curves_logged"] == "true"
        low = client.get_metric_history(child.info.run_id, "robust_accuracy_ci_low")
        assert sorted(m.step for m in low) == list(range(len(low))) and low


def test_a_file_the_manifest_does_not_vouch_for_is_not_counted(tmp_path, monkeypatch):
    """A Parquet file that lands in the output during the run, holding rows of a planned
    cell id but with no manifest line, is in neither the printed curves nor MLflow (the
    rows of the verified files are; reading the folder would count it)."""
    import sweep.execution.pipeline as pipeline
    from tests.analysis.rows import attack_rows, write_results

    spec = base_spec(tmp_path / "out", mlflow={})
    spec["models"], spec["attacks"] = spec["models"][:1], spec["attacks"][:1]
    path = write_spec(tmp_path / "spec.yaml", spec)
    real_run_cells = pipeline.run_cells

    def stray_then_run(spec, layout, sweep_id, todo, *args, **kwargs):  # after the quarantine
        write_results(tmp_path / "out", attack_rows(
            "stray-model", "noise", [0.1], ["R", "R"], cell_id=todo[0].cell_id, sweep_id=sweep_id))
        return real_run_cells(spec, layout, sweep_id, todo, *args, **kwargs)

    monkeypatch.setattr(pipeline, "run_cells", stray_then_run)
    result = sweep("run", str(path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "model=stray-model").exists()
    assert "stray-model" not in result.output and "digits-cnn" in result.output
    assert "(2 Parquet files)" in result.output  # the plan's 2 cells (2 data shards)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/out/_mlflow/mlflow.db")
    exp = client.get_experiment_by_name("t")
    runs = client.search_runs([exp.experiment_id])
    assert not [r for r in runs if r.data.tags.get("sweep.model") == "stray-model"]
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    curves_csv = client.download_artifacts(parent.info.run_id, "curves/curves.csv", str(tmp_path))
    text = Path(curves_csv).read_text()
    assert "digits-cnn" in text and "stray-model" not in text
