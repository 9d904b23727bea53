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

Object stores. ``output`` may also be a URI that
:meth:`pyarrow.fs.FileSystem.from_uri` resolves (``s3://bucket/prefix``,
``gs://...``, ``hdfs://...``; S3 options such as ``?endpoint_override=...`` ride in
the query string, credentials come from the environment as for any pyarrow
client). An object store has no rename, but it has what the rename buys: an
object becomes visible whole when its upload completes, and never half-written.
So each shard is encoded in memory and written in one call under its final key
(:func:`write_shard`); a writer killed before the upload completes leaves no
object, and a retried cell overwrites the same key (exactly once, as on disk).
No temp objects exist, so there is nothing to clean up. A plain path (or a
``file://`` URI) keeps the local code path above.
"""

from __future__ import annotations

import errno
import functools
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TypeAlias
from urllib.parse import quote, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweep.schema import DATASET_SCHEMA, FILE_SCHEMA, PARTITION_COLUMNS

TMP_PREFIX = ".tmp-"
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


def remote(output: Output) -> tuple[pafs.FileSystem, str] | None:
    """``(filesystem, base path)`` for a URI output that is not on the local disk, else None."""
    if not is_uri(output):
        return None
    fs, base = _from_uri(os.fspath(output))
    return None if isinstance(fs, pafs.LocalFileSystem) else (fs, base)


def local_path(output: Output) -> Path:
    """The local folder of a path or ``file://`` URI output."""
    if is_uri(output):
        fs, base = _from_uri(os.fspath(output))
        if not isinstance(fs, pafs.LocalFileSystem):
            raise ValueError(f"not a local folder: {os.fspath(output)}")
        return Path(base)
    return Path(output)


@functools.lru_cache(maxsize=16)
def _from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    # one filesystem object per URI and process: S3 clients are costly to build
    fs, base = pafs.FileSystem.from_uri(uri)
    return fs, base.rstrip("/")


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
    loc = remote(output)
    if loc is None:
        return local_path(output).is_dir()
    fs, base = loc
    return fs.get_file_info(base).type == pafs.FileType.Directory


def read_bytes(output: Output, relpath: str) -> bytes | None:
    """The file ``output/relpath``, or None when it does not exist."""
    loc = remote(output)
    if loc is None:
        path = local_path(output) / relpath
        return path.read_bytes() if path.is_file() else None
    fs, base = loc
    try:
        with fs.open_input_stream(f"{base}/{relpath}") as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_text(output: Output, relpath: str) -> str | None:
    """``output/relpath`` decoded as UTF-8, or None when it does not exist."""
    data = read_bytes(output, relpath)
    return None if data is None else data.decode("utf-8")


def write_bytes(output: Output, relpath: str, data: bytes) -> None:
    """Write ``output/relpath`` whole: temp + rename on disk, one upload on an object store.

    Either way a reader sees the old content or the new, never part of it.
    """
    loc = remote(output)
    if loc is not None:
        fs, base = loc
        with fs.open_output_stream(f"{base}/{relpath}") as f:
            f.write(data)
        return
    path = local_path(output) / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(output: Output, relpath: str, text: str) -> None:
    """:func:`write_bytes` of ``text`` in UTF-8."""
    write_bytes(output, relpath, text.encode("utf-8"))


def ensure_output(output: Output) -> None:
    """Create the output folder (a local one with its parents; on an object store, check access)."""
    loc = remote(output)
    if loc is None:
        local_path(output).mkdir(parents=True, exist_ok=True)
    else:
        # object stores have no folders to create, but the bucket must exist: say so
        # before any work rather than when the first worker uploads (no permission raises here)
        fs, base = loc
        bucket = base.split("/", 1)[0]
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


def write_shard(output: Output, relpath: str, table: pa.Table) -> int:
    """Write ``table`` (:data:`FILE_SCHEMA`) to ``output/relpath`` atomically; returns its size."""
    if table.schema != FILE_SCHEMA:
        table = table.cast(FILE_SCHEMA)
    loc = remote(output)
    if loc is not None:
        return _put_shard(*loc, relpath, table)
    final = local_path(output) / relpath
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{final.name}")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)  # atomic within one folder: readers see old or new, never half
    finally:
        if tmp.exists():
            tmp.unlink()
    return final.stat().st_size


def _put_shard(fs: pafs.FileSystem, base: str, relpath: str, table: pa.Table) -> int:
    """One object under the final key, uploaded in one call (see the module docstring)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue()
    # the object appears when the stream closes (single PUT, or a multipart upload
    # completed at close); an exception or a kill before that leaves nothing behind
    with fs.open_output_stream(f"{base}/{relpath}") as f:
        f.write(data)
    return data.size


def read_shard(path: Path) -> pa.Table:
    """One cell's rows (file columns only)."""
    return pq.read_table(path, schema=FILE_SCHEMA)


def read_shard_columns(
    output: Output, relpath: str, columns: list[str], *, schema: pa.Schema = FILE_SCHEMA
) -> pa.Table:
    """``columns`` of the result file ``output/relpath``, after checking that its schema
    is exactly ``schema``; raises ``ValueError`` if not (and OSError / ArrowException
    for a file that is not Parquet)."""
    loc = remote(output)
    if loc is None:
        source, fs = str(local_path(output) / relpath), None
    else:
        fs, base = loc
        source = f"{base}/{relpath}"
    with pq.ParquetFile(source, filesystem=fs) as shard:
        if not shard.schema_arrow.equals(schema, check_metadata=False):
            raise ValueError(f"{relpath}: not the result schema")
        return shard.read(columns=columns)


def open_results(output: Output, relpaths: Iterable[str] | None = None) -> ds.Dataset:
    """The results as a pyarrow dataset with :data:`DATASET_SCHEMA`.

    With ``relpaths`` (the verified files from :mod:`sweep.manifest`) only those are
    read, so a stray or damaged file in the folder can never be taken as a result.
    """
    partitioning = ds.partitioning(
        pa.schema([pa.field(c, pa.string()) for c in PARTITION_COLUMNS]), flavor="hive"
    )
    loc = remote(output)
    fs, base = loc if loc is not None else (None, str(local_path(output)))
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
    if remote(output) is not None:
        return list(result_sizes(output))
    output = local_path(output)
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


def result_sizes(output: Output) -> dict[str, int]:
    """``{relative path: size}`` of the result files (one listing, also on an object store)."""
    loc = remote(output)
    if loc is None:
        root = local_path(output)
        return {rel: (root / rel).stat().st_size for rel in result_files(root)}
    fs, base = loc
    found = {}
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(base) + 1 :]
        parts = rel.split("/")
        if (len(parts) == 3 and parts[0].startswith("model=") and parts[1].startswith("attack=")
                and parts[2].endswith(SUFFIX) and not parts[2].startswith((".", "_"))):
            found[rel] = info.size
    return found


def move(output: Output, src: str, dest: str) -> None:
    """Move ``output/src`` to ``output/dest`` (both relative; on an object store: copy, then delete)."""
    loc = remote(output)
    if loc is None:
        root = local_path(output)
        (root / dest).parent.mkdir(parents=True, exist_ok=True)
        os.replace(root / src, root / dest)
    else:
        fs, base = loc
        fs.move(f"{base}/{src}", f"{base}/{dest}")


def remove_temp_files(output: Output) -> int:
    """Delete leftover ``.tmp-*`` files of attempts that died mid-write; returns how many.

    On an object store there are none: shards are written in one call, never via a temp.
    """
    removed = 0
    if remote(output) is not None:
        return removed
    output = local_path(output)
    if not output.is_dir():
        return removed
    for mdir in output.glob("model=*"):
        for tmp in mdir.glob(f"attack=*/{TMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed
