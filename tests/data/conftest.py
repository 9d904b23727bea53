"""Writers for small datasets in the real on-disk formats, and a user-module fixture."""

from __future__ import annotations

import gzip
import pickle
import struct
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_cifar_batch(
    path: Path, data: np.ndarray, labels: np.ndarray, label_key: str = "labels"
) -> None:
    """One python batch as in cifar-10-python.tar.gz: a pickled dict, 'data' uint8 [N, 3072]."""
    batch = {
        "batch_label": f"batch {path.name}",
        label_key: [int(v) for v in labels],  # the official files hold a list of ints
        "data": data,
        "filenames": [f"img_{i}.png" for i in range(len(labels))],
    }
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_cifar10(
    root: Path, per_batch: int = 4, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ROOT/cifar-10-batches-py with 5 train batches, a test batch and batches.meta.

    Returns {file name: (data [N, 3072] uint8, labels [N])}.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch)
        write_cifar_batch(folder / name, data, labels)
        written[name] = (data, labels)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump(
            {"label_names": CIFAR10_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072},
            f,
            protocol=2,
        )
    return written


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """An IDX file (LeCun's MNIST format): 0, 0, type 0x08, ndim, big-endian dims, bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_mnist(
    root: Path,
    folder: str = "MNIST",
    n_train: int = 7,
    n_test: int = 5,
    compress: bool = False,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ROOT/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte, as torchvision leaves them."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)
        written[split] = (images, labels)
    return written


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Write Python source as a uniquely named module on ``sys.path``; returns its name."""
    folder = tmp_path / "user_code"
    folder.mkdir()

    def write(source: str) -> str:
        name = f"user_mod_{uuid.uuid4().hex[:10]}"
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(folder))
        return name

    return write
