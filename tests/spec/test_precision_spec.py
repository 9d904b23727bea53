"""The spec's ``precision``: the worker computes a cell inside ``use_precision(spec.precision)``."""

from __future__ import annotations

import pytest

import sweep.execution.worker
from sweep.attacks.precision import _PRECISION
from sweep.execution.pipeline import prepare
from sweep.execution.worker import CellWorker, WorkContext
from tests.execution.specs import base_spec, write_spec


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_the_worker_applies_the_specs_precision(precision, tmp_path, monkeypatch):
    spec = base_spec(tmp_path / "out", models=[{"name": "digits-cnn"}], precision=precision)
    prep = prepare(write_spec(tmp_path / "spec.yaml", spec))
    assert prep.spec.precision == precision
    seen = []
    real = sweep.execution.worker.run_curve

    def spy(*args, **kwargs):
        seen.append(_PRECISION.get())
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep.execution.worker, "run_curve", spy)
    ctx = WorkContext(spec=prep.spec, layout=prep.layout, sweep_id=prep.sweep_id)
    summary = CellWorker().run(ctx, prep.cells[0])
    assert summary["rows"] == 8 * 3 and seen == [precision]
    assert _PRECISION.get() == "fp32"  # reset after the cell


def test_tf32_and_bf16_cells_have_other_ids_and_fp32_keeps_the_old_ones(tmp_path):
    ids = {}
    for precision in (None, "fp32", "tf32", "bf16"):
        extra = {} if precision is None else {"precision": precision}
        spec = base_spec(tmp_path / "out", models=[{"name": "digits-cnn"}], **extra)
        prep = prepare(write_spec(tmp_path / f"{precision}.yaml", spec), probe_models=False)
        ids[precision] = [c.cell_id for c in prep.cells]
    assert ids[None] == ids["fp32"] and not set(ids["tf32"]) & set(ids["fp32"])
    assert not set(ids["bf16"]) & (set(ids["fp32"]) | set(ids["tf32"]))


def test_a_nested_cell_runs_and_its_rows_name_the_strategy(tmp_path):
    """``strategy: nested`` (issue 13) through the worker: monotone per sample, and a
    cell id of its own."""
    import pyarrow.parquet as pq

    attacks = [{"name": "pgd", "steps": 5}]
    ids = {}
    for strategy in ("incremental", "nested"):
        spec = base_spec(tmp_path / strategy, models=[{"name": "digits-cnn"}], attacks=attacks,
                         strategy=strategy)
        prep = prepare(write_spec(tmp_path / f"{strategy}.yaml", spec))
        ids[strategy] = {c.cell_id for c in prep.cells}
        ctx = WorkContext(spec=prep.spec, layout=prep.layout, sweep_id=prep.sweep_id)
        summary = CellWorker().run(ctx, prep.cells[0])
        rows = pq.read_table(tmp_path / strategy / summary["file"]).to_pandas()
        assert set(rows["strategy"]) == {strategy}
        robust = rows.pivot_table(index="sample_id", columns="epsilon", values="robust")
        assert (robust.diff(axis=1).fillna(0) <= 0).all().all()  # never robust again once fooled
    assert not ids["incremental"] & ids["nested"]
