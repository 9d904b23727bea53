"""The torch-free data path: the layout ``sweep plan`` computes from NumPy arrays is the
layout a run computes from tensors, shard digest for shard digest.

Cell ids and the sweep id hash the shard digests, and a worker checks the tensors it
loaded against them, so the two paths must agree to the byte, for every source read
into arrays (digits, CIFAR's python batches, the MNIST family's IDX files).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sweep.data.base import ImageSet
from sweep.data.registry import ARRAY_SOURCES, load_dataset, load_dataset_arrays
from sweep.data.samples import ArraySet
from sweep.spec.config import DatasetSpec
from sweep.spec.grid import DataLayout
from sweep.spec.inputs import data_layout, load_data, load_samples
from tests.data.conftest import write_cifar10, write_mnist

ROOT = Path(__file__).resolve().parents[2]


def _dataset(entry: dict, samples: int | None = None, shard_size: int = 3) -> DatasetSpec:
    return DatasetSpec(name=entry.get("name", "custom"), samples=samples, shard_size=shard_size,
                       entry=entry)


def _torch_digests(images: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor,
                   shard_size: int) -> tuple[str, ...]:
    """The shard digests as ``ImageSet.fingerprint`` computed them before the array path
    existed: BLAKE2b-128 over each tensor's bytes, written out again here on purpose."""
    digests = []
    for start in range(0, len(labels), shard_size):
        h = hashlib.blake2b(digest_size=16)
        for t in (images, labels, ids):
            h.update(t[start:start + shard_size].detach().cpu().contiguous().numpy().tobytes())
        digests.append(h.hexdigest())
    return tuple(digests)


def _both_layouts(dataset: DatasetSpec) -> tuple[DataLayout, DataLayout]:
    arrays = load_samples(dataset)
    tensors = load_data(dataset)
    assert isinstance(arrays, ArraySet) and isinstance(tensors, ImageSet)
    return data_layout(arrays, dataset.shard_size), data_layout(tensors, dataset.shard_size)


DIGITS_CASES = [
    ({"name": "digits"}, None, 100),
    ({"name": "digits", "split": "all"}, 1786, 1),
    ({"name": "digits", "split": "train", "shuffle_seed": 7}, 50, 7),
]


@pytest.mark.parametrize(("entry", "samples", "shard_size"), DIGITS_CASES)
def test_digits_layout_from_arrays_is_the_layout_from_tensors(entry, samples, shard_size):
    from sklearn.datasets import load_digits

    from_arrays, from_tensors = _both_layouts(_dataset(entry, samples, shard_size))
    assert from_arrays == from_tensors
    # and both are what the tensors of scikit-learn's own reader hash to
    bunch = load_digits()
    rows = {"test": np.arange(899, 1797), "all": np.arange(1797), "train": np.arange(899)}[
        entry.get("split", "test")]
    if "shuffle_seed" in entry:
        rows = rows[np.random.default_rng(entry["shuffle_seed"]).permutation(len(rows))]
    rows = rows[:samples]
    images = torch.from_numpy(bunch.images[rows, None] / 16.0).float()
    labels = torch.from_numpy(bunch.target[rows]).long()
    expected = _torch_digests(images, labels, torch.from_numpy(rows).long(), shard_size)
    assert from_arrays.shard_digests == expected
    assert from_arrays.num_samples == len(rows) and from_arrays.num_classes == 10


def test_digits_digests_are_the_ones_pinned_before_the_array_path():
    """Digests computed with the code before this change (tensor path only): cell ids of
    sweeps already run stay valid."""
    layout, _ = _both_layouts(_dataset({"name": "digits"}, None, 100))
    assert layout.shard_digests[0] == "2e9bed86156134d63de769669b4f7595"
    assert hashlib.sha256("".join(layout.shard_digests).encode()).hexdigest()[:16] == "0c2c1bfa3ea5b888"
    layout, _ = _both_layouts(_dataset({"name": "digits", "split": "all"}, 1786, 1))
    assert hashlib.sha256("".join(layout.shard_digests).encode()).hexdigest()[:16] == "91d6e5465f480c98"


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_layout_from_arrays_is_the_layout_from_tensors(tmp_path, split):
    written = write_cifar10(tmp_path, per_batch=4)
    entry = {"name": "cifar10", "root": str(tmp_path), "split": split}
    from_arrays, from_tensors = _both_layouts(_dataset(entry))
    assert from_arrays == from_tensors
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    data = np.concatenate([written[n][0] for n in names])
    labels = np.concatenate([written[n][1] for n in names])
    images = torch.from_numpy(data).reshape(-1, 3, 32, 32).float() / 255.0
    ids = torch.arange(len(labels))
    assert from_arrays.shard_digests == _torch_digests(images, torch.from_numpy(labels).long(), ids, 3)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_layout_from_arrays_is_the_layout_from_tensors(tmp_path, compress):
    written = write_mnist(tmp_path, n_test=8, compress=compress)
    entry = {"name": "mnist", "root": str(tmp_path), "shuffle_seed": 1}
    from_arrays, from_tensors = _both_layouts(_dataset(entry, samples=6))
    assert from_arrays == from_tensors
    images, labels = written["test"]
    rows = np.random.default_rng(1).permutation(8)[:6]
    expected = _torch_digests(torch.from_numpy(images[rows, None]).float() / 255.0,
                              torch.from_numpy(labels[rows]).long(), torch.from_numpy(rows).long(), 3)
    assert from_arrays.shard_digests == expected


def test_the_tensors_are_the_arrays():
    arrays = load_dataset_arrays({"name": "digits"}, "dataset", limit=20)
    tensors = load_dataset({"name": "digits"}, "dataset", limit=20)
    for a, t in zip(arrays.host_arrays(), tensors.host_arrays(), strict=True):
        assert a.dtype == t.dtype and np.array_equal(a, t)
    assert (arrays.num_classes, arrays.name) == (tensors.num_classes, tensors.name)


def test_torch_sources_have_no_array_path(tmp_path):
    assert set(ARRAY_SOURCES) == {"digits", "cifar10", "cifar100", "mnist", "fashion-mnist", "kmnist"}
    assert load_dataset_arrays({"name": "image-folder", "root": str(tmp_path)}, "dataset") is None
    assert load_dataset_arrays({"factory": "sweep.data.digits:load_digits_split"}, "dataset") is None
    # ... and load_samples falls back to the tensors of load_data for them
    data = load_samples(_dataset({"factory": "sweep.data.digits:load_digits_split"}, samples=4))
    assert isinstance(data, ImageSet) and len(data) == 4


def test_the_array_path_imports_no_torch(tmp_path):
    """Reading, checking and fingerprinting an array dataset, expanding a grid and
    reading a manifest: none of it imports torch (or pandas)."""
    write_cifar10(tmp_path, per_batch=2)
    code = f"""
import sys
from sweep.results.manifest import Manifest
from sweep.spec.config import DatasetSpec
from sweep.spec.grid import expand, sweep_id
from sweep.spec.inputs import data_layout, load_samples
for entry in ({{"name": "digits", "split": "all"}}, {{"name": "cifar10", "root": {str(tmp_path)!r}}}):
    data = load_samples(DatasetSpec(name=entry["name"], samples=None, shard_size=2, entry=entry))
    print(type(data).__name__, data_layout(data, 2).num_shards)
print(sorted(m for m in ("torch", "pandas", "sklearn") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ArraySet", "899", "ArraySet", "1", "[]"], out.stdout
