"""Parquet results: one file per cell, written whole, under a hive layout.

Layout (``pd.read_parquet(output)`` reads it as one table)::

    <output>/model=<model>/attack=<attack label>/<cell_id>.parquet

- Each file has exactly :data:`sweep.results.schema.FILE_SCHEMA` (dataset discovery takes
  the schema from the first file found, so a missing column would silently vanish);
  readers pass :data:`~sweep.results.schema.DATASET_SCHEMA` back in.
- A file is written whole through :func:`sweep.results.atomic.write` (a temp file
  ``.tmp-<uuid>-<cell_id>.parquet`` renamed into place on disk, one upload on an
  object store), so a reader (or a crash) never sees half a file under a result
  name. Readers ignore names starting with ``.`` or ``_``.
- The file name is the cell id: a retried or re-run cell overwrites its own file,
  so a cell's rows exist exactly once by construction.
- Model and attack names are percent-encoded into their directory names
  (``/`` -> ``%2F``, ...), the encoding pyarrow's hive partitioning decodes; the
  fixed ``model=`` / ``attack=`` prefixes mean no name can be ``..`` or absolute,
  so no spec value can escape the output folder.

One storage path. ``output`` is a local folder or a URI that
:meth:`pyarrow.fs.FileSystem.from_uri` resolves (``s3://bucket/prefix``,
``gs://...``, ``file://...``; S3 options such as ``?endpoint_override=...`` ride in
the query string, credentials come from the environment as for any pyarrow
client). :func:`filesystem` turns either into ``(pyarrow filesystem, base path)``
(:class:`pyarrow.fs.LocalFileSystem` for a folder) and every function here makes
the same calls on it; what differs between disk and object store (temp + rename,
folders) is :mod:`sweep.results.atomic`'s business alone.
"""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import quote, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweep.results import atomic
from sweep.results.schema import DATASET_SCHEMA, FILE_SCHEMA, PARTITION_COLUMNS

if TYPE_CHECKING:  # imported where used: pyarrow.dataset pulls in pandas (~0.5 s of CPU)
    import pyarrow.dataset as ds

TMP_PREFIX = atomic.TMP_PREFIX
SUFFIX = ".parquet"

Output: TypeAlias = "Path | str"  # a local folder, or a URI such as s3://bucket/prefix


# errors that mean "no room left where the output lives": retrying a cell cannot help
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk is full.

    pyarrow reports ENOSPC as ``OSError(28, "Error writing bytes ...")``; an error that
    crossed a process boundary may only keep the text, so both are checked.
    """
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(exc) for text in DISK_FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def is_uri(output: Output) -> bool:
    """Whether ``output`` names a folder through a URI (``scheme://...``) rather than a path."""
    return "://" in os.fspath(output)


def filesystem(output: Output) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, base path)`` of ``output``: the local disk for a path (made
    absolute), else what the URI resolves to (one filesystem object per URI and process)."""
    text = os.fspath(output)
    if not is_uri(text):
        return atomic.LOCAL, os.path.abspath(text)
    return _from_uri(text)


@functools.lru_cache(maxsize=16)
def _from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    # S3 clients are costly to build: cached
    fs, base = pafs.FileSystem.from_uri(uri)
    return fs, base.rstrip("/")


def is_local(output: Output) -> bool:
    """Whether ``output`` is on the local disk (a path or a ``file://`` URI)."""
    return atomic.is_local(filesystem(output)[0])


def local_path(output: Output) -> Path:
    """The local folder of a path or ``file://`` URI output."""
    fs, base = filesystem(output)
    if not atomic.is_local(fs):
        raise ValueError(f"not a local folder: {os.fspath(output)}")
    return Path(base) if is_uri(output) else Path(output)


def location(output: Output, relpath: str = "") -> str:
    """``output/relpath`` as a user would type it: a path, or the URI with the key
    inserted before its query string (``s3://b/p/x?endpoint_override=...``)."""
    if not is_uri(output):
        return os.fspath(Path(output) / relpath) if relpath else os.fspath(output)
    parts = urlsplit(os.fspath(output))
    path = parts.path.rstrip("/") + (f"/{relpath}" if relpath else "")
    return urlunsplit(parts._replace(path=path))


def output_exists(output: Output) -> bool:
    """Whether the output folder exists (on an object store: whether any object is under it)."""
    fs, base = filesystem(output)
    return fs.get_file_info(base).type == pafs.FileType.Directory


def read_bytes(output: Output, relpath: str) -> bytes | None:
    """The file ``output/relpath``, or None when it does not exist."""
    fs, base = filesystem(output)
    try:
        with fs.open_input_stream(f"{base}/{relpath}") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError):
        return None


def read_text(output: Output, relpath: str) -> str | None:
    """``output/relpath`` decoded as UTF-8, or None when it does not exist."""
    data = read_bytes(output, relpath)
    return None if data is None else data.decode("utf-8")


def write_bytes(output: Output, relpath: str, data: atomic.Data) -> int:
    """Write ``output/relpath`` whole (:func:`sweep.results.atomic.write`); returns its size."""
    fs, base = filesystem(output)
    return atomic.write(fs, f"{base}/{relpath}", data)


def write_text(output: Output, relpath: str, text: str) -> None:
    """:func:`write_bytes` of ``text`` in UTF-8."""
    write_bytes(output, relpath, text.encode("utf-8"))


def list_files(output: Output, relfolder: str) -> list[str]:
    """Names of the files directly in ``output/relfolder``, temp files excluded, sorted."""
    fs, base = filesystem(output)
    selector = pafs.FileSelector(f"{base}/{relfolder}", allow_not_found=True)
    return sorted(i.base_name for i in fs.get_file_info(selector)
                  if i.type == pafs.FileType.File and not atomic.is_temp(i.base_name))


def ensure_output(output: Output) -> None:
    """Create the output folder (with its parents on disk); on an object store, which has
    no folders, check that the bucket exists: said before any work rather than when the
    first worker uploads (no permission raises here)."""
    fs, base = filesystem(output)
    atomic.make_dirs(fs, base)
    bucket = base.split("/", 1)[0]  # "" for an absolute local path
    if bucket and fs.get_file_info(bucket).type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{os.fspath(output)}: bucket {bucket!r} does not exist")


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


def write_shard(output: Output, relpath: str, table: pa.Table, *, later: atomic.SyncLater | None = None) -> int:
    """Write ``table`` (:data:`FILE_SCHEMA`) to ``output/relpath`` whole; returns its size.

    The file is encoded in memory (a cell's rows are in memory already) and written in
    one call, so a reader or a crash sees the old file or the new one, never half.
    ``later``: as :func:`sweep.results.atomic.write`'s (the worker makes a call's files
    durable together). Files under :data:`SMALL_SHARD_ROWS` rows are written without
    compression or dictionaries: their fixed cost was 0.9 of a one-row file's 1.25 ms
    of encoding (CPU), for a few bytes.
    """
    if table.schema != FILE_SCHEMA:
        table = table.cast(FILE_SCHEMA)
    sink = pa.BufferOutputStream()
    small = table.num_rows < SMALL_SHARD_ROWS
    pq.write_table(table, sink, compression="none" if small else "zstd", use_dictionary=not small)
    fs, base = filesystem(output)
    return atomic.write(fs, f"{base}/{relpath}", sink.getvalue(), later=later)


SMALL_SHARD_ROWS = 256  # fewer rows: the Parquet file is written uncompressed


def read_shard(path: Path) -> pa.Table:
    """One cell's rows (file columns only)."""
    return pq.read_table(path, schema=FILE_SCHEMA)


def read_shard_columns(
    output: Output, relpath: str, columns: list[str], *, schema: pa.Schema = FILE_SCHEMA
) -> pa.Table:
    """``columns`` of the result file ``output/relpath``, after checking that its schema
    is exactly ``schema``; raises ``ValueError`` if not (and OSError / ArrowException
    for a file that is not Parquet)."""
    fs, base = filesystem(output)
    with pq.ParquetFile(f"{base}/{relpath}", filesystem=fs) as shard:
        if not shard.schema_arrow.equals(schema, check_metadata=False):
            raise ValueError(f"{relpath}: not the result schema")
        return shard.read(columns=columns)


def open_results(output: Output, relpaths: Iterable[str] | None = None, *, under: str = "") -> ds.Dataset:
    """The results as a pyarrow dataset with :data:`DATASET_SCHEMA`.

    With ``relpaths`` (the verified files from :mod:`sweep.results.manifest`) only those are
    read, so a stray or damaged file in the folder can never be taken as a result.
    ``under``: a folder of the output with the same layout (``_transfer``); ``relpaths``
    stay relative to the output. Files of an older schema version lack the newer
    columns, which read as null.
    """
    import pyarrow.dataset as ds  # see the import block: only reading results needs it

    partitioning = ds.partitioning(
        pa.schema([pa.field(c, pa.string()) for c in PARTITION_COLUMNS]), flavor="hive"
    )
    fs, root = filesystem(output)
    base = f"{root}/{under}" if under else root
    if under and relpaths is not None:
        relpaths = [r[len(under) + 1 :] if r.startswith(f"{under}/") else r for r in relpaths]
    if relpaths is None:
        return ds.dataset(base, schema=DATASET_SCHEMA, format="parquet", partitioning=partitioning,
                          filesystem=fs)
    files = [f"{base}/{r}" for r in relpaths]
    return ds.dataset(
        files,
        schema=DATASET_SCHEMA,
        format="parquet",
        partitioning=partitioning,
        partition_base_dir=base,
        filesystem=fs,
    )


def result_files(output: Output) -> list[str]:
    """Every ``*.parquet`` under ``model=*/attack=*`` (relative paths), temp files excluded."""
    return list(result_sizes(output))


def result_sizes(output: Output, under: str = "") -> dict[str, int]:
    """``{relative path: size}`` of the result files: one listing per model folder.

    ``under``: a folder of the output holding the same ``model=*/attack=*`` layout
    (``_adversarials``, ``_transfer``); the paths stay relative to the output."""
    fs, base = filesystem(output)
    root = f"{base}/{under}" if under else base
    found = {}
    for mdir in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if mdir.type != pafs.FileType.Directory or not mdir.base_name.startswith("model="):
            continue
        for info in fs.get_file_info(pafs.FileSelector(mdir.path, recursive=True)):
            parts = info.path[len(root) + 1 :].split("/")
            if (info.type == pafs.FileType.File and len(parts) == 3 and parts[1].startswith("attack=")
                    and parts[2].endswith(SUFFIX) and not parts[2].startswith((".", "_"))):
                found["/".join([under, *parts] if under else parts)] = info.size
    return found


def move(output: Output, src: str, dest: str) -> None:
    """Move ``output/src`` to ``output/dest`` (both relative, :func:`sweep.results.atomic.move`)."""
    fs, base = filesystem(output)
    atomic.move(fs, f"{base}/{src}", f"{base}/{dest}")


def remove_temp_files(output: Output) -> int:
    """Delete leftover temp files of writers that died mid-write; returns how many.

    Only the local disk has any (an object store never holds a half-written object).
    """
    fs, base = filesystem(output)
    removed = 0
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        if info.type == pafs.FileType.File and info.base_name.startswith(TMP_PREFIX):
            fs.delete_file(info.path)
            removed += 1
    return removed
