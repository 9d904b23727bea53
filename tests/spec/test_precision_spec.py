"""The spec's ``precision``: the worker computes a cell inside ``allow_tf32`` only for ``tf32``."""

from __future__ import annotations

import pytest

import sweep.execution.worker
from sweep.attacks.precision import _TF32_ALLOWED
from sweep.execution.pipeline import prepare
from sweep.execution.worker import CellWorker, WorkContext
from tests.execution.specs import base_spec, write_spec


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_the_worker_allows_tf32_only_when_the_spec_says_so(precision, tmp_path, monkeypatch):
    spec = base_spec(tmp_path / "out", models=[{"name": "digits-cnn"}], precision=precision)
    prep = prepare(write_spec(tmp_path / "spec.yaml", spec))
    assert prep.spec.precision == precision
    seen = []
    real = sweep.execution.worker.run_curve

    def spy(*args, **kwargs):
        seen.append(_TF32_ALLOWED.get())
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep.execution.worker, "run_curve", spy)
    ctx = WorkContext(spec=prep.spec, layout=prep.layout, sweep_id=prep.sweep_id)
    summary = CellWorker().run(ctx, prep.cells[0])
    assert summary["rows"] == 8 * 3 and seen == [precision == "tf32"]
    assert _TF32_ALLOWED.get() is False  # reset after the cell


def test_tf32_cells_have_other_ids_and_fp32_keeps_the_old_ones(tmp_path):
    ids = {}
    for precision in (None, "fp32", "tf32"):
        extra = {} if precision is None else {"precision": precision}
        spec = base_spec(tmp_path / "out", models=[{"name": "digits-cnn"}], **extra)
        prep = prepare(write_spec(tmp_path / f"{precision}.yaml", spec), probe_models=False)
        ids[precision] = [c.cell_id for c in prep.cells]
    assert ids[None] == ids["fp32"] and not set(ids["tf32"]) & set(ids["fp32"])
