"""Whole result files the manifest never recorded (a killed driver's last cells) are adopted,
anything else unrecorded is quarantined, and the rows end up those of an undisturbed run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sweep.execution.adoption import whole_cell
from sweep.execution.pipeline import prepare
from sweep.results.manifest import Manifest
from tests.execution.running import rows, sweep
from tests.execution.specs import base_spec, write_spec

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One model x the two noise attacks x two shards: four cells, done."""
    root = tmp_path_factory.mktemp("adopt")
    spec_path = write_spec(root / "spec.yaml", base_spec(root / "out", models=[{"name": "digits-cnn"}]))
    result = sweep("run", str(spec_path))
    assert result.exit_code == 0, result.output
    return {"root": root, "spec": spec_path, "rows": rows(root / "out")}


def forget(out: Path, cell_ids: set[str]) -> None:
    """Drop cells from the done log, as a driver killed before recording them would."""
    segments = sorted((out / "_manifest" / "done").glob("[!.]*.jsonl"))
    lines = [ln for seg in segments for ln in seg.read_text().splitlines()
             if json.loads(ln)["cell_id"] not in cell_ids]
    for seg in segments:
        seg.unlink()
    (segments[0]).write_text("".join(ln + "\n" for ln in lines))


def test_whole_files_are_adopted_others_quarantined_and_rows_unchanged(finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished["root"] / "out", out)
    spec_path = write_spec(tmp_path / "spec.yaml", base_spec(out, models=[{"name": "digits-cnn"}]))
    a, b, c, _ = sorted(Manifest(out).verified().values(), key=lambda r: r.file)
    forget(out, {a.cell_id, b.cell_id, c.cell_id})
    shutil.copy(out / a.file, out / b.file)  # another cell's (whole) rows under b's name
    (out / c.file).write_bytes((out / c.file).read_bytes()[:200])  # damaged by hand
    kept = (out / a.file).stat().st_mtime_ns

    result = sweep("run", str(spec_path))
    assert result.exit_code == 0, result.output
    assert "adopted 1 whole result file(s)" in result.output
    assert "moved 2 result file(s) the manifest does not vouch for" in result.output
    assert "4 cells: 2 already done, computing 2" in result.output
    assert (out / a.file).stat().st_mtime_ns == kept  # adopted as it was, not recomputed
    quarantined = {p.relative_to(next((out / "_quarantine").iterdir())).as_posix()
                   for p in (out / "_quarantine").rglob("*.parquet")}
    assert quarantined == {b.file, c.file}
    pd.testing.assert_frame_equal(rows(out), finished["rows"])
    assert len(Manifest(out).verified()) == 4


def test_fresh_adopts_nothing(finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished["root"] / "out", out)
    spec_path = write_spec(tmp_path / "spec.yaml", base_spec(out, models=[{"name": "digits-cnn"}]))
    forget(out, {r.cell_id for r in Manifest(out).verified().values()})
    result = sweep("run", str(spec_path), "--fresh")
    assert result.exit_code == 0, result.output
    assert "adopted" not in result.output and "computed 4 cell(s)" in result.output


@pytest.mark.parametrize("damage", ["missing-row", "duplicate-row", "other-epsilons", "other-seed"])
def test_a_file_that_is_not_exactly_the_cells_rows_is_not_adopted(finished, tmp_path, damage):
    out = finished["root"] / "out"
    prep = prepare(finished["spec"])
    record = sorted(Manifest(out).verified().values(), key=lambda r: r.file)[0]
    cell = next(c for c in prep.cells if c.cell_id == record.cell_id)
    assert whole_cell(out, record.file, cell, targeted=False) == (record.rows, pytest.approx(
        pq.read_table(out / record.file)["cell_seconds"][0].as_py()))

    table = pq.read_table(out / record.file)
    if damage == "missing-row":
        table = table.slice(1)
    elif damage == "duplicate-row":
        table = pa.concat_tables([table.slice(1, 1), table.slice(1)])  # same count, one pair twice
    elif damage == "other-epsilons":
        table = table.set_column(table.schema.get_field_index("epsilon"), "epsilon",
                                 pc.multiply(table["epsilon"], 2.0))
    else:
        table = table.set_column(table.schema.get_field_index("seed"), "seed", pc.add(table["seed"], 1))
    copy = tmp_path / "copy"
    (copy / record.file).parent.mkdir(parents=True)
    pq.write_table(table, copy / record.file)
    assert whole_cell(copy, record.file, cell, targeted=False) is None
