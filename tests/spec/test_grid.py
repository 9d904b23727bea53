"""Grid expansion: counts, bounds, and cell ids that follow content, not paths or order."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.spec.config import parse_spec
from sweep.spec.grid import DataLayout, expand, sweep_id
from tests.execution.specs import base_spec

LAYOUT = DataLayout(num_samples=20, shard_size=8, num_classes=10,
                    shard_digests=("d0" * 16, "d1" * 16, "d2" * 16))


def cells_of(spec: dict, layout: DataLayout = LAYOUT):
    return expand(parse_spec(spec), layout)


@pytest.fixture
def spec(tmp_path: Path) -> dict:
    return base_spec(tmp_path / "out")


def test_counts_order_and_bounds(spec):
    cells = cells_of(spec)
    assert len(cells) == 2 * 2 * 3
    assert [(c.model, c.attack) for c in cells[:3]] == [("digits-cnn", "noise")] * 3
    assert [(c.start, c.stop) for c in cells[:3]] == [(0, 8), (8, 16), (16, 20)]
    assert cells[0].epsilons == (0.0, 0.1, 0.3) and cells[3].epsilons == (0.0, 2.0)
    assert cells[3].norm == "l2"
    assert len({c.cell_id for c in cells}) == len(cells)
    assert len({c.seed for c in cells}) == len(cells)
    assert all(0 <= c.seed < 2**63 for c in cells)


def test_golden_ids(spec):
    # Fixed values: a change here means every existing sweep output is recomputed.
    # Update only on purpose (and bump SCHEMA_VERSION if rows changed meaning).
    cells = cells_of(spec)
    assert cells[0].cell_id == GOLDEN_FIRST_CELL
    assert cells[0].seed == GOLDEN_FIRST_SEED
    assert sweep_id(cells) == GOLDEN_SWEEP_ID


def test_ids_ignore_paths_names_and_run_settings(spec, tmp_path):
    ids = [c.cell_id for c in cells_of(spec)]
    other = dict(spec, name="renamed", output=str(tmp_path / "elsewhere"), retries=5,
                 resources={"cpus_per_cell": 2, "max_workers": 3}, mlflow={"experiment": "x"})
    assert [c.cell_id for c in cells_of(other)] == ids


def test_ids_follow_content(spec):
    base = {c.cell_id for c in cells_of(spec)}
    variants = {
        "seed": dict(spec, seed=1),
        "epsilon": dict(spec, epsilons={"linf": [0.0, 0.1, 0.2], "l2": [0.0, 2.0]}),
        "param": dict(spec, attacks=[dict(spec["attacks"][0], draws=3), spec["attacks"][1]]),
        "strategy": dict(spec, strategy="independent"),
        "precision": dict(spec, precision="tf32"),
        "batch": dict(spec, batch_size=4),
    }
    for what, variant in variants.items():
        assert {c.cell_id for c in cells_of(variant)} != base, what
    changed = DataLayout(20, 8, 10, ("d0" * 16, "XX" * 16, "d2" * 16))
    moved = {c.cell_id for c in cells_of(spec, changed)}
    # only the shard whose content changed gets new ids
    assert len(base - moved) == 4 and len(moved - base) == 4


def test_unaffected_cells_keep_their_ids_when_the_spec_grows(spec):
    before = {c.cell_id: c.seed for c in cells_of(spec)}
    grown = dict(spec, models=[*spec["models"], {"name": "digits-cnn-copy", "factory":
                                                  "sweep.models.digits_cnn:build_digits_cnn"}],
                 attacks=[{"name": "noise", "label": "noise-l1", "norm": "l1"}, *spec["attacks"]],
                 epsilons={**spec["epsilons"], "l1": [1.0]})
    after = {c.cell_id: c.seed for c in cells_of(grown)}
    assert before.items() <= after.items()
    assert len(after) == 3 * 3 * 3
    assert sweep_id(cells_of(grown)) != sweep_id(cells_of(spec))


def test_same_attack_under_two_labels_gets_two_cells(spec):
    # the label names the partition folder, so it is part of what a cell's file holds
    spec["attacks"] = [{"name": "noise", "label": "n1"}, {"name": "noise", "label": "n2"}]
    cells = cells_of(spec)
    assert len({c.cell_id for c in cells}) == len(cells) == 2 * 2 * 3


def test_per_attack_epsilons_and_label(spec):
    spec["attacks"][0]["epsilons"] = [0.05]
    cells = cells_of(spec)
    assert cells[0].epsilons == (0.05,)


def test_large_grid_expands(spec):
    # 10 models x 10 attacks x 1,000 shards = 100,000 cells (what `sweep plan` handles)
    spec["models"] = [{"name": f"m{i}", "factory": "sweep.models.digits_cnn:build_digits_cnn"}
                      for i in range(10)]
    spec["attacks"] = [{"name": "noise", "label": f"a{i}", "draws": i + 1} for i in range(10)]
    layout = DataLayout(1000, 1, 10, tuple(f"{i:032x}" for i in range(1000)))
    cells = cells_of(spec, layout)
    assert len(cells) == 100_000
    assert len({c.cell_id for c in cells}) == 100_000


# Schema version 2 (robust = correct on the adversarial, also for targeted attacks)
# changed every id on purpose: outputs of version 1 are recomputed, not resumed. The
# spec's built-in models also bring their training recipe and torch version (pinned in
# constraints.txt) into their identity: other weights, other ids.
GOLDEN_FIRST_CELL = "c6b7aae5da28b2680a5c0cae"
GOLDEN_FIRST_SEED = 1856930371002301373
GOLDEN_SWEEP_ID = "6f0395e2e4224938"


def test_the_default_precision_keeps_the_ids_it_always_had(spec):
    # precision entered the ids only for tf32: outputs made before the key existed stay valid
    assert [c.cell_id for c in cells_of(dict(spec, precision="fp32"))] == [c.cell_id for c in cells_of(spec)]
    assert cells_of(spec)[0].cell_id == GOLDEN_FIRST_CELL


def test_a_built_in_models_recipe_is_part_of_its_identity(spec, monkeypatch):
    """The built-ins are trained on first use: a changed recipe (or torch) gives other
    weights, so cells computed with the old ones must not be resumed as done."""
    import dataclasses

    from sweep.models import recipes

    before = [c.cell_id for c in cells_of(spec)]
    changed = dataclasses.replace(recipes.RECIPES["digits-cnn"], epochs=41)
    monkeypatch.setitem(recipes.RECIPES, "digits-cnn", changed)
    after = cells_of(spec)
    moved = {c.cell_id for c in after if c.model == "digits-cnn"}
    kept = {c.cell_id for c in after if c.model != "digits-cnn"}
    assert moved.isdisjoint(before) and kept <= set(before)
