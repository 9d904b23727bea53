"""Parquet results: one file per cell, written atomically, under a hive layout.

Layout (``pd.read_parquet(output)`` reads it as one table)::

    <output>/model=<model>/attack=<attack label>/<cell_id>.parquet

- Each file has exactly :data:`sweep.schema.FILE_SCHEMA` (dataset discovery takes
  the schema from the first file found, so a missing column would silently vanish);
  readers pass :data:`~sweep.schema.DATASET_SCHEMA` back in.
- A file is written to ``.tmp-<uuid>-<cell_id>.parquet`` in its final folder and
  renamed with :func:`os.replace`, so a reader (or a crash) never sees half a file
  under a result name, and two attempts of one cell (a retry racing a lost worker)
  never write the same temp file. Readers ignore names starting with ``.`` or ``_``.
- The file name is the cell id: a retried or re-run cell overwrites its own file,
  so a cell's rows exist exactly once by construction.
- Model and attack names are percent-encoded into their directory names
  (``/`` -> ``%2F``, ...), the encoding pyarrow's hive partitioning decodes; the
  fixed ``model=`` / ``attack=`` prefixes mean no name can be ``..`` or absolute,
  so no spec value can escape the output folder.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from sweep.schema import DATASET_SCHEMA, FILE_SCHEMA, PARTITION_COLUMNS

TMP_PREFIX = ".tmp-"
SUFFIX = ".parquet"


def partition_dir(model: str, attack: str) -> str:
    """``model=<m>/attack=<a>`` with both names percent-encoded (no separators survive)."""
    return f"model={_encode(model)}/attack={_encode(attack)}"


def _encode(name: str) -> str:
    if not name or any(ord(c) < 32 for c in name):
        raise ValueError(f"partition value must be a printable, non-empty string: {name!r}")
    return quote(name, safe="")


def shard_relpath(model: str, attack: str, cell_id: str) -> str:
    """The cell's file, relative to the output folder."""
    if not cell_id.isalnum():
        raise ValueError(f"cell id must be alphanumeric: {cell_id!r}")
    return f"{partition_dir(model, attack)}/{cell_id}{SUFFIX}"


def write_shard(output: Path, relpath: str, table: pa.Table) -> int:
    """Write ``table`` (:data:`FILE_SCHEMA`) to ``output/relpath`` atomically; returns its size."""
    if table.schema != FILE_SCHEMA:
        table = table.cast(FILE_SCHEMA)
    final = output / relpath
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{final.name}")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)  # atomic within one folder: readers see old or new, never half
    finally:
        if tmp.exists():
            tmp.unlink()
    return final.stat().st_size


def read_shard(path: Path) -> pa.Table:
    """One cell's rows (file columns only)."""
    return pq.read_table(path, schema=FILE_SCHEMA)


def open_results(output: Path, relpaths: Iterable[str] | None = None) -> ds.Dataset:
    """The results as a pyarrow dataset with :data:`DATASET_SCHEMA`.

    With ``relpaths`` (the verified files from :mod:`sweep.manifest`) only those are
    read, so a stray or damaged file in the folder can never be taken as a result.
    """
    partitioning = ds.partitioning(
        pa.schema([pa.field(c, pa.string()) for c in PARTITION_COLUMNS]), flavor="hive"
    )
    if relpaths is None:
        return ds.dataset(output, schema=DATASET_SCHEMA, format="parquet", partitioning=partitioning)
    files = [str(output / r) for r in relpaths]
    return ds.dataset(
        files,
        schema=DATASET_SCHEMA,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=str(output),
    )


def result_files(output: Path) -> list[str]:
    """Every ``*.parquet`` under ``model=*/attack=*`` (relative paths), temp files excluded."""
    found: list[str] = []
    if not output.is_dir():
        return found
    for mdir in os.scandir(output):
        if not (mdir.is_dir() and mdir.name.startswith("model=")):
            continue
        for adir in os.scandir(mdir.path):
            if not (adir.is_dir() and adir.name.startswith("attack=")):
                continue
            for f in os.scandir(adir.path):
                if f.name.endswith(SUFFIX) and not f.name.startswith((".", "_")):
                    found.append(f"{mdir.name}/{adir.name}/{f.name}")
    return found


def remove_temp_files(output: Path) -> int:
    """Delete leftover ``.tmp-*`` files of attempts that died mid-write; returns how many."""
    removed = 0
    if not output.is_dir():
        return removed
    for mdir in output.glob("model=*"):
        for tmp in mdir.glob(f"attack=*/{TMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
