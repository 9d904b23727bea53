"""Hostile inputs that pass validation and must still run right (issue 15, cases 4 and 8),
through a real sweep on Ray."""

from __future__ import annotations

import pytest

from sweep.results.manifest import Manifest
from tests.execution.running import rows, sweep
from tests.execution.specs import base_spec, write_spec

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.ray, pytest.mark.slow]

TRAINED = {"factory": "tests.cluster.slow_models:slow_digits_cnn", "kwargs": {"delay_s": 0.0}}


def test_non_ascii_model_name_runs_and_every_file_is_recorded(tmp_path):
    """``模型🙂`` once failed every cell in the Ray metrics (ASCII tags) after its file was
    written: rows readable by pandas with no manifest entry."""
    name = "模型🙂"
    spec = base_spec(tmp_path / "out", models=[{"name": name, **TRAINED}])
    result = sweep("run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert result.exit_code == 0, result.output
    df = rows(tmp_path / "out")
    assert set(df["model"].astype(str)) == {name} and df["cell_id"].nunique() == 4
    recorded = {r.file for r in Manifest(tmp_path / "out").verified().values()}
    on_disk = {p.relative_to(tmp_path / "out").as_posix()
               for p in (tmp_path / "out").glob("model=*/attack=*/*.parquet")}
    assert recorded == on_disk and len(on_disk) == 4
    assert Manifest(tmp_path / "out").failures() == []


def test_nan_logits_on_adversarials_are_flagged_not_silent(tmp_path):
    """A model that answers NaN only on perturbed inputs: those samples are not robust
    (no class predicted: adv_pred -1), the rows say so (adv_nonfinite), and the run
    prints a flag naming the model, the attack and the count."""
    spec = base_spec(tmp_path / "out", models=[
        {"name": "nan-trap", "factory": "tests.execution.toy_models:nan_off_the_grid"},
        {"name": "plain", **TRAINED},  # the same network without the trap
    ], attacks=[{"name": "noise", "draws": 2}], epsilons={"linf": [0.0, 0.1, 0.3]})
    result = sweep("run", str(write_spec(tmp_path / "spec.yaml", spec)))
    assert result.exit_code == 0, result.output
    df = rows(tmp_path / "out")
    trap = df[df["model"] == "nan-trap"]
    plain = df[df["model"] == "plain"]
    clean = trap[trap["epsilon"] == 0.0]
    assert not clean["adv_nonfinite"].any()
    assert clean["robust"].sum() == plain[plain["epsilon"] == 0.0]["robust"].sum()
    attacked = trap[(trap["epsilon"] > 0) & trap["clean_correct"]]
    bad = attacked[attacked["adv_nonfinite"]]
    assert len(bad) > 0
    assert (bad["adv_pred"] == -1).all() and not bad["robust"].any()
    assert not plain["adv_nonfinite"].any()
    n = bad["sample_id"].nunique()
    text = " ".join(result.output.split())  # the table renderer wraps long lines
    assert (f"nonfinite_logits nan-trap/noise: the model returned non-finite logits (NaN/inf) "
            f"on the adversarials of {n} samples of 16") in text, result.output
