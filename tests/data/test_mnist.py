"""MNIST-family IDX files in torchvision's layout, raw or gzip, read back exactly."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
import torchvision

from sweep.data.registry import load_dataset
from sweep.errors import SpecError
from tests.data.conftest import write_idx, write_mnist


@pytest.mark.parametrize("split", ["train", "test"])
def test_matches_torchvisions_mnist_reader(tmp_path, split):
    written = write_mnist(tmp_path)
    ours = load_dataset({"name": "mnist", "root": str(tmp_path), "split": split}, "dataset")
    reference = torchvision.datasets.MNIST(str(tmp_path), train=split == "train", download=False)
    assert ours.images.shape == (len(reference), 1, 28, 28)
    assert torch.equal(ours.images, reference.data[:, None].float() / 255.0)
    assert torch.equal(ours.labels, reference.targets)
    assert ours.sample_ids.tolist() == list(range(len(reference)))
    assert torch.equal(ours.labels, torch.from_numpy(written[split][1].astype(np.int64)))
    assert ours.num_classes == 10


def test_gzip_files_and_only_the_split_needed(tmp_path):
    written = write_mnist(tmp_path, compress=True)
    for path in (tmp_path / "MNIST" / "raw").glob("train-*"):
        path.unlink()  # torchvision would refuse: it wants all four files, uncompressed
    data = load_dataset({"name": "mnist", "root": str(tmp_path)}, "dataset", limit=3)
    images, labels = written["test"]
    assert torch.equal(data.images, torch.from_numpy(images[:3, None].astype(np.float32) / 255.0))
    assert data.labels.tolist() == labels[:3].tolist()


@pytest.mark.parametrize(
    ("name", "folder"), [("fashion-mnist", "FashionMNIST"), ("kmnist", "KMNIST")]
)
def test_mnist_family_folders(tmp_path, name, folder):
    written = write_mnist(tmp_path, folder=folder)
    data = load_dataset({"name": name, "root": str(tmp_path)}, "dataset")
    assert data.labels.tolist() == written["test"][1].tolist()
    assert data.name == f"{name}[test]"


def test_root_may_be_the_raw_folder(tmp_path):
    write_mnist(tmp_path)
    data = load_dataset({"name": "mnist", "root": str(tmp_path / "MNIST" / "raw")}, "dataset")
    assert len(data) == 5


def _raw(tmp_path):
    return tmp_path / "MNIST" / "raw"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda raw: (raw / "t10k-images-idx3-ubyte").write_bytes(
                (raw / "t10k-images-idx3-ubyte").read_bytes()[:-10]
            ),
            "the header promises",
        ),
        (
            lambda raw: (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x08\x03\x00\x00junk"),
            "bad magic number",
        ),
        (
            lambda raw: write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((5, 28), np.uint8)),
            "2 dimension(s)",
        ),
        (
            lambda raw: write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8)),
            "5 images but 4 labels",
        ),
        (
            lambda raw: write_idx(raw / "t10k-labels-idx1-ubyte", np.full(5, 12, np.uint8)),
            "label 12 outside",
        ),
        (lambda raw: (raw / "t10k-labels-idx1-ubyte").unlink(), "MNIST/raw/t10k-labels-idx1-ubyte"),
    ],
)
def test_broken_files_say_what_was_expected(tmp_path, damage, message):
    write_mnist(tmp_path)
    damage(_raw(tmp_path))
    with pytest.raises(SpecError) as err:
        load_dataset({"name": "mnist", "root": str(tmp_path)}, "dataset")
    assert err.value.field == "dataset.root"
    assert message in str(err.value)


def test_corrupt_gzip(tmp_path):
    write_mnist(tmp_path, compress=True)
    path = _raw(tmp_path) / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(SpecError, match="cannot read it as an IDX file"):
        load_dataset({"name": "mnist", "root": str(tmp_path)}, "dataset")
