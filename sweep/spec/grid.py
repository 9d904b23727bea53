"""Grid expansion: a validated spec -> the list of cells to compute. Pure: no I/O, no torch.

A :class:`Cell` is one (model, attack, data shard) with all of the attack's epsilons
inside it, so a whole robustness curve of that shard is one unit of work (the
attack kernel reuses work across epsilons).

``cell_id`` is a hash of everything that determines the cell's rows and nothing
else: the model's identity (its spec entry, with a checkpoint's SHA-256 instead of
its path, and for a built-in its training recipe and torch version), the attack's identity (name, norm, every hyper-parameter with defaults
filled in, targeting), the epsilons, the strategy, the effective batch size (a batch
shares one random generator), the shard's bounds and content fingerprint, the spec
seed and the result schema version. Not in it: the sweep name, the output path,
MLflow, resources, retries, the time, or the other cells, so adding a model or an
attack to a spec leaves the existing cells' ids (and their results) valid.

Each cell's seed is derived by hashing the spec seed with the cell's identity, not
from its position in the grid, so reordering or extending a spec never changes a row.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from sweep.results.schema import CELL_ID_VERSION, SCHEMA_VERSION
from sweep.spec.config import DEFAULT_PRECISION, SweepSpec, canonical_json

CELL_ID_HEX = 24  # 96 bits: collisions are out of reach for any realistic grid
CELL_ID_BYTES = CELL_ID_HEX // 2
SEED_BITS = 63  # seeds are stored in an int64 Parquet column


@dataclass(frozen=True)
class DataLayout:
    """What the grid needs to know about the loaded dataset (see :mod:`sweep.spec.inputs`)."""

    num_samples: int
    shard_size: int
    num_classes: int
    shard_digests: tuple[str, ...]  # one content fingerprint per shard

    def bounds(self, shard: int) -> tuple[int, int]:
        start = shard * self.shard_size
        return start, min(start + self.shard_size, self.num_samples)

    @property
    def num_shards(self) -> int:
        return len(self.shard_digests)


@dataclass(frozen=True, slots=True)
class Cell:
    """One unit of work: ``model`` x ``attack`` (its label) x data positions ``[start, stop)``."""

    cell_id: str
    model: str
    attack: str
    norm: str
    epsilons: tuple[float, ...]
    shard: int
    start: int
    stop: int
    seed: int

    @property
    def samples(self) -> int:
        return self.stop - self.start


def _digest(text: str, hex_chars: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:hex_chars]


def expand(spec: SweepSpec, layout: DataLayout) -> list[Cell]:
    """All cells of ``spec``: model-major, then attack, then shard (a model's cells adjacent)."""
    # A cell's key is "head|model|attack|shard" with each part digested once: the
    # SHA-256 state after "head|model|attack|" is computed once per model x attack and
    # copied per shard, so a cell costs one copy, one short update and one Cell
    # (100,000 cells in about a fifth of a second). The digest bytes give the same
    # id and seed as the hex digest did: hex[:24] is bytes[:12], hex[-16:] bytes[24:].
    head = f"v{CELL_ID_VERSION}|seed={spec.seed}"
    if spec.precision != DEFAULT_PRECISION:
        # TF32 changes results, so it changes the ids; the default leaves ids as they were
        head += f"|precision={spec.precision}"
    model_keys = [(m.name, _digest(m.identity, 32)) for m in spec.models]
    attack_keys = []
    for a in spec.attacks:
        part = canonical_json({
            "attack": a.identity, "epsilons": list(a.epsilons), "strategy": a.strategy,
        })
        attack_keys.append((a, _digest(part, 32)))
    shard_keys = []
    for s in range(layout.num_shards):
        start, stop = layout.bounds(s)
        batch = min(spec.batch_size, stop - start)
        shard_keys.append((s, start, stop, f"{layout.shard_digests[s]}:{start}:{stop}:b{batch}".encode()))
    seed_mask = (1 << SEED_BITS) - 1
    from_bytes = int.from_bytes
    cells: list[Cell] = []
    append = cells.append
    with _no_gc():
        for model, mkey in model_keys:
            for atk, akey in attack_keys:
                label, norm, epsilons = atk.label, atk.norm, atk.epsilons
                pair = hashlib.sha256(f"{head}|{mkey}|{akey}|".encode())
                for s, start, stop, skey in shard_keys:
                    h = pair.copy()
                    h.update(skey)
                    full = h.digest()
                    # the seed comes from the other end of the same digest: derived
                    # from (spec seed, cell identity), independent of grid order
                    append(Cell(full[:CELL_ID_BYTES].hex(), model, label, norm, epsilons, s,
                                start, stop, from_bytes(full[-8:], "big") & seed_mask))
    return cells


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused: each Cell is a tracked object, so 100,000 of
    them trigger collection after collection, each walking every cell made so far (a
    third of the time), and none of them is garbage, let alone in a cycle."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class TransferUnit:
    """One transfer evaluation: the adversarials of ``source_cell`` (crafted on model
    ``source``) re-run on model ``model`` (the target). ``cell_id`` is its own id, a
    hash of the source cell's id and the target model's identity, recorded in the
    manifest like a cell's."""

    cell_id: str
    model: str  # the target: the dispatcher sends the unit to a worker holding it
    source: str
    attack: str
    source_cell: str
    norm: str
    epsilons: tuple[float, ...]
    shard: int
    seed: int


def transfer_units(spec: SweepSpec, cells: list[Cell]) -> list[TransferUnit]:
    """The transfer evaluations of ``spec.transfer``: every cell of a source model (and
    transferred attack) x every target model, the source itself included (the diagonal
    re-checks the cell's own verdicts from its stored adversarials)."""
    if spec.transfer is None:
        return []
    targets = [(m.name, _digest(m.identity, 32)) for m in spec.models if m.name in spec.transfer.targets]
    units = []
    for cell in cells:
        if not spec.transferred(cell.model, cell.attack):
            continue
        for target, tkey in targets:
            key = f"v{SCHEMA_VERSION}|transfer|{cell.cell_id}|{tkey}"
            units.append(TransferUnit(
                cell_id=_digest(key, CELL_ID_HEX), model=target, source=cell.model, attack=cell.attack,
                source_cell=cell.cell_id, norm=cell.norm, epsilons=cell.epsilons, shard=cell.shard,
                seed=cell.seed,
            ))  # fmt: skip
    return units


def sweep_id(cells: list[Cell]) -> str:
    """Hash of the set of cells: same results-determining content, same id."""
    h = hashlib.sha256(f"v{CELL_ID_VERSION}".encode())
    # one update of the joined ids hashes the same bytes as one update per id
    h.update("".join(sorted(c.cell_id for c in cells)).encode())
    return h.hexdigest()[:16]


def derive_seed(seed: int, *parts: object) -> int:
    """A sub-seed of ``seed`` for ``parts`` (e.g. a batch index inside a cell)."""
    text = canonical_json([seed, *parts])
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) & ((1 << SEED_BITS) - 1)
