"""``sweep run`` with an ``s3://`` output, end to end, against a real S3 server on loopback.

The server is moto's ``moto_server`` on 127.0.0.1 (:mod:`tests.cluster.s3_server`);
``sweep run`` runs as a subprocess with its own embedded Ray, its workers writing
shards through pyarrow's S3 client with credentials from the environment, as on a
cluster node with an instance profile. What is checked:

- the rows under the URI equal those of the same spec run into a local folder,
  and the ``pandas:`` line ``sweep run`` prints reads them;
- a re-run resumes from the objects alone: it computes nothing, then exactly a
  deleted shard, and moves an object the manifest does not vouch for to
  ``_quarantine/``;
- ``sweep curves / report / sync`` and ``jobs/aggregate.py`` take the URI and give
  what they give for the local folder, with no MLflow run logged twice;
- an unreachable bucket is exit 2 naming ``output``, before anything is written.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
from click.testing import CliRunner

from sweep.cli.main import cli
from tests.cluster.head import VENV_BIN
from tests.cluster.s3_server import list_objects as objects
from tests.cluster.sweeps import ROW_KEY, driver_env
from tests.execution.specs import base_spec, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BUCKET = "results"
CELLS = 8  # 2 models x 2 attacks x 2 shards of 8 samples
SWEEP_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def s3(s3_server):
    s3_server.create_bucket(BUCKET)
    return s3_server


def sweep_run(spec_path: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``sweep run SPEC`` in a process of its own (its own Ray), the way a user runs it."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs3", dir="/tmp"))  # short: Ray puts sockets there
    command = [str(VENV_BIN / "sweep"), "run", str(spec_path), "--no-progress", "--num-cpus", "2"]
    return subprocess.run(command, cwd=tmp, env=driver_env(ray_tmp), capture_output=True, text=True,
                          timeout=SWEEP_TIMEOUT_S)


def cli_ok(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout  # sanity flags and notes go to stderr, the data to stdout


def rows(output: str | Path) -> pd.DataFrame:
    """Every row, fixed order, minus the wall-time column (the one thing a re-run changes)."""
    if isinstance(output, str):
        fs, base = pafs.FileSystem.from_uri(output)
        df = pd.read_parquet(base, filesystem=fs)
    else:
        df = pd.read_parquet(output)
    df = df.drop(columns=["cell_seconds"])
    for col in ("model", "attack"):
        df[col] = df[col].astype(str)
    return df.sort_values(ROW_KEY).reset_index(drop=True)


def mlflow_runs(db: Path) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("t")
    return sorted(r.info.run_name for r in client.search_runs([experiment.experiment_id]))


@pytest.fixture(scope="module")
def runs(s3, tmp_path_factory):
    """The same spec run into a local folder and into ``s3://results/sweep``."""
    root = tmp_path_factory.mktemp("s3sweep")
    local = root / "local"
    local_run = sweep_run(write_spec(root / "local.yaml", base_spec(local)), root)
    assert local_run.returncode == 0, local_run.stdout + local_run.stderr
    uri = s3.uri(BUCKET, "sweep")
    db = root / "mlflow" / "mlflow.db"
    spec_path = write_spec(root / "s3.yaml", base_spec(uri, mlflow={"tracking_uri": f"sqlite:///{db}"}))
    first = sweep_run(spec_path, root)
    assert first.returncode == 0, first.stdout + first.stderr
    return {"root": root, "local": local, "uri": uri, "db": db, "spec": spec_path, "first": first}


def test_a_sweep_on_s3_has_the_rows_of_a_local_one_and_its_pandas_line_reads_them(runs):
    uri, first = runs["uri"], runs["first"]
    assert f"{CELLS} cells to compute" in first.stdout
    assert f"results: {uri}  ({CELLS} Parquet files)" in first.stdout
    pd.testing.assert_frame_equal(rows(uri), rows(runs["local"]))

    keys = objects(uri)
    shards = [k for k in keys if k.startswith("model=")]
    assert len(shards) == CELLS and all(k.endswith(".parquet") for k in shards)
    assert not any(".tmp-" in k for k in keys)  # shards are uploaded whole, never via a temp
    assert {"_manifest/plan.json", "_manifest/spec.yaml"} <= set(keys)
    assert any(k.startswith("_manifest/done/") for k in keys)

    # the `pandas:` line, run as printed, reads the objects and prints the mean robustness
    (line,) = [ln for ln in first.stdout.splitlines() if ln.startswith("pandas:")]
    command = shlex.split(line.removeprefix("pandas:").strip())
    # the interpreter that ran the sweep (or plain `python` when PATH finds that one)
    assert Path(command[0]).name.startswith("python") and command[1] == "-c"
    printed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    # the same groups in the same (partition category) order, from the local folder
    local = pd.read_parquet(runs["local"])
    expected = local.groupby(["model", "attack", "epsilon"], observed=True).robust.mean()
    values = [float(ln.split()[-1]) for ln in printed.splitlines()[1:] if ln and not ln.startswith("Name:")]
    assert values == pytest.approx(list(expected.to_numpy()), abs=1e-6), printed

def test_a_rerun_resumes_from_the_objects_alone(runs):
    uri, root = runs["uri"], runs["root"]
    again = sweep_run(runs["spec"], root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{CELLS} cells: {CELLS} already done, computing 0" in again.stdout

    fs, base = pafs.FileSystem.from_uri(uri)
    victim = sorted(k for k in objects(uri) if k.startswith("model="))[0]
    fs.delete_file(f"{base}/{victim}")
    stray = "model=digits-cnn/attack=noise/stray.parquet"
    with fs.open_output_stream(f"{base}/{stray}") as f:
        f.write(b"not a shard the manifest knows")
    resumed = sweep_run(runs["spec"], root)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{CELLS} cells: {CELLS - 1} already done, computing 1" in resumed.stdout
    assert "moved 1 result file(s) the manifest does not vouch for" in resumed.stdout
    keys = objects(uri)
    assert victim in keys and stray not in keys
    assert any(k.startswith("_quarantine/") and k.endswith(stray) for k in keys)
    pd.testing.assert_frame_equal(rows(uri), rows(runs["local"]))


def test_curves_report_sync_and_aggregate_take_the_uri(runs, tmp_path):
    uri, local, db = runs["uri"], runs["local"], runs["db"]
    before = mlflow_runs(db)
    assert len(before) >= 1 + 4  # the sweep's parent run and one per model x attack

    as_csv = {out: pd.read_csv(io.StringIO(cli_ok("curves", str(out), "--format", "csv")))
              for out in (uri, str(local))}
    pd.testing.assert_frame_equal(as_csv[uri], as_csv[str(local)])

    text = cli_ok("report", uri, "-o", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<svg" in page and "digits-cnn-at" in page
    # the report reads MLflow for its run links and writes nothing there (`sweep run` logged)
    assert "MLflow: curves logged" not in text and mlflow_runs(db) == before

    synced = cli_ok("sync", uri)
    assert "MLflow: 0 run(s) logged, 4 already there" in synced
    assert mlflow_runs(db) == before  # run, report and sync: nothing logged twice

    for out in (uri, str(local)):
        done = subprocess.run([sys.executable, str(REPO / "jobs" / "aggregate.py"), out],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    fs, base = pafs.FileSystem.from_uri(uri)
    with fs.open_input_stream(f"{base}/_curves/curves.csv") as f:
        remote_curves = pd.read_csv(io.BytesIO(f.read()))
    pd.testing.assert_frame_equal(remote_curves, pd.read_csv(local / "_curves" / "curves.csv"))


def test_a_missing_bucket_is_exit_2_naming_output_before_any_write(s3, tmp_path):
    uri = s3.uri("no-such-bucket", "sweep")
    db = tmp_path / "mlflow.db"
    spec_path = write_spec(tmp_path / "spec.yaml", base_spec(uri, mlflow={"tracking_uri": f"sqlite:///{db}"}))
    result = CliRunner().invoke(cli, ["run", str(spec_path), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("error: output") and "no-such-bucket" in message, message
    assert not db.exists()
    fs, _ = pafs.FileSystem.from_uri(s3.uri(BUCKET, "x"))
    buckets = [i.path for i in fs.get_file_info(pafs.FileSelector("/"))]
    assert buckets == [BUCKET]  # nothing created, no bucket either


def test_sync_of_an_s3_sweep_run_without_mlflow_asks_for_a_store(s3):
    from sweep.results.manifest import Manifest
    from sweep.results.plan import Plan

    uri = s3.uri(BUCKET, "no-mlflow")
    # what `sweep run` records for an object-store output with MLflow off: no store
    Manifest(uri).write_plan(Plan(sweep_id="s", experiment="t", tracking_uri=None), "")
    result = CliRunner().invoke(cli, ["sync", uri], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.output.startswith("error: --tracking-uri: is required"), result.output
    missing = CliRunner().invoke(cli, ["curves", s3.uri(BUCKET, "nothing-here")], catch_exceptions=False)
    assert missing.exit_code == 2 and "no results there" in missing.output, missing.output
