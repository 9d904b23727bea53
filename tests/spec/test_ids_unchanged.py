"""Attack identities, cell ids and the sweep id are what main computed before attack
entries were checked torch-free (sweep.attacks.declared): ``data/ids_main.json`` was
written by this spec under main's code (the constructor path), and cell ids hash the
identities, so a changed byte would re-run every finished cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sweep.spec.config import parse_spec
from sweep.spec.grid import DataLayout, expand, sweep_id

PINNED = json.loads((Path(__file__).parent / "data" / "ids_main.json").read_text())

ATTACKS: list[dict[str, Any]] = [
    {"name": "pgd", "label": "pgd", "steps": 10},
    {"name": "pgd", "label": "pgd-step", "step_size": 0.01, "norm": "l2"},
    {"name": "fgsm"},
    {"name": "fmn", "alpha_final": 0.1, "norm": "l1"},
    {"name": "apgd", "norm": "l1", "large_eps": True},
    {"name": "apgd-t", "n_target_classes": 3},
    {"label": "casc", "cascade": ["apgd", {"name": "square", "label": "sq", "queries": 50}], "norm": "l2"},
    {"name": "autoattack", "version": "plus", "scale": 0.5},
    {"name": "square", "queries": 100},
    {"name": "deepfool"},
    {"name": "onepixel", "norm": "l0"},
    {"name": "fab", "norm": "l2"},
    {"name": "fab-t"},
    {"name": "cw", "norm": "l2"},
    {"name": "lbfgs", "norm": "l2"},
    {"name": "noise", "targeted": {"mode": "random"}},
]


def test_identities_cell_ids_and_sweep_id_are_mains(tmp_path: Path) -> None:
    spec = parse_spec({
        "name": "pin", "seed": 3, "output": str(tmp_path / "out"),
        "dataset": {"name": "digits", "samples": 20}, "models": [{"name": "digits-cnn"}],
        "attacks": ATTACKS, "epsilons": {"linf": [0.1], "l2": [1.0], "l1": [5.0], "l0": [1.0]},
    })
    layout = DataLayout(num_samples=20, shard_size=8, num_classes=10, shard_digests=("a", "b", "c"))
    cells = expand(spec, layout)
    assert {a.label: a.identity for a in spec.attacks} == PINNED["identities"]
    assert {a.label: a.kind for a in spec.attacks} == PINNED["kinds"]
    assert [c.cell_id for c in cells][:5] == PINNED["cells"]
    assert sweep_id(cells) == PINNED["sweep_id"]
