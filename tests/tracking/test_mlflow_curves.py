"""Curves logged into a real local MLflow store (SQLite) by the one MLflow writer
(``Tracker.curves``), runs made by the test with MlflowClient."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweep.analysis.collect import collect
from sweep.tracking.runs import Tracker, TrackingUnavailable
from tests.analysis.rows import attack_rows, basic_cells, write_results

EXPERIMENT = "curves-test"
SWEEP = "sweep-test"  # the sweep_id rows.py writes


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """One SQLite store for the module (creating its tables takes seconds)."""
    from mlflow.tracking import MlflowClient

    tmp_path = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(exp, tags={"sweep.sweep_id": SWEEP, "sweep.role": "parent"})
    children = {}
    for attack in ("pgd", "fmn"):  # no run for square: reported as missing
        tags = {
            "sweep.sweep_id": SWEEP,
            "sweep.role": "child",
            "sweep.model": "m",
            "sweep.attack": attack,
            "mlflow.parentRunId": parent.info.run_id,
        }
        children[attack] = client.create_run(exp, tags=tags).info.run_id
    # as the tracker does when a pair's cells are done: robust_accuracy per epsilon step
    client.log_metric(children["pgd"], "robust_accuracy", 0.5, step=0)
    client.log_metric(children["pgd"], "robust_accuracy", 0.25, step=1)
    return uri, client, exp, parent.info.run_id, children


def log_curves(out: Path, uri: str, experiment: str):
    """What the end of ``sweep run`` does with its analysis: one writer logs the curves."""
    return Tracker(uri, experiment).curves(collect(out))


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def worst_case_runs(client, exp: str) -> list:
    return client.search_runs([exp], filter_string="tags.`sweep.role` = 'worst-case'")


def test_log_curves_into_sweep_runs(tmp_path: Path, store) -> None:
    uri, client, exp, parent_id, children = store
    out = write_results(tmp_path / "out", *basic_cells())
    report = log_curves(out, uri, EXPERIMENT)

    assert report.parent_run_id == parent_id
    assert sorted(report.children_logged) == ["m/fmn", "m/pgd"]
    assert report.missing == ["m/square"]
    # the tracker's points are not duplicated; CI bands and AUC added at the same steps
    assert history(client, children["pgd"], "robust_accuracy") == [(0, 0.5), (1, 0.25)]
    low = history(client, children["pgd"], "robust_accuracy_ci_low")
    assert [s for s, _ in low] == [0, 1] and low[1][1] == pytest.approx(0.0456, abs=1e-4)
    # fmn had no robust_accuracy yet: logged from the curve, plus its median minimal norm
    assert history(client, children["fmn"], "robust_accuracy") == [(0, 0.5), (1, 0.0)]
    assert history(client, children["fmn"], "median_min_perturbation") == [(0, 0.15)]
    assert history(client, children["fmn"], "auc")[0][1] == pytest.approx(0.4375)
    fmn = client.get_run(children["fmn"])
    assert json.loads(fmn.data.tags["sweep.epsilon_steps"]) == {"0": 0.1, "1": 0.2}

    # step -> epsilon mapping as an artifact of the child, figures and tables on the parent
    steps_path = client.download_artifacts(
        children["fmn"], "curves/epsilon_steps.json", str(tmp_path)
    )
    assert json.loads(Path(steps_path).read_text())["steps"] == {"0": 0.1, "1": 0.2}
    names = {Path(a.path).name for a in client.list_artifacts(parent_id, "curves")}
    assert {"curves_m.png", "curves.csv", "summary.csv", "sanity_flags.json",
            "epsilon_steps.json", "min_perturbation.png", "heatmap_linf_eps0.1.png"} <= names  # fmt: skip
    png = client.download_artifacts(parent_id, "curves/curves_m.png", str(tmp_path))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the worst case is its own child run, so the chart view draws it beside the attacks
    (worst,) = worst_case_runs(client, exp)
    assert worst.data.tags["mlflow.parentRunId"] == parent_id
    assert worst.data.tags["sweep.attack"] == "ensemble"
    assert history(client, worst.info.run_id, "robust_accuracy") == [(0, 0.25), (1, 0.0)]
    # ... with the metrics a child run has, so a search on them finds it too
    child_metrics = set(client.get_run(children["fmn"]).data.metrics)
    worst_metrics = client.get_run(worst.info.run_id).data.metrics
    assert {"clean_accuracy", "samples", "robust_accuracy_eps_0.1", "robust_accuracy_eps_0.2",
            "epsilon", "robust_accuracy", "auc"} <= set(worst_metrics)
    assert child_metrics - {"median_min_perturbation"} <= set(worst_metrics)
    assert worst_metrics["robust_accuracy_eps_0.1"] == 0.25
    assert worst_metrics["clean_accuracy"] == pytest.approx(0.75)
    found = client.search_runs([exp], "metrics.`robust_accuracy_eps_0.1` >= 0.25 and "
                                      "tags.`sweep.role` = 'worst-case'")
    assert [r.info.run_id for r in found] == [worst.info.run_id]
    # the epsilon of each step, as a metric the chart can take as its x-axis
    assert history(client, worst.info.run_id, "epsilon") == [(0, 0.1), (1, 0.2)]
    assert history(client, children["fmn"], "epsilon") == [(0, 0.1), (1, 0.2)]

    # idempotent: a second call adds no point and no run
    again = log_curves(out, uri, EXPERIMENT)
    assert again.children_logged == [] and again.children_already == ["m/fmn", "m/pgd"]
    assert again.missing == ["m/square"]
    assert history(client, children["fmn"], "robust_accuracy") == [(0, 0.5), (1, 0.0)]
    assert [r.info.run_id for r in worst_case_runs(client, exp)] == [worst.info.run_id]

    # a new attack changes the worst case: its run is replaced, never appended to
    write_results(out, attack_rows("m", "apgd", [0.1, 0.2], ["xx", "RR", "FF", "FF"]))
    log_curves(out, uri, EXPERIMENT)
    (replaced,) = worst_case_runs(client, exp)
    assert replaced.info.run_id != worst.info.run_id
    # apgd fools sample 2 at 0.1 too: the worst case drops from 1/4 to 0/4 there
    assert history(client, replaced.info.run_id, "robust_accuracy") == [(0, 0.0), (1, 0.0)]
    assert client.get_run(worst.info.run_id).info.lifecycle_stage == "deleted"


def test_missing_parent_is_reported(tmp_path: Path, store) -> None:
    uri, *_ = store
    out = write_results(tmp_path / "out", *basic_cells())
    with pytest.raises(TrackingUnavailable, match=r"no parent run tagged sweep\.sweep_id="):
        log_curves(out, uri, "nope")  # a new experiment: no run of this sweep in it
    orphan = write_results(tmp_path / "orphan", attack_rows("m", "pgd", [0.1], ["R"], sweep_id="x"))
    with pytest.raises(TrackingUnavailable, match=r"no parent run tagged sweep\.sweep_id='x'"):
        log_curves(orphan, uri, EXPERIMENT)


def test_report_command_reads_mlflow_and_never_writes_it(tmp_path: Path, store) -> None:
    """`sweep report` links each curve to its run but logs nothing (`sweep run` logs the
    curves: tests/execution/test_run.py)."""
    from click.testing import CliRunner

    from sweep.cli.main import cli

    uri, client, exp, *_ = store
    parent = client.create_run(exp, tags={"sweep.sweep_id": "sweep-cli", "sweep.role": "parent"})
    child = client.create_run(
        exp,
        tags={"sweep.sweep_id": "sweep-cli", "sweep.model": "m", "sweep.attack": "pgd",
              "mlflow.parentRunId": parent.info.run_id},
    )  # fmt: skip
    out = write_results(
        tmp_path / "out",
        attack_rows("m", "pgd", [0.1, 0.2], ["RR", "RF"], cell_id="cm", sweep_id="sweep-cli"),
    )
    (out / "_manifest").mkdir()
    plan = {
        "sweep_id": "sweep-cli",
        "tracking_uri": uri,
        "experiment": EXPERIMENT,
        "mlflow_enabled": True,
        "pairs": [{"model": "m", "attack": "pgd", "cells": ["cm"]}],
    }
    (out / "_manifest" / "plan.json").write_text(json.dumps(plan))
    res = CliRunner().invoke(cli, ["report", str(out), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert "curves logged" not in res.output and "2 MLflow run links" in res.output
    page = (tmp_path / "r.html").read_text()
    assert child.info.run_id in page  # the link of the curve to its run
    # nothing written: no metric, tag, artifact or run
    assert client.get_run(child.info.run_id).data.metrics == {}
    assert "sweep.curves_logged" not in client.get_run(child.info.run_id).data.tags
    assert client.list_artifacts(parent.info.run_id) == []
    assert len(client.search_runs([exp], "tags.`sweep.sweep_id` = 'sweep-cli'")) == 2

    # an MLflow problem never costs the report: no links, exit 0
    res = CliRunner().invoke(
        cli, ["report", str(out), "-o", str(tmp_path / "r2.html"), "--experiment", "gone"]
    )
    assert res.exit_code == 0 and "0 MLflow run links" in res.output
    assert (tmp_path / "r2.html").exists()
    assert client.get_experiment_by_name("gone") is None


def test_run_links_point_at_each_run_in_the_ui(tmp_path: Path, store) -> None:
    from sweep.report.details import run_links

    uri, client, exp, parent_id, children = store
    out = write_results(tmp_path / "out", *basic_cells())
    log_curves(out, uri, EXPERIMENT)  # makes the worst-case run (idempotent)
    links = run_links(uri, EXPERIMENT, SWEEP, "http://127.0.0.1:5055/")
    (worst,) = worst_case_runs(client, exp)
    base = f"http://127.0.0.1:5055/#/experiments/{exp}/runs/"
    assert links[("m", "pgd")] == base + children["pgd"]
    assert links[("m", "fmn")] == base + children["fmn"]
    assert links[("m", "ensemble/linf")] == base + worst.info.run_id
    assert links[("", "")] == base + parent_id
    # MLflow off, or a store that is not there: no links, no error
    assert run_links(None, EXPERIMENT, SWEEP) == {}
    assert run_links(uri, "no-such-experiment", SWEEP) == {}
