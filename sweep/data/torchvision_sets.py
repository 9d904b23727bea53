"""CIFAR-10/100 and the MNIST family, read from a local root in torchvision's on-disk layouts.

Nothing is ever downloaded. The files are the ones torchvision downloads and
reads, in the same places, so a root prepared with
``torchvision.datasets.CIFAR10(root, download=True)`` (or by unpacking the
official archives) works as is; the readers here are our own because:

- torchvision's CIFAR reader checks the MD5 of all six batches, so a trimmed or
  locally built copy (e.g. the small files the tests write) is refused, and it
  unpickles with the full ``pickle`` module. CIFAR's python batches are
  pickles, and a pickle can run code; here they go through an unpickler that
  only admits NumPy arrays, lists, strings and numbers.
- torchvision's MNIST reader needs all four files, uncompressed, and its format
  checks are ``assert`` statements. Here only the split's two files are needed,
  ``.gz`` or not, and a bad file says what was expected.

Formats and ``sample_id``:

- CIFAR-10: ``ROOT/cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``
  (train, 5 x 10,000), ``test_batch`` (10,000) and ``batches.meta`` (class
  names), each a pickled dict whose ``data`` is uint8 ``[N, 3072]`` (1024 red,
  then green, then blue values of a 32x32 image, row-major) and whose ``labels``
  is a list of N ints. ``sample_id`` = the image's index in torchvision's
  ``CIFAR10(train=...)``: the row in ``test_batch``, or the running row over
  ``data_batch_1`` .. ``_5`` for ``train``.
- CIFAR-100: ``ROOT/cifar-100-python/`` with ``train``, ``test`` and ``meta``; the
  100 ``fine_labels`` are used. ``sample_id`` as above.
- MNIST / Fashion-MNIST / KMNIST: ``ROOT/MNIST/raw/`` (``FashionMNIST``,
  ``KMNIST``) with ``t10k-images-idx3-ubyte`` + ``t10k-labels-idx1-ubyte`` (test) or
  ``train-images-idx3-ubyte`` + ``train-labels-idx1-ubyte`` (train), raw or ``.gz``:
  IDX files (big-endian header: two zero bytes, type 0x08 = uint8, the number
  of dimensions, then each dimension as a 32-bit integer; the bytes follow).
  ``sample_id`` = the row in the IDX file (torchvision's index).

``ROOT`` may also be the data folder itself (``.../cifar-10-batches-py`` or
``.../MNIST/raw``). Images come out float32 in [0, 1] (``byte / 255``), shaped
``[N, 3, 32, 32]`` (CIFAR) or ``[N, 1, 28, 28]`` (MNIST family), as NumPy arrays
(:class:`~sweep.data.samples.ArraySet`: reading them needs no torch).
"""

from __future__ import annotations

import gzip
import importlib
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweep.data.samples import ArraySet
from sweep.data.selection import select_positions
from sweep.errors import SpecError

SPLITS = ("train", "test")


def existing_root(root: Any, field: str, dataset: str) -> Path:
    """``root`` as a Path to an existing directory, or a :class:`SpecError` on ``field``."""
    if root is None:
        raise SpecError(field, root, f"required for {dataset}: the local folder holding its files")
    if not isinstance(root, str) or not root:
        raise SpecError(field, root, "expected a folder path")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise SpecError(
            field, root, f"no such directory ({path.resolve()}); datasets are never downloaded"
        )
    return path


# --------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its python batches and what they contain."""

    name: str
    folder: str
    archive: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int


CIFAR10 = CifarLayout(
    name="cifar10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
)
CIFAR100 = CifarLayout(
    name="cifar100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
)

CIFAR_SIDE = 32
CIFAR_ROW = 3 * CIFAR_SIDE * CIFAR_SIDE  # 3072 bytes per image

# The only globals a CIFAR batch needs: NumPy's array/scalar reconstructors (under
# NumPy 1's ``numpy.core`` or NumPy 2's ``numpy._core``) and ``_codecs.encode``, which
# protocol-2 pickles written by Python 3 use for bytes.
_SAFE_GLOBALS = {
    ("multiarray", "_reconstruct"),
    ("multiarray", "scalar"),
    ("numeric", "_frombuffer"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and plain containers, and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}:
            return super().find_class(module, name)
        for prefix in ("numpy.core.", "numpy._core."):
            if module.startswith(prefix) and (module[len(prefix) :], name) in _SAFE_GLOBALS:
                return getattr(_numpy_core(module[len(prefix) :]), name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR batch holds only arrays, lists and strings"
        )


def _numpy_core(submodule: str) -> Any:
    try:  # NumPy >= 2
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # NumPy 1.x
        return importlib.import_module(f"numpy.core.{submodule}")


def _unpickle(path: Path, what: str, field: str) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            # Python 2 pickles (the official files) need latin1 to turn their byte strings
            # into str keys and array bytes, as torchvision does.
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as exc:
        raise SpecError(
            field, str(path), f"not a readable {what} ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise SpecError(
            field, str(path), f"not a {what}: expected a pickled dict, got {type(obj).__name__}"
        )
    return obj


def _cifar_folder(layout: CifarLayout, root: Path, files: tuple[str, ...], field: str) -> Path:
    for folder in (root / layout.folder, root):
        if (folder / files[0]).is_file():
            return folder
    raise SpecError(
        field,
        str(root),
        f"no {layout.name} python batches here: expected {root / layout.folder / files[0]} "
        f"(unpack {layout.archive}, or let torchvision download it once, elsewhere)",
    )


def _read_batch(layout: CifarLayout, path: Path, field: str) -> tuple[np.ndarray, np.ndarray]:
    what = f"{layout.name} python batch (a pickled dict with 'data' uint8 [N, {CIFAR_ROW}] and '{layout.label_key}')"
    batch = _unpickle(path, what, field)
    data, labels = batch.get("data"), batch.get(layout.label_key)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != CIFAR_ROW
    ):
        shape = getattr(data, "shape", None)
        raise SpecError(
            field, str(path), f"not a {what}: its 'data' is {type(data).__name__} {shape}"
        )
    if labels is None or len(labels) != data.shape[0]:
        raise SpecError(
            field, str(path), f"not a {what}: {data.shape[0]} images but labels {labels!r:.60}"
        )
    label_array = np.asarray(labels, dtype=np.int64)
    bad = (label_array < 0) | (label_array >= layout.num_classes)
    if bad.any():
        raise SpecError(
            field, str(path), f"label {label_array[bad][0]} outside 0..{layout.num_classes - 1}"
        )
    return data, label_array


def load_cifar(
    layout: CifarLayout,
    root: Path,
    split: str,
    limit: int | None,
    shuffle_seed: int | None,
    field: str,
) -> ArraySet:
    """The ``split`` of a CIFAR variant under ``root``; ``field`` is the spec's root field."""
    files = layout.train_files if split == "train" else layout.test_files
    folder = _cifar_folder(layout, root, files, field)
    data_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    loaded = 0
    for name in files:
        if shuffle_seed is None and limit is not None and loaded >= limit:
            break  # natural order: the batches after this one are not needed
        path = folder / name
        if not path.is_file():
            raise SpecError(
                field, str(root), f"{layout.name} {split} split is incomplete: {path} is missing"
            )
        data, labels = _read_batch(layout, path, field)
        data_parts.append(data)
        label_parts.append(labels)
        loaded += len(labels)
    num_classes = _cifar_num_classes(layout, folder, field)
    data = np.concatenate(data_parts)
    labels = np.concatenate(label_parts)
    positions = select_positions(len(labels), limit, shuffle_seed)
    images = data[positions].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE)
    return ArraySet(
        images=images.astype(np.float32) / 255.0,
        labels=labels[positions],
        sample_ids=positions,
        num_classes=num_classes,
        name=f"{layout.name}[{split}]",
    )


def _cifar_num_classes(layout: CifarLayout, folder: Path, field: str) -> int:
    """The class count from the meta file's class names (the standard count if it is absent)."""
    meta_path = folder / layout.meta_file
    if not meta_path.is_file():
        return layout.num_classes
    meta = _unpickle(
        meta_path, f"{layout.name} meta file (a pickled dict with '{layout.names_key}')", field
    )
    names = meta.get(layout.names_key)
    if not isinstance(names, list) or not names:
        raise SpecError(
            field, str(meta_path), f"its '{layout.names_key}' is not a list of class names"
        )
    if len(names) != layout.num_classes:
        raise SpecError(
            field, str(meta_path), f"{len(names)} class names, expected {layout.num_classes}"
        )
    return len(names)


# --------------------------------------------------------------------------- MNIST family


@dataclass(frozen=True)
class IdxLayout:
    """One MNIST-like dataset: torchvision's folder name under the root."""

    name: str
    folder: str
    num_classes: int = 10


MNIST = IdxLayout("mnist", "MNIST")
FASHION_MNIST = IdxLayout("fashion-mnist", "FashionMNIST")
KMNIST = IdxLayout("kmnist", "KMNIST")

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_UBYTE = 0x08  # the IDX type code for unsigned bytes, the only one MNIST files use


def _idx_file(layout: IdxLayout, root: Path, base: str, field: str) -> Path:
    for folder in (root / layout.folder / "raw", root / layout.folder, root):
        for name in (base, base + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise SpecError(
        field,
        str(root),
        f"no {layout.name} file {base}: expected {root / layout.folder / 'raw' / base} (or .gz), "
        "torchvision's layout",
    )


def read_idx(path: Path, ndim: int, field: str) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions (gzip-compressed or not)."""
    expected = f"an IDX file of unsigned bytes with {ndim} dimension(s)"
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise SpecError(field, str(path), f"cannot read it as {expected} ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise SpecError(field, str(path), f"not {expected}: bad magic number")
    if raw[2] != IDX_UBYTE or raw[3] != ndim:
        raise SpecError(
            field, str(path), f"not {expected}: type 0x{raw[2]:02x}, {raw[3]} dimension(s)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise SpecError(field, str(path), f"not {expected}: the header is truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise SpecError(
            field,
            str(path),
            f"corrupt: the header promises {dims} = {size} bytes, the file holds {len(raw) - header}",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_dataset(
    layout: IdxLayout,
    root: Path,
    split: str,
    limit: int | None,
    shuffle_seed: int | None,
    field: str,
) -> ArraySet:
    """The ``split`` of an MNIST-family dataset under ``root``."""
    image_name, label_name = IDX_FILES[split]
    images = read_idx(_idx_file(layout, root, image_name, field), 3, field)
    labels = read_idx(_idx_file(layout, root, label_name, field), 1, field).astype(np.int64)
    if len(images) != len(labels):
        raise SpecError(
            field, str(root), f"{len(images)} images but {len(labels)} labels in the {split} files"
        )
    if len(labels) and labels.max() >= layout.num_classes:
        raise SpecError(
            field, str(root), f"label {labels.max()} outside 0..{layout.num_classes - 1}"
        )
    positions = select_positions(len(labels), limit, shuffle_seed)
    return ArraySet(
        images=images[positions][:, None].astype(np.float32) / 255.0,
        labels=labels[positions],
        sample_ids=positions,
        num_classes=layout.num_classes,
        name=f"{layout.name}[{split}]",
    )
