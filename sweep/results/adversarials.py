"""Stored adversarial images: one Parquet file per cell, next to its rows.

Layout (a leading ``_`` keeps Parquet readers of the results out of it, so
``pd.read_parquet(output)`` still reads result rows only)::

    <output>/_adversarials/model=<model>/attack=<label>/<cell_id>.parquet

One row per (sample, epsilon), sample-major (a sample's rows are adjacent, so its
clean image, repeated on each, compresses away), with :data:`ADV_SCHEMA`:
``image`` is the adversarial the row's verdict was measured on, bit for bit (float32,
in [0, 1]: re-running the model on it gives the row's ``adv_pred``), ``clean`` the
clean image; both are pyarrow's ``fixed_shape_tensor`` (``table["image"]
.combine_chunks().to_numpy_ndarray()`` is an ``[N, C, H, W]`` array; pandas reads
them as flat arrays). The schema metadata says what the cell kept
(``sweep.adversarials``: ``all`` or ``first_n:<n>``), which adoption reads back.

A file is written whole (:func:`sweep.results.store.write_bytes`, i.e.
:mod:`sweep.results.atomic`) before the cell's result file, and the manifest's done
record vouches for both (``adv_file``, ``adv_bytes``): a cell whose adversarial file
is missing or torn is recomputed when the spec keeps adversarials. No torch here:
:mod:`sweep.api` turns the arrays into tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sweep.results import store

ADV_DIR = "_adversarials"
TRANSFER_DIR = "_transfer"
KEEP_KEY = b"sweep.adversarials"

# name, type (image columns: a fixed_shape_tensor of the cell's image shape), meaning
ADV_COLUMNS: tuple[tuple[str, str], ...] = (
    ("cell_id", "the cell that crafted the adversarial"),
    ("sample_id", "stable index into the dataset (as in the result rows)"),
    ("epsilon", "attack budget of the row"),
    ("label", "true class"),
    ("target", "target class of a targeted attack, -1 if untargeted"),
    ("adv_pred", "the crafting model's verified prediction on image"),
    ("image", "the adversarial image, float32 in [0, 1], exactly as verified"),
    ("clean", "the clean image"),
)


def adv_schema(shape: Sequence[int]) -> pa.Schema:
    """The file schema for images of ``shape`` (``[C, H, W]``)."""
    tensor = pa.fixed_shape_tensor(pa.float32(), tuple(int(s) for s in shape))
    return pa.schema([
        pa.field("cell_id", pa.string()),
        pa.field("sample_id", pa.int64()),
        pa.field("epsilon", pa.float64()),
        pa.field("label", pa.int64()),
        pa.field("target", pa.int64()),
        pa.field("adv_pred", pa.int64()),
        pa.field("image", tensor),
        pa.field("clean", tensor),
    ])


def adv_relpath(model: str, attack: str, cell_id: str) -> str:
    """The cell's adversarial file, relative to the output folder."""
    return f"{ADV_DIR}/{store.shard_relpath(model, attack, cell_id)}"


def transfer_relpath(model: str, attack: str, unit_id: str) -> str:
    """A transfer evaluation's rows (``model`` is the target), relative to the output."""
    return f"{TRANSFER_DIR}/{store.shard_relpath(model, attack, unit_id)}"


def adv_table(
    *,
    cell_id: str,
    sample_ids: np.ndarray,
    epsilons: Sequence[float],
    labels: np.ndarray,
    targets: np.ndarray,
    adv_pred: np.ndarray,
    adv: np.ndarray,
    clean: np.ndarray,
    keep: str,
) -> pa.Table:
    """Rows of ``adv`` (``[K, B, *shape]``, the curve's adversarials), sample-major.

    ``adv_pred``: ``[K, B]``; ``sample_ids``, ``labels``, ``targets``: ``[B]``; ``clean``:
    ``[B, *shape]``; ``keep``: the setting the cell stored under (schema metadata)."""
    k, b = adv.shape[0], adv.shape[1]
    shape = adv.shape[2:]
    schema = adv_schema(shape).with_metadata({KEEP_KEY: keep.encode()})
    images = np.ascontiguousarray(adv.astype(np.float32, copy=False).swapaxes(0, 1)).reshape(k * b, *shape)
    cleans = np.repeat(clean.astype(np.float32, copy=False), k, axis=0)
    n = k * b
    columns = [
        pa.array([cell_id] * n, pa.string()),
        pa.array(np.repeat(sample_ids.astype(np.int64), k)),
        pa.array(np.tile(np.asarray(epsilons, np.float64), b)),
        pa.array(np.repeat(labels.astype(np.int64), k)),
        pa.array(np.repeat(targets.astype(np.int64), k)),
        pa.array(adv_pred.astype(np.int64).T.reshape(-1)),
        _tensor(images, schema.field("image").type),
        _tensor(cleans, schema.field("clean").type),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _tensor(values: np.ndarray, dtype: pa.DataType) -> pa.Array:
    size = int(np.prod(values.shape[1:])) if values.ndim > 1 else 1
    storage = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), size)
    return pa.ExtensionArray.from_storage(dtype, storage)


def write_adversarials(output: store.Output, relpath: str, table: pa.Table) -> int:
    """Write ``table`` to ``output/relpath`` whole; returns its size."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return store.write_bytes(output, relpath, sink.getvalue())


def read_adversarials(output: store.Output, relpath: str) -> pa.Table:
    """One cell's adversarial file (raises OSError / ArrowException if unreadable)."""
    fs, base = store.filesystem(output)
    return pq.read_table(f"{base}/{relpath}", filesystem=fs)


def kept(table_or_schema: pa.Table | pa.Schema) -> str | None:
    """What the file's cell kept (``all``, ``first_n:<n>``), from its metadata."""
    meta = table_or_schema.schema.metadata if isinstance(table_or_schema, pa.Table) else table_or_schema.metadata
    value = (meta or {}).get(KEEP_KEY)
    return None if value is None else value.decode()


def whole_adversarials(output: store.Output, relpath: str, cell_id: str) -> str | None:
    """The keep tag of ``output/relpath`` when it is a readable adversarial file of
    ``cell_id`` alone (adoption), else None."""
    try:
        fs, base = store.filesystem(output)
        with pq.ParquetFile(f"{base}/{relpath}", filesystem=fs) as f:
            if [x.name for x in f.schema_arrow] != [c for c, _ in ADV_COLUMNS]:
                return None
            ids = f.read(columns=["cell_id"])["cell_id"].unique().to_pylist()
            tag = kept(f.schema_arrow)
    except (OSError, ValueError, pa.ArrowException):
        return None
    return tag if ids == [cell_id] else None


def images(table: pa.Table, column: str = "image") -> np.ndarray:
    """``[N, *shape]`` float32 array of an image column."""
    return table[column].combine_chunks().to_numpy_ndarray()
