"""The Python face: ``sweep.run`` / ``sweep.load`` give what the CLI gives, on real Ray.

Every test runs real sweeps through the package's embedded Ray (``ray_session``'s
kept worker pool); the numbers are checked against the Parquet files and against
the CLI, never against constants.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

import sweep
from sweep.errors import SpecError, SweepFailed
from tests.execution.specs import base_spec, write_spec


def small_spec(output: Path, **overrides) -> dict:
    spec = base_spec(output, **overrides)
    spec["models"] = spec["models"][:1]
    return spec


def test_import_sweep_is_light():
    """``import sweep`` loads neither torch nor Ray: the face imports on first use."""
    import subprocess
    import sys

    code = "import sys, sweep; print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_run_from_a_dict_matches_the_files_and_the_cli(tmp_path, ray_session):
    spec = small_spec(tmp_path / "out")
    res = sweep.run(spec, pool=ray_session)
    on_disk = pd.read_parquet(tmp_path / "out")
    assert len(res.rows) == len(on_disk) == 16 * (3 + 2)  # samples x (linf + l2 epsilons)
    # the curves are the rows' robust accuracy, recomputed here by hand
    mine = res.curves()
    mine = mine[mine["attack"] == "noise"].set_index("epsilon")["robust_accuracy"]
    by_hand = on_disk[on_disk["attack"] == "noise"].groupby("epsilon").robust.mean()
    pd.testing.assert_series_equal(mine.sort_index(), by_hand.sort_index(), check_names=False)
    # ... and the table `sweep curves --format csv` prints
    from click.testing import CliRunner

    from sweep.cli.main import cli

    printed = CliRunner().invoke(cli, ["curves", str(tmp_path / "out"), "--format", "csv"])
    assert printed.exit_code == 0, printed.output
    cli_table = pd.read_csv(io.StringIO(printed.stdout))
    assert sorted(cli_table["robust_accuracy"].round(6)) == sorted(res.curves()["robust_accuracy"].round(6))
    assert set(res.summary()["model"]) == {"digits-cnn"}


def test_a_path_yaml_text_and_a_dict_are_the_same_sweep(tmp_path, ray_session):
    spec = small_spec(tmp_path / "out")
    path = write_spec(tmp_path / "spec.yaml", spec)
    first = sweep.run(str(path), pool=ray_session)
    # the same spec as YAML text resumes it: every cell is already done
    again = sweep.run(yaml.safe_dump(spec), pool=ray_session)
    again_dict = sweep.run(spec, pool=ray_session)
    key = ["cell_id", "sample_id", "epsilon"]
    for other in (again, again_dict):
        pd.testing.assert_frame_equal(
            first.rows.sort_values(key).reset_index(drop=True),
            other.rows.sort_values(key).reset_index(drop=True),
        )


def test_bad_spec_raises_spec_error_before_anything_is_written(tmp_path):
    spec = small_spec(tmp_path / "out")
    spec["attacks"][0]["draws"] = "two"
    with pytest.raises(SpecError) as err:
        sweep.run(spec)
    assert err.value.field == "attacks[0].draws"
    assert "'two'" in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SpecError, match="no such file"):
        sweep.run(str(tmp_path / "missing.yaml"))


def test_failed_cells_raise_with_the_done_results(tmp_path, ray_session):
    spec = small_spec(tmp_path / "out", retries=0)
    spec["models"].append({"name": "broken", "factory": "tests.execution.toy_models:fails_on_batches"})
    spec["attacks"] = spec["attacks"][:1]
    with pytest.raises(SweepFailed) as err, pytest.warns(UserWarning, match="model 'broken'"):
        sweep.run(spec, pool=ray_session)
    failed = err.value
    assert {f.model for f in failed.failures} == {"broken"} and len(failed.failures) == 2
    assert "toy model refuses batches" in str(failed)
    # the model that works is done and verified
    assert set(failed.results.rows["model"]) == {"digits-cnn"}


def test_load_reads_verified_files_only(tmp_path, ray_session):
    out = tmp_path / "out"
    sweep.run(small_spec(out), pool=ray_session)
    loaded = sweep.load(out)
    assert len(loaded.rows) == len(pd.read_parquet(out))
    # a stray file the manifest never vouched for, with rows that would change a number
    some = next(out.rglob("*.parquet"))
    table = pq.read_table(some).to_pandas()
    table["robust"] = ~table["robust"]
    stray = some.parent / "stray.parquet"
    table.drop(columns=["model", "attack"], errors="ignore").to_parquet(stray)
    assert len(pd.read_parquet(out)) > len(loaded.rows)  # pandas counts it ...
    again = sweep.load(out)  # ... the face does not
    pd.testing.assert_frame_equal(again.curves(), loaded.curves())
    # a damaged recorded file is no longer vouched for either
    some.write_bytes(some.read_bytes()[:-10])
    assert len(sweep.load(out).rows) < len(loaded.rows)


def test_load_refuses_what_is_not_a_sweep_output(tmp_path):
    with pytest.raises(FileNotFoundError):
        sweep.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no verified results"):
        sweep.load(tmp_path / "empty")


def test_report_writes_the_self_contained_page(tmp_path, ray_session):
    res = sweep.run(small_spec(tmp_path / "out"), pool=ray_session)
    path = res.report(tmp_path / "r.html")
    page = path.read_text(encoding="utf-8")
    assert "digits-cnn" in page and "<svg" in page
    assert "http://" not in page.replace("http://www.w3.org", "")  # nothing fetched to view it


def test_a_kept_pool_serves_sweeps_with_other_shard_sizes(tmp_path, ray_session):
    """The worker's shard cache is keyed by the shard's range and fingerprint: shard 0 of
    a sweep with 4-sample shards is not shard 0 of an earlier one with 8-sample shards
    (it once was, on a kept pool: the later cells computed the earlier shard's samples)."""
    eight = small_spec(tmp_path / "eight")
    four = small_spec(tmp_path / "four")
    four["dataset"]["shard_size"] = 4
    sweep.run(eight, pool=ray_session)
    rows = sweep.run(four, pool=ray_session).rows
    per_cell = rows.groupby("cell_id", observed=True)["sample_id"].nunique()
    assert (per_cell == 4).all() and len(per_cell) == 2 * 16 // 4
    pd.testing.assert_frame_equal(
        rows.sort_values(["attack", "sample_id", "epsilon"])[["attack", "sample_id", "epsilon", "robust"]]
        .reset_index(drop=True),
        sweep.load(tmp_path / "four").rows.sort_values(["attack", "sample_id", "epsilon"])[
            ["attack", "sample_id", "epsilon", "robust"]].reset_index(drop=True),
    )
