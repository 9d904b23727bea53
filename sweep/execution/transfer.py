"""A transfer evaluation: a source cell's stored adversarials re-run on a target model.

One row per stored (sample, epsilon), with :data:`sweep.results.schema.FILE_SCHEMA`
(``model`` the target, ``source_model`` the source), verified like a cell's own
rows: the target is re-run on the stored adversarial and on the clean image,
``robust`` is correct on both within the budget. Written whole under ``_transfer/``
(:func:`sweep.results.adversarials.transfer_relpath`); the worker actor calls
:func:`evaluate_transfer` with the target model from its cache.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from sweep.attacks.base import NO_CLASS, eval_mode, predict
from sweep.attacks.norms import lp_norm, within
from sweep.attacks.precision import full_precision
from sweep.results import adversarials as advfiles
from sweep.results import store
from sweep.results.schema import FILE_SCHEMA, SCHEMA_VERSION
from sweep.spec.config import SweepSpec
from sweep.spec.grid import TransferUnit


class TransferError(RuntimeError):
    """The source cell's adversarial file is not that cell's."""


def evaluate_transfer(
    spec: SweepSpec,
    sweep_id: str,
    unit: TransferUnit,
    model: torch.nn.Module,
    device: torch.device,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``unit`` on ``model`` (the target, on ``device``); write its rows and
    return the summary the manifest records. ``source``: the source cell's summary
    (its ``adv_file``), else the file is found by the source cell's id."""
    t0 = time.perf_counter()
    aspec = spec.attack(unit.attack)
    rel = (source or {}).get("adv_file") or advfiles.adv_relpath(unit.source, unit.attack, unit.source_cell)
    adv_table = advfiles.read_adversarials(spec.output, rel)
    ids = adv_table["cell_id"].unique().to_pylist()
    if ids != [unit.source_cell]:
        raise TransferError(f"{rel} does not hold the adversarials of cell {unit.source_cell}")
    adv = torch.tensor(advfiles.images(adv_table, "image"), device=device)
    clean = torch.tensor(advfiles.images(adv_table, "clean"), device=device)
    labels = torch.tensor(adv_table["label"].to_numpy(), device=device)
    targets = adv_table["target"].to_numpy()
    eps = adv_table["epsilon"].to_numpy()
    bs = spec.batch_size
    with torch.no_grad(), full_precision(device), eval_mode(model):
        adv_pred = torch.cat([predict(model, adv[i : i + bs]) for i in range(0, adv.shape[0], bs)])
        clean_pred = torch.cat([predict(model, clean[i : i + bs]) for i in range(0, clean.shape[0], bs)])
        norm = lp_norm(adv - clean, aspec.norm)  # type: ignore[arg-type]
        inside = within(norm, torch.as_tensor(eps, dtype=norm.dtype, device=norm.device))
    adv_pred_np = adv_pred.cpu().numpy().astype(np.int64)
    clean_pred_np = clean_pred.cpu().numpy().astype(np.int64)
    lab = labels.cpu().numpy().astype(np.int64)
    clean_correct = clean_pred_np == lab
    targeted = targets >= 0
    # the attack's own criterion, as the crafting cell judged it: the target hit, else misclassified
    success = np.where(targeted, adv_pred_np == targets, adv_pred_np != lab) & inside.cpu().numpy()
    success |= ~clean_correct
    robust = clean_correct & (adv_pred_np == lab) & inside.cpu().numpy()
    seconds = time.perf_counter() - t0
    n = adv_table.num_rows

    def const(value: Any, dtype: pa.DataType) -> pa.Array:
        return pa.array([value], dtype).take(pa.array(np.zeros(n, np.int32)))

    columns: dict[str, Any] = {
        "sweep_id": const(sweep_id, pa.string()),
        "cell_id": const(unit.cell_id, pa.string()),
        "attack_name": const(aspec.name, pa.string()),
        "attack_kind": const(aspec.kind, pa.string()),
        "norm": const(aspec.norm, pa.string()),
        "epsilon": eps.astype(np.float64),
        "strategy": const(aspec.strategy, pa.string()),
        "shard": np.full(n, unit.shard, np.int32),
        "sample_id": adv_table["sample_id"].to_numpy().astype(np.int64),
        "label": lab,
        "target": targets.astype(np.int64),
        "clean_pred": clean_pred_np,
        "adv_pred": adv_pred_np,
        "clean_correct": clean_correct,
        "success": success,
        "robust": robust,
        "perturbation": norm.cpu().numpy().astype(np.float64),
        "min_perturbation": np.full(n, np.nan),
        "broken_by": pa.nulls(n, pa.string()),
        "adv_nonfinite": adv_pred_np == NO_CLASS,
        "seed": np.full(n, unit.seed, np.int64),
        "cell_seconds": np.full(n, seconds, np.float64),
        "source_model": const(unit.source, pa.string()),
        "schema_version": np.full(n, SCHEMA_VERSION, np.int32),
    }
    arrays = [c if isinstance(c, pa.Array) else pa.array(c, f.type)
              for f, c in ((f, columns[f.name]) for f in FILE_SCHEMA)]
    table = pa.Table.from_arrays(arrays, schema=FILE_SCHEMA)
    relpath = advfiles.transfer_relpath(unit.model, unit.attack, unit.cell_id)
    size = store.write_shard(spec.output, relpath, table)
    samples = len(set(columns["sample_id"].tolist()))
    return {"cell_id": unit.cell_id, "file": relpath, "rows": n, "bytes": size, "samples": samples,
            "seconds": time.perf_counter() - t0, "attack_seconds": 0.0}
