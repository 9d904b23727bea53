"""The worker: computes one cell (model x attack x data shard) and writes its Parquet file.

:class:`CellWorker` is plain Python (no Ray here); :mod:`sweep.execution.pool` wraps it as a
long-lived Ray actor (one per GPU, or per CPU slot locally) and hands it, with each
cell, the run's :class:`WorkContext` (spec, data layout, sweep id). A worker keeps what is slow to
load between cells: models (LRU, ``resources.models_per_worker``, moved to the
worker's device once), the dataset (loaded once), data shards already on the
device (LRU) and attack objects. It runs on CUDA when Ray gave it a GPU (PyTorch
sees only the GPUs Ray assigned) and on the CPU otherwise.

Per cell, :meth:`CellWorker.run`:

1. checks the shard's content fingerprint against the one the driver hashed into
   the cell id (a node with different data must not write under that id);
2. runs the model once on the clean shard: logits must be finite and
   ``[B, num_classes]``, else the cell fails with that message;
3. picks targets for targeted attacks (:func:`choose_targets`);
4. runs ``attack.curve(...)`` over the cell's epsilons, in batches of
   ``batch_size``, each batch seeded from the cell seed;
5. stores the adversarials the spec keeps (``adversarials:``; all of them for a
   transfer source) in the cell's adversarial file (:mod:`sweep.results.adversarials`),
   written whole before the rows, so a whole rows file implies its adversarials;
6. writes one row per (sample, epsilon) with :data:`sweep.results.schema.FILE_SCHEMA`
   through :func:`sweep.results.store.write_shard` (written whole, :mod:`sweep.results.atomic`) and returns a small
   summary to the driver, which records the cell (both files) in the manifest.

:meth:`CellWorker.run_transfer` evaluates a transfer unit (:mod:`sweep.execution.transfer`): a source cell's stored
adversarials re-run on a target model, one row per (sample, epsilon).

The worker writes the file (not the driver) so result data never travels through
the driver: on a cluster the output folder is shared storage every worker sees.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from sweep.attacks import Attack, create
from sweep.attacks.base import NO_CLASS
from sweep.attacks.precision import full_precision, use_precision
from sweep.data.base import ImageSet
from sweep.execution import telemetry
from sweep.execution.transfer import evaluate_transfer
from sweep.results import adversarials as advfiles
from sweep.results import store
from sweep.results.schema import FILE_SCHEMA, SCHEMA_VERSION
from sweep.spec.config import AttackSpec, SweepSpec, TargetSpec, canonical_json
from sweep.spec.grid import Cell, DataLayout, TransferUnit, derive_seed
from sweep.spec.inputs import load_data, load_net

SHARDS_PER_WORKER = 16  # device-resident shards kept per worker (LRU); each is small


class CellError(RuntimeError):
    """A cell that cannot produce trustworthy rows (bad logits, data mismatch)."""


@dataclass(frozen=True)
class WorkContext:
    """What a worker needs besides the cell: the spec, the data layout, the sweep id."""

    spec: SweepSpec
    layout: DataLayout
    sweep_id: str


class CellWorker:
    """Computes cells; see the module docstring.

    Caches are keyed by content identity (a model by its spec identity, the data by
    its entry and sample count), not by name, so one worker can serve several
    sweeps in a row (a notebook, a test session) without mixing them up.
    """

    def __init__(self) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self._models: OrderedDict[str, torch.nn.Module] = OrderedDict()
        self._shards: OrderedDict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
        self._attacks: dict[str, Attack] = {}
        self._data: tuple[str, ImageSet] | None = None

    def ping(self) -> str:
        """Answers once the worker is up (the driver uses it after a worker restart)."""
        return str(self.device)

    def models_loaded(self) -> list[str]:
        return list(self._models)

    # -- caches --------------------------------------------------------------------------
    def _model(self, ctx: WorkContext, name: str) -> torch.nn.Module:
        mspec = ctx.spec.model(name)
        key = mspec.identity
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        net = load_net(mspec).to(self.device)
        self._models[key] = net
        while len(self._models) > ctx.spec.resources.models_per_worker:
            self._models.popitem(last=False)
        return net

    def _shard(self, ctx: WorkContext, cell: Cell) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        data_key = canonical_json([ctx.spec.dataset.entry, ctx.spec.dataset.samples])
        # the shard's range and planned fingerprint, not its index: a kept pool serves
        # sweeps whose shard_size differs, and shard 0 of one is not shard 0 of another
        key = (data_key, cell.start, cell.stop, ctx.layout.shard_digests[cell.shard])
        if key in self._shards:
            self._shards.move_to_end(key)
            return self._shards[key]
        if self._data is None or self._data[0] != data_key:
            self._data = (data_key, load_data(ctx.spec.dataset))
        part = self._data[1].slice(cell.start, cell.stop)
        if part.fingerprint() != ctx.layout.shard_digests[cell.shard]:
            raise CellError(
                f"shard {cell.shard} of {part.name} differs from the one the driver planned "
                "(different data on this node?)"
            )
        entry = (part.images.to(self.device), part.labels.to(self.device), part.sample_ids)
        self._shards[key] = entry
        while len(self._shards) > SHARDS_PER_WORKER:
            self._shards.popitem(last=False)
        return entry

    def _attack(self, spec: AttackSpec) -> Attack:
        if spec.identity not in self._attacks:
            self._attacks[spec.identity] = create(spec.name, norm=spec.norm, **spec.user_params)
        return self._attacks[spec.identity]

    # -- one cell ------------------------------------------------------------------------
    def run(self, ctx: WorkContext, cell: Cell) -> dict[str, Any]:
        """Compute ``cell``, write its file, return ``{cell_id, file, rows, bytes, ...}``."""
        # the spec's precision (sweep.attacks.precision): tf32 keeps PyTorch's TF32 default;
        # bf16 searches under autocast, verdicts and early stops confirmed in fp32
        with use_precision(ctx.spec.precision):
            return self._run(ctx, cell)

    def _run(self, ctx: WorkContext, cell: Cell) -> dict[str, Any]:
        t0 = time.perf_counter()
        spec = ctx.spec
        aspec = spec.attack(cell.attack)
        model = self._model(ctx, cell.model)
        images, labels, sample_ids = self._shard(ctx, cell)
        attack = self._attack(aspec)
        logits = self._clean_logits(ctx, model, images, cell)
        targets, keep = choose_targets(
            aspec.targeted, logits, labels, sample_ids, ctx.layout.num_classes, spec.seed
        )
        if keep is not None:
            images, labels, sample_ids = images[keep], labels[keep], sample_ids[keep.cpu()]
            targets = None if targets is None else targets[keep]
        positions = torch.arange(cell.start, cell.stop)
        if keep is not None:
            positions = positions[keep.cpu()]
        keep_adv = spec.keep_adversarials(cell.model, cell.attack)
        stored = stored_samples(keep_adv.keep, keep_adv.n, positions)
        t_attack = time.perf_counter()
        curve = run_curve(attack, model, images, labels, targets, cell, aspec.strategy, spec.batch_size,
                          store=stored)
        attack_seconds = time.perf_counter() - t_attack
        adv = write_cell_adversarials(
            spec.output, cell, keep_adv.tag(), stored, images=images, sample_ids=sample_ids,
            labels=labels, targets=targets, curve=curve,
        )
        table = rows_table(
            cell=cell, aspec=aspec, sweep_id=ctx.sweep_id, sample_ids=sample_ids,
            labels=labels, targets=targets, curve=curve, cell_seconds=attack_seconds,
            member_labels=getattr(attack, "labels", ()),
        )
        relpath = store.shard_relpath(cell.model, cell.attack, cell.cell_id)
        size = store.write_shard(spec.output, relpath, table)
        telemetry.record_cell(spec.name, cell.model, cell.attack, int(labels.shape[0]), attack_seconds)
        return {
            "cell_id": cell.cell_id,
            "file": relpath,
            "rows": table.num_rows,
            "bytes": size,
            "samples": int(labels.shape[0]),
            "seconds": time.perf_counter() - t0,
            "attack_seconds": attack_seconds,
            **adv,
        }

    # -- one transfer evaluation -------------------------------------------------------------
    def run_transfer(self, ctx: WorkContext, unit: TransferUnit, source: dict[str, Any] | None = None) -> dict[str, Any]:
        """Evaluate the source cell's stored adversarials on the target model ``unit.model``;
        write the rows (``_transfer/``), return the summary the manifest records.

        ``source``: the source cell's summary (the dispatcher passes the finished cell's
        result, so Ray starts this call only once that cell is done); its adversarial
        file is read from the output, where the source's worker wrote it."""
        with use_precision(ctx.spec.precision):
            return self._run_transfer(ctx, unit, source)

    def _run_transfer(self, ctx: WorkContext, unit: TransferUnit, source: dict[str, Any] | None) -> dict[str, Any]:
        return evaluate_transfer(ctx.spec, ctx.sweep_id, unit, self._model(ctx, unit.model), self.device, source)

    def _clean_logits(
        self, ctx: WorkContext, model: torch.nn.Module, images: torch.Tensor, cell: Cell
    ) -> torch.Tensor:
        bs = ctx.spec.batch_size
        # fp32 as every verdict (sweep.attacks.base.full_precision): least-likely targets
        # and clean labels must not hinge on TF32 rounding
        with torch.no_grad(), full_precision(images.device):
            logits = torch.cat([model(images[i : i + bs]) for i in range(0, images.shape[0], bs)])
        want = (images.shape[0], ctx.layout.num_classes)
        if logits.dim() != 2 or tuple(logits.shape) != want:
            raise CellError(f"model {cell.model!r} returned logits of shape {tuple(logits.shape)}, expected {want}")
        if not bool(torch.isfinite(logits).all()):
            bad = int((~torch.isfinite(logits)).any(dim=1).sum())
            raise CellError(f"model {cell.model!r} returned non-finite logits for {bad} of {want[0]} samples")
        return logits


def choose_targets(
    targeted: TargetSpec | None,
    logits: torch.Tensor,
    labels: torch.Tensor,
    sample_ids: torch.Tensor,
    num_classes: int,
    seed: int,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Target class per sample and, for explicit targets, which samples to keep.

    - ``random``: uniform over the classes other than the label, drawn from a hash of
      (spec seed, sample id): the same target for a sample in every model and attack,
      so targeted attacks are comparable and their worst case is meaningful.
    - ``least-likely``: the class with the lowest clean logit other than the label
      (Kurakin et al., "Adversarial examples in the physical world", arXiv:1607.02533).
    - ``explicit``: classes ``targets[k]`` taken in turn starting at ``sample_id mod
      len(targets)``, skipping the sample's own label; a sample whose only candidate
      is its own label is left out of the cell (no rows: "fool it into its own class"
      has no meaning).
    """
    if targeted is None:
        return None, None
    device = labels.device
    if targeted.mode == "least-likely":
        masked = logits.clone()
        masked[torch.arange(labels.shape[0], device=device), labels] = float("inf")
        return masked.argmin(dim=1), None
    ids = sample_ids.tolist()
    labs = labels.tolist()
    if targeted.mode == "random":
        out = []
        for sid, lab in zip(ids, labs, strict=True):
            draw = int.from_bytes(hashlib.sha256(f"{seed}:target:{sid}".encode()).digest()[:8], "big")
            out.append((lab + 1 + draw % (num_classes - 1)) % num_classes)
        return torch.tensor(out, dtype=torch.long, device=device), None
    choices = targeted.targets
    out, keep = [], []
    for sid, lab in zip(ids, labs, strict=True):
        k0 = sid % len(choices)
        pick = next((choices[(k0 + k) % len(choices)] for k in range(len(choices))
                     if choices[(k0 + k) % len(choices)] != lab), None)
        keep.append(pick is not None)
        out.append(-1 if pick is None else pick)
    keep_t = torch.tensor(keep, dtype=torch.bool, device=device)
    return torch.tensor(out, dtype=torch.long, device=device), (None if all(keep) else keep_t)


def run_curve(
    attack: Attack,
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor | None,
    cell: Cell,
    strategy: str,
    batch_size: int,
    *,
    store: torch.Tensor | None = None,
) -> dict[str, torch.Tensor | None]:
    """``attack.curve`` over the cell's epsilons, batch by batch; ``[K, B]`` results on the CPU.

    ``store``: ``[B]`` bool, the samples whose adversarials to keep; they come back as
    ``adv``, ``[K, S, ...]`` on the CPU (``S`` stored samples, in order), the very
    tensors the verdicts were measured on."""
    parts = []
    advs: list[torch.Tensor] = []
    n = images.shape[0]
    for b, start in enumerate(range(0, n, batch_size)):
        sl = slice(start, min(start + batch_size, n))
        # one batch: the cell seed itself; several: a sub-seed per batch index
        seed = cell.seed if n <= batch_size else derive_seed(cell.seed, "batch", b)
        wanted = None if store is None else store[sl]
        keep_adv = wanted is not None and bool(wanted.any())
        cur = attack.curve(
            model, images[sl], labels[sl], cell.epsilons,
            targets=None if targets is None else targets[sl], strategy=strategy, seed=seed,
            keep_adv=keep_adv,
        )
        if keep_adv:
            advs.append(cur.adv[:, wanted.to(cur.adv.device)].detach().cpu())  # type: ignore[index,union-attr]
        parts.append(cur)
    if not parts:  # every sample was left out (explicit targets)
        k = len(cell.epsilons)
        empty_b = torch.zeros(k, 0, dtype=torch.bool)
        return {"success": empty_b, "robust": empty_b, "pred": torch.zeros(k, 0, dtype=torch.long),
                "norm": torch.zeros(k, 0), "clean_pred": torch.zeros(0, dtype=torch.long),
                "min_norm": None, "broken_by": None, "adv": None}

    def cat(name: str, dim: int) -> torch.Tensor:
        return torch.cat([getattr(p, name).detach().cpu() for p in parts], dim=dim)

    return {
        "success": cat("success", 1),
        "robust": cat("robust", 1),
        "pred": cat("pred", 1),
        "norm": cat("norm", 1),
        "clean_pred": cat("clean_pred", 0),
        "min_norm": None if parts[0].min_norm is None else cat("min_norm", 0),
        "broken_by": None if parts[0].broken_by is None else cat("broken_by", 1),
        "adv": torch.cat(advs, dim=1) if advs else None,
    }


def stored_samples(keep: str, n: int, positions: torch.Tensor) -> torch.Tensor | None:
    """``[B]`` bool: the cell's samples whose adversarials are stored (``positions``: each
    sample's position in the dataset); None when none is. ``first_n`` keeps the
    dataset's first ``n`` samples, so every model and attack stores the same ones."""
    if keep == "none":
        return None
    mask = torch.ones_like(positions, dtype=torch.bool) if keep == "all" else positions < n
    return mask if bool(mask.any()) else None


def write_cell_adversarials(
    output: store.Output,
    cell: Cell,
    tag: str,
    stored: torch.Tensor | None,
    *,
    images: torch.Tensor,
    sample_ids: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor | None,
    curve: dict[str, torch.Tensor | None],
) -> dict[str, Any]:
    """Write the cell's adversarial file (the samples of ``stored``) whole; returns the
    done record's fields: ``adv_file`` (None when nothing is stored), ``adv_bytes``,
    ``adversarials`` (what the cell stored under, ``tag``)."""
    adv = curve.get("adv")
    if stored is None or adv is None:
        return {"adv_file": None, "adv_bytes": 0, "adversarials": tag}
    mask = stored.cpu()
    tgt = (torch.full_like(labels, -1) if targets is None else targets).cpu()[mask]
    table = advfiles.adv_table(
        cell_id=cell.cell_id,
        sample_ids=sample_ids.cpu()[mask].numpy(),
        epsilons=cell.epsilons,
        labels=labels.cpu()[mask].numpy(),
        targets=tgt.numpy(),
        adv_pred=curve["pred"][:, mask].numpy(),  # type: ignore[index]
        adv=adv.numpy(),
        clean=images.detach().cpu()[mask].numpy(),
        keep=tag,
    )
    relpath = advfiles.adv_relpath(cell.model, cell.attack, cell.cell_id)
    size = advfiles.write_adversarials(output, relpath, table)
    return {"adv_file": relpath, "adv_bytes": size, "adversarials": tag}


def rows_table(
    *,
    cell: Cell,
    aspec: AttackSpec,
    sweep_id: str,
    sample_ids: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor | None,
    curve: dict[str, torch.Tensor | None],
    cell_seconds: float,
    member_labels: tuple[str, ...] = (),
) -> pa.Table:
    """One row per (epsilon, sample), epsilon-major, with :data:`FILE_SCHEMA`.

    ``member_labels``: a cascade's member labels, for its ``broken_by`` column."""
    k, b = len(cell.epsilons), int(labels.shape[0])
    n = k * b
    lab = labels.cpu().numpy().astype(np.int64)
    clean_pred = curve["clean_pred"].numpy().astype(np.int64)  # type: ignore[union-attr]
    clean_correct = clean_pred == lab
    success = curve["success"].numpy().reshape(-1)  # type: ignore[union-attr]
    # the verdict of sweep.attacks.base.robust_verdict, not ~success: a targeted
    # attack's adversarial that misses its target but is misclassified is not robust
    robust = curve["robust"].numpy().reshape(-1)  # type: ignore[union-attr]
    tgt = np.full(b, -1, np.int64) if targets is None else targets.cpu().numpy().astype(np.int64)
    if curve["min_norm"] is None:
        min_pert = np.full(n, np.nan)
    else:
        min_pert = np.tile(curve["min_norm"].numpy().astype(np.float64), k)

    if curve["broken_by"] is None:
        broken_by = pa.nulls(n, pa.string())
    else:
        # member index -> its label; -1 (no member broke the sample) -> null
        names = pa.array([*member_labels, None], pa.string())
        index = curve["broken_by"].numpy().reshape(-1).astype(np.int64)  # type: ignore[union-attr]
        broken_by = names.take(pa.array(np.where(index < 0, len(member_labels), index)))

    def const(value: Any, dtype: pa.DataType) -> pa.Array:
        return pa.array([value], dtype).take(pa.array(np.zeros(n, np.int32)))

    columns = {
        "sweep_id": const(sweep_id, pa.string()),
        "cell_id": const(cell.cell_id, pa.string()),
        "attack_name": const(aspec.name, pa.string()),
        "attack_kind": const(aspec.kind, pa.string()),
        "norm": const(aspec.norm, pa.string()),
        "epsilon": np.repeat(np.asarray(cell.epsilons, np.float64), b),
        "strategy": const(aspec.strategy, pa.string()),
        "shard": np.full(n, cell.shard, np.int32),
        "sample_id": np.tile(sample_ids.cpu().numpy().astype(np.int64), k),
        "label": np.tile(lab, k),
        "target": np.tile(tgt, k),
        "clean_pred": np.tile(clean_pred, k),
        "adv_pred": curve["pred"].numpy().reshape(-1).astype(np.int64),  # type: ignore[union-attr]
        "clean_correct": np.tile(clean_correct, k),
        "success": success,
        "robust": robust,
        "perturbation": curve["norm"].numpy().reshape(-1).astype(np.float64),  # type: ignore[union-attr]
        "min_perturbation": min_pert,
        "broken_by": broken_by,
        # the verdict's re-run gave no class: its logits held NaN/inf (attacks.base.predict)
        "adv_nonfinite": curve["pred"].numpy().reshape(-1) == NO_CLASS,  # type: ignore[union-attr]
        "seed": np.full(n, cell.seed, np.int64),
        "cell_seconds": np.full(n, cell_seconds, np.float64),
        "source_model": pa.nulls(n, pa.string()),  # a cell's own rows (transfer rows name it)
        "schema_version": np.full(n, SCHEMA_VERSION, np.int32),
    }
    arrays = [pa.array(columns[f.name], f.type) if not isinstance(columns[f.name], pa.Array)
              else columns[f.name] for f in FILE_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=FILE_SCHEMA)
