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
import ctypes
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


def write(fs: pafs.FileSystem, path: str, data: Data, *, later: SyncLater | None = None) -> int:
    """Write ``data`` as the file ``path`` of ``fs`` whole (see the module docstring);
    returns its size. A failure part-way leaves the old file (or none) in place.

    ``later``: on the local disk, the file is only written to its temp name here; it is
    made durable and renamed into place with the others of ``later`` by
    :meth:`SyncLater.sync` (a worker writing many small files in one call)."""
    view = memoryview(data)
    if not is_local(fs):
        with fs.open_output_stream(path) as f:  # the object appears when the stream closes
            f.write(view)
        return view.nbytes
    size = view.nbytes
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, temp_name(name))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            while view:
                view = view[os.write(fd, view) :]
            if later is None:
                os.fsync(fd)
        finally:
            os.close(fd)
        if later is not None:
            later.pending.append((tmp, path))
            return size
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = path  # say where (a full disk's message names it)
        raise
    _fsync_dir(folder)
    return size


class SyncLater:
    """Files :func:`write` left under temp names, made durable together by :meth:`sync`:
    their data synced, then renamed into place, then the renames synced: the same
    guarantee as one :func:`write` each (a crash leaves the old file or the new one),
    for two ``syncfs`` calls per file system instead of two ``fsync`` calls per file
    (a one-row result file spent most of its write in them)."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, str]] = []  # (temp path, final path)

    def sync(self) -> None:
        """Make every pending file durable under its final name; on failure none is
        renamed (their temp files are removed) and the error is raised."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        folders = sorted({os.path.dirname(p) for _, p in pending})
        try:
            if not _syncfs(folders):
                for tmp, _ in pending:
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            for tmp, path in pending:
                os.replace(tmp, path)
        except BaseException:
            for tmp, _ in pending:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise
        if not _syncfs(folders):
            for folder in folders:
                _fsync_dir(folder)


def _syncfs(folders: list[str]) -> bool:
    """``syncfs(2)`` once per file system holding ``folders`` (Linux); False where the
    call does not exist (the caller then syncs file by file)."""
    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return False
    done: set[int] = set()
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            dev = os.fstat(fd).st_dev
            if dev not in done and call(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), folder)
            done.add(dev)
        finally:
            os.close(fd)
    return True


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

