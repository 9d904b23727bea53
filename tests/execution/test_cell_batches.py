"""Cross-cell batches: a worker call carrying several cells of one model and attack
writes, for each cell, the file that cell gets alone, byte for byte."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import sweep.execution.worker as worker
from sweep.execution.pipeline import prepare
from sweep.execution.worker import CellWorker, WorkContext, batchable
from sweep.results import store
from sweep.results.adversarials import adv_relpath
from tests.execution.specs import base_spec, write_spec

ATTACKS = [
    {"name": "pgd", "steps": 3},  # random start: cell by cell
    {"name": "pgd", "label": "pgd-fixed", "steps": 3, "random_start": False},  # one batch
    {"name": "noise", "draws": 2},
    {"name": "square", "queries": 20},
    {"name": "fgsm"},
    {"name": "fgsm", "label": "fgsm-ll", "targeted": "least-likely"},
    {"name": "deepfool", "norm": "l2", "steps": 10},
    {"name": "cw", "steps": 5, "binary_search_steps": 2},
]


class _Clock:
    """time.perf_counter frozen, so ``cell_seconds`` (wall time) is the same in both runs."""

    @staticmethod
    def perf_counter() -> float:
        return 0.0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("batches")
    # 6 shards of 4 samples, batch 16: a batch of the group crosses cell boundaries
    spec = base_spec(
        tmp / "out", models=[{"name": "digits-cnn"}], attacks=ATTACKS, batch_size=16,
        dataset={"name": "digits", "samples": 24, "shard_size": 4},
        epsilons={"linf": [0.0, 0.05, 0.1, 0.3], "l2": [0.0, 0.5, 2.0]},
    )  # fmt: skip
    return prepare(write_spec(tmp / "spec.yaml", spec))


def _context(prep, output: Path) -> WorkContext:
    return WorkContext(spec=dataclasses.replace(prep.spec, output=output), layout=prep.layout,
                       sweep_id=prep.sweep_id)


def test_grouped_cells_write_the_files_they_write_alone(prepared, tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "time", _Clock)
    calls = []
    real = worker.run_curve

    def counting(attack, model, images, *args, **kwargs):
        calls.append((attack.name, int(images.shape[0])))
        return real(attack, model, images, *args, **kwargs)

    monkeypatch.setattr(worker, "run_curve", counting)
    alone, grouped = _context(prepared, tmp_path / "alone"), _context(prepared, tmp_path / "grouped")
    w = CellWorker()
    for cell in prepared.cells:
        w.run(alone, cell)
    calls.clear()
    by_attack: dict[str, list] = {}
    for cell in prepared.cells:
        by_attack.setdefault(cell.attack, []).append(cell)
    for cells in by_attack.values():
        outcomes = CellWorker().run_group(grouped, cells)  # a fresh worker: nothing cached
        assert [o["cell_id"] for o in outcomes] == [c.cell_id for c in cells]
        assert all("error" not in o for o in outcomes)
    batched = {name for name, n in calls if n == 24}
    assert batched == {"fgsm", "pgd"}  # pgd: the label without random start
    assert sum(1 for name, n in calls if name == "pgd" and n == 24) == 1
    stored = 0
    for cell in prepared.cells:
        rel = store.shard_relpath(cell.model, cell.attack, cell.cell_id)
        a, b = (tmp_path / "alone" / rel).read_bytes(), (tmp_path / "grouped" / rel).read_bytes()
        assert a == b, f"{cell.attack} shard {cell.shard}: the grouped file differs"
        # the adversarials kept (default first_n 16: shards 0-3 of 4 samples, not 4-5), too
        adv = adv_relpath(cell.model, cell.attack, cell.cell_id)
        there = [(tmp_path / d / adv).exists() for d in ("alone", "grouped")]
        assert there == [cell.start < 16] * 2, f"{cell.attack} shard {cell.shard}: {there}"
        if there[0]:
            a, b = ((tmp_path / d / adv).read_bytes() for d in ("alone", "grouped"))
            assert a == b, f"{cell.attack} shard {cell.shard}: the grouped adversarial file differs"
            stored += 1
    assert stored == 4 * len(ATTACKS)


def test_the_rows_match_without_a_frozen_clock_except_cell_seconds(prepared, tmp_path):
    import pyarrow.parquet as pq

    cells = [c for c in prepared.cells if c.attack == "pgd-fixed"]
    alone, grouped = _context(prepared, tmp_path / "alone"), _context(prepared, tmp_path / "grouped")
    w = CellWorker()
    for cell in cells:
        w.run(alone, cell)
    w.run_group(grouped, cells)
    for cell in cells:
        rel = store.shard_relpath(cell.model, cell.attack, cell.cell_id)
        a, b = (pq.read_table(tmp_path / d / rel).drop(["cell_seconds"]) for d in ("alone", "grouped"))
        assert a.to_pandas().equals(b.to_pandas())  # NaN == NaN here, unlike Table.equals


def test_a_bad_cell_fails_alone_in_its_group(prepared, tmp_path):
    cells = [c for c in prepared.cells if c.attack == "fgsm"]
    digests = list(prepared.layout.shard_digests)
    digests[cells[1].shard] = "0" * len(digests[0])  # as if that node held other data
    ctx = WorkContext(
        spec=dataclasses.replace(prepared.spec, output=tmp_path / "out"),
        layout=dataclasses.replace(prepared.layout, shard_digests=tuple(digests)),
        sweep_id=prepared.sweep_id,
    )
    outcomes = CellWorker().run_group(ctx, cells)
    assert "differs from the one the driver planned" in outcomes[1]["error"]
    assert outcomes[1]["disk_full"] is False and "Traceback" in outcomes[1]["detail"]
    ok = [o for i, o in enumerate(outcomes) if i != 1]
    assert all("error" not in o and o["rows"] == 4 * 4 for o in ok)


def test_only_attacks_that_draw_nothing_share_a_batch():
    from sweep.attacks import create

    assert batchable(create("fgsm")) and batchable(create("pgd", random_start=False))
    assert not batchable(create("pgd")) and not batchable(create("noise"))
    assert not batchable(create("square")) and not batchable(create("apgd"))
    # deterministic, but their written floats move with the batch's arithmetic
    assert not batchable(create("deepfool", norm="l2")) and not batchable(create("cw"))
    assert not batchable(create("pgd", norm="l2", random_start=False))


@pytest.mark.parametrize("strategy", ["incremental", "independent", "nested"])
def test_no_call_recomputes_the_clean_forward_the_caller_has(monkeypatch, strategy):
    import torch

    import sweep.attacks.base as base
    from sweep.attacks import create
    from sweep.data.digits import load_digits_split
    from sweep.models.digits_cnn import load_digits_model

    model = load_digits_model("digits-cnn")
    data = load_digits_split("test").take(32)
    x, y = data.images, data.labels
    real = base.predict
    seen: list[torch.Tensor] = []

    def spy(m, images):
        seen.append(images)
        return real(m, images)

    monkeypatch.setattr(base, "predict", spy)
    atk = create("pgd", steps=3)
    plain = atk.curve(model, x, y, [0.05, 0.1, 0.2], seed=3, strategy=strategy)
    # the clean images, or (stacked strategies) K copies of them
    on_clean = sum(torch.equal(s, x) or torch.equal(s, x[: s.shape[0]]) or torch.equal(s[: x.shape[0]], x)
                   for s in seen)
    seen.clear()
    given = atk.curve(model, x, y, [0.05, 0.1, 0.2], seed=3, strategy=strategy, clean_pred=real(model, x))
    assert on_clean >= 1  # without clean_pred the curve runs the clean forward itself
    assert not any(torch.equal(s, x) or torch.equal(s[: x.shape[0]], x) for s in seen)  # adversarials only
    for name in ("success", "pred", "norm", "clean_pred"):
        assert torch.equal(getattr(plain, name), getattr(given, name)), name
