"""Whole-file writes: a reader (or a crash) sees the old content or the new, never part.

Every file the sweep writes whole goes through :func:`write` (result shards, manifest
segments and plan, curves, reports, cached model weights), so there is one way to
do it and one temp-file name:

- on the local disk (:class:`pyarrow.fs.LocalFileSystem`): the bytes go to
  ``.tmp-<uuid>-<name>`` in the final folder, are fsynced, and the temp file is
  renamed over the final name (:func:`os.replace`, atomic within one folder); the
  folder is fsynced so the rename survives a power cut. The uuid keeps two attempts
  at one file (a retried cell racing a lost worker) off each other's temp file;
- on an object store (S3, GCS, ...): there is no rename, and none is needed: an
  object becomes visible whole when its upload completes (a single PUT, or a
  multipart upload completed at close), and a writer killed before that leaves
  nothing. The bytes are uploaded once under the final key.

This module is the only place where the two kinds of storage behave differently;
:mod:`sweep.results.store` and :mod:`sweep.results.manifest` make the same calls on both. Readers
skip names starting with ``.`` (:func:`is_temp`), and ``sweep run`` deletes temp
files a killed writer left behind (:func:`sweep.results.store.remove_temp_files`).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

TMP_PREFIX = ".tmp-"
LOCAL = pafs.LocalFileSystem()

Data = bytes | bytearray | memoryview | pa.Buffer


def is_local(fs: pafs.FileSystem) -> bool:
    """Whether ``fs`` is the local disk (folders and renames exist), not an object store."""
    return fs.type_name == "local"


def temp_name(name: str) -> str:
    """``.tmp-<uuid>-<name>``: the one temp-file name, unique per attempt."""
    return f"{TMP_PREFIX}{uuid.uuid4().hex}-{name}"


def is_temp(name: str) -> bool:
    """Whether a file name is a temp file (or any other hidden name readers skip)."""
    return name.startswith(".")


def write(fs: pafs.FileSystem, path: str, data: Data, *, folders: set[str] | None = None) -> int:
    """Write ``data`` as the file ``path`` of ``fs`` whole (see the module docstring);
    returns its size. A failure part-way leaves the old file (or none) in place.

    ``folders``: the caller writes several files and syncs their folders once, after the
    last (:func:`sync_folders`); the folder of this file is added to the set instead of
    being fsynced here (the file itself is fsynced either way)."""
    view = memoryview(data)
    if not is_local(fs):
        with fs.open_output_stream(path) as f:  # the object appears when the stream closes
            f.write(view)
        return view.nbytes
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, temp_name(name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = path  # say where (a full disk's message names it)
        raise
    if folders is None:
        _fsync_dir(folder)
    else:
        folders.add(folder)
    return os.path.getsize(path)


def sync_folders(folders: set[str]) -> None:
    """fsync each folder of ``folders`` (what :func:`write` deferred), so the renames of
    the files written into them survive a power cut."""
    for folder in sorted(folders):
        _fsync_dir(folder)


def write_file(path: str | os.PathLike[str], data: Data) -> Path:
    """:func:`write` to a path on the local disk; returns the path."""
    write(LOCAL, os.path.abspath(path), data)
    return Path(path)


def move(fs: pafs.FileSystem, src: str, dest: str) -> None:
    """Move ``src`` to ``dest`` (a rename on disk, creating ``dest``'s folder; on an object
    store a copy then a delete: the copy is whole before the source goes)."""
    if is_local(fs):
        os.makedirs(os.path.dirname(dest), exist_ok=True)
    fs.move(src, dest)


def make_dirs(fs: pafs.FileSystem, path: str) -> None:
    """Create the folder ``path`` with its parents on disk; object stores have no folders."""
    if is_local(fs):
        os.makedirs(path, exist_ok=True)


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

