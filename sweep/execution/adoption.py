"""Result files finished after their driver died: adopt the whole ones instead of recomputing.

A driver SIGKILLed mid-sweep leaves its workers running for a moment: they can
finish the cell in their hands and move its file into place (a rename on disk, a
completed upload on an object store) before Ray stops them. The manifest never
heard of such a file. It is whole by construction (:mod:`sweep.results.store`: a file
appears under its result name only complete), and its name is the cell id, a hash
of everything that determines its rows; so the next run adopts it into the
manifest, when its content proves to be that planned cell's rows:

- the file's schema is exactly :data:`sweep.results.schema.FILE_SCHEMA`;
- every row carries the cell's id, shard, seed and this schema version;
- its epsilons are exactly the cell's, and it has one row per (sample, epsilon),
  for as many samples as the cell has (fewer only for a targeted attack, which
  drops samples whose target is their label).

The cell's adversarial file (:mod:`sweep.results.adversarials`), written before its
rows, is adopted with it when it is readable and holds that cell's rows only; the
record then says what it stored (its metadata), else that it stored none, and the
resume check (:meth:`Manifest.complete`) recomputes the cell if the spec keeps more.

Anything else the manifest does not vouch for (a damaged file, another cell's rows
under this name, a file of a cell this spec does not plan) is left for
:meth:`sweep.results.manifest.Manifest.quarantine_unverified`, as before. ``--fresh`` adopts
nothing: it recomputes every cell.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from sweep.results import store
from sweep.results.adversarials import ADV_DIR, adv_relpath, whole_adversarials
from sweep.results.manifest import DoneRecord, Manifest
from sweep.results.schema import FILE_SCHEMA, SCHEMA_VERSION
from sweep.spec.grid import Cell

CHECKED_COLUMNS = ["cell_id", "shard", "seed", "schema_version", "epsilon", "sample_id", "cell_seconds"]


def adopt_orphans(
    manifest: Manifest,
    cells: Sequence[Cell],
    *,
    targeted: frozenset[str],
    stores_none: Callable[[Cell], str | None] = lambda _cell: None,
) -> list[str]:
    """Record in ``manifest`` the whole, unrecorded result files of ``cells``; returns their paths.

    ``targeted``: labels of the attacks that run targeted (their cells may hold fewer samples).
    ``stores_none(cell)``: the spec's keep tag when it stores no adversarial for ``cell``
    (``first_n`` beyond the cell's samples), so that a cell without an adversarial
    file is adopted as complete; None when a file is expected.
    """
    sizes = store.result_sizes(manifest.output)  # one listing serves both questions
    adv_sizes = store.result_sizes(manifest.output, ADV_DIR)
    recorded = {r.file for r in manifest.records().values() if sizes.get(r.file) == r.bytes}
    by_file = {store.shard_relpath(c.model, c.attack, c.cell_id): c for c in cells}
    adopted = []
    for rel, size in sorted(sizes.items()):
        cell = by_file.get(rel)
        if cell is None or rel in recorded:
            continue
        checked = whole_cell(manifest.output, rel, cell, targeted=cell.attack in targeted)
        if checked is None:
            continue
        rows, seconds = checked
        adv_rel = adv_relpath(cell.model, cell.attack, cell.cell_id)
        tag = whole_adversarials(manifest.output, adv_rel, cell.cell_id) if adv_rel in adv_sizes else None
        manifest.record(DoneRecord(cell_id=cell.cell_id, file=rel, rows=rows, bytes=size,
                                   seconds=seconds, finished=time.time(),
                                   adv_file=adv_rel if tag else None,
                                   adv_bytes=adv_sizes[adv_rel] if tag else 0,
                                   adversarials=tag or stores_none(cell) or "none"))
        adopted.append(rel)
    if adopted:
        manifest.close()  # durable now (on an object store: one segment for them all)
    return adopted


def whole_cell(output: store.Output, rel: str, cell: Cell, *, targeted: bool) -> tuple[int, float] | None:
    """``(rows, cell_seconds)`` when ``output/rel`` holds exactly ``cell``'s rows, else None."""
    try:
        table = store.read_shard_columns(output, rel, CHECKED_COLUMNS, schema=FILE_SCHEMA)
    except (OSError, ValueError, pa.ArrowException):
        return None  # unreadable, or another schema: not ours to adopt
    n = table.num_rows
    if n == 0:
        return None
    for name, value in (("cell_id", cell.cell_id), ("shard", cell.shard), ("seed", cell.seed),
                        ("schema_version", SCHEMA_VERSION)):
        if not pc.all(pc.equal(table[name], value)).as_py():
            return None
    epsilons = set(table["epsilon"].to_pylist())
    if epsilons != {float(e) for e in cell.epsilons}:
        return None
    samples = len(set(table["sample_id"].to_pylist()))
    pairs = len(set(zip(table["sample_id"].to_pylist(), table["epsilon"].to_pylist(), strict=True)))
    if pairs != n or n != samples * len(epsilons):
        return None  # a duplicated or missing (sample, epsilon) row
    if samples > cell.samples or (samples < cell.samples and not targeted):
        return None
    return n, float(pc.max(table["cell_seconds"]).as_py() or 0.0)
