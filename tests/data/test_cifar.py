"""CIFAR-10/100 python batches written in the official layout, read back exactly."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torchvision

from sweep.data.registry import load_dataset
from sweep.errors import SpecError
from tests.data.conftest import write_cifar10, write_cifar_batch


def _expected_images(data: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)


def test_test_split_is_read_exactly(tmp_path):
    written = write_cifar10(tmp_path)
    data = load_dataset(
        {"name": "cifar10", "root": str(tmp_path)}, "dataset"
    )  # split defaults to test
    test_data, test_labels = written["test_batch"]
    assert data.images.dtype == torch.float32 and data.images.shape == (4, 3, 32, 32)
    assert torch.equal(data.images, _expected_images(test_data))
    assert data.labels.tolist() == test_labels.tolist()
    assert data.sample_ids.tolist() == [0, 1, 2, 3]
    assert data.num_classes == 10
    # channel layout: the first 1024 bytes are the red plane, row-major
    assert data.images[0, 0, 0, 1].item() == pytest.approx(test_data[0, 1] / 255.0)
    assert data.images[0, 2, 31, 31].item() == pytest.approx(test_data[0, 3071] / 255.0)


class _CIFAR10WithoutChecksums(torchvision.datasets.CIFAR10):
    """torchvision's reader with its MD5 checks of the official files turned off."""

    train_list: ClassVar = [[name, None] for name, _ in torchvision.datasets.CIFAR10.train_list]
    test_list: ClassVar = [[name, None] for name, _ in torchvision.datasets.CIFAR10.test_list]
    meta: ClassVar = {**torchvision.datasets.CIFAR10.meta, "md5": None}


@pytest.mark.parametrize("split", ["train", "test"])
def test_matches_torchvisions_reader_index_for_index(tmp_path, split):
    write_cifar10(tmp_path, per_batch=3)
    ours = load_dataset({"name": "cifar10", "root": str(tmp_path), "split": split}, "dataset")
    reference = _CIFAR10WithoutChecksums(str(tmp_path), train=split == "train", download=False)
    assert len(ours) == len(reference) == (15 if split == "train" else 3)
    hwc = torch.from_numpy(reference.data).permute(0, 3, 1, 2).float() / 255.0
    assert torch.equal(ours.images, hwc)
    assert ours.labels.tolist() == list(reference.targets)
    assert ours.sample_ids.tolist() == list(range(len(reference)))


def test_limit_reads_only_the_batches_it_needs(tmp_path):
    written = write_cifar10(tmp_path, per_batch=4)
    # Break the later train batches: a limit within the first two must not touch them.
    for name in ("data_batch_3", "data_batch_4", "data_batch_5"):
        (tmp_path / "cifar-10-batches-py" / name).write_bytes(b"corrupt")
    entry = {"name": "cifar10", "root": str(tmp_path), "split": "train"}
    data = load_dataset(entry, "dataset", limit=6)
    assert data.sample_ids.tolist() == [0, 1, 2, 3, 4, 5]
    both = np.concatenate([written["data_batch_1"][0], written["data_batch_2"][0][:2]])
    assert torch.equal(data.images, _expected_images(both))
    with pytest.raises(SpecError) as err:
        load_dataset(entry, "dataset")
    assert err.value.field == "dataset.root"
    assert "data_batch_3" in str(err.value.value)


def test_shuffle_seed_keeps_sample_ids_and_nests_prefixes(tmp_path):
    write_cifar10(tmp_path, per_batch=5)
    entry = {"name": "cifar10", "root": str(tmp_path), "split": "train"}
    natural = load_dataset(entry, "dataset")
    shuffled = load_dataset({**entry, "shuffle_seed": 3}, "dataset", limit=8)
    ids = shuffled.sample_ids
    assert sorted(ids.tolist()) != ids.tolist()  # not natural order
    assert torch.equal(shuffled.images, natural.images[ids])  # sample_id still indexes the dataset
    assert torch.equal(shuffled.labels, natural.labels[ids])
    fewer = load_dataset({**entry, "shuffle_seed": 3}, "dataset", limit=3)
    assert torch.equal(fewer.sample_ids, ids[:3])


def test_root_may_be_the_batches_folder_itself(tmp_path):
    write_cifar10(tmp_path)
    data = load_dataset(
        {"name": "cifar10", "root": str(tmp_path / "cifar-10-batches-py")}, "dataset"
    )
    assert len(data) == 4


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
    labels = np.array([0, 99, 5, 42, 7, 63])
    write_cifar_batch(folder / "test", data, labels, label_key="fine_labels")
    with (folder / "meta").open("wb") as f:
        pickle.dump(
            {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []}, f
        )
    out = load_dataset({"name": "cifar100", "root": str(tmp_path)}, "dataset", limit=4)
    assert out.num_classes == 100
    assert out.labels.tolist() == [0, 99, 5, 42]
    assert torch.equal(out.images, _expected_images(data[:4]))


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_batch_that_is_a_malicious_pickle_is_refused(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned.txt"
    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("wb") as f:
        pickle.dump({"data": _Payload(marker), "labels": [1]}, f, protocol=2)
    with pytest.raises(SpecError, match="refusing to load") as err:
        load_dataset({"name": "cifar10", "root": str(tmp_path)}, "dataset")
    assert err.value.field == "dataset.root"
    assert not marker.exists()


def _bad_batch(path: Path, kind: str) -> None:
    if kind == "garbage":
        path.write_bytes(b"\x00\x01not a pickle")
    elif kind == "list":
        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif kind == "shape":
        write_cifar_batch(path, np.zeros((2, 100), np.uint8), np.array([0, 1]))
    elif kind == "labels":
        write_cifar_batch(path, np.zeros((2, 3072), np.uint8), np.array([0]))
    elif kind == "label-range":
        write_cifar_batch(path, np.zeros((2, 3072), np.uint8), np.array([0, 10]))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("garbage", "not a readable cifar10 python batch"),
        ("list", "expected a pickled dict"),
        ("shape", "uint8 [N, 3072]"),
        ("labels", "2 images but labels"),
        ("label-range", "label 10 outside 0..9"),
    ],
)
def test_corrupt_batches_say_what_was_expected(tmp_path, kind, message):
    write_cifar10(tmp_path)
    _bad_batch(tmp_path / "cifar-10-batches-py" / "test_batch", kind)
    with pytest.raises(SpecError) as err:
        load_dataset({"name": "cifar10", "root": str(tmp_path)}, "dataset")
    assert err.value.field == "dataset.root"
    assert message in str(err.value)


def test_missing_files_name_the_expected_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError) as err:
        load_dataset({"name": "cifar10", "root": str(tmp_path / "empty")}, "dataset")
    assert err.value.field == "dataset.root"
    assert "cifar-10-batches-py/test_batch" in str(err.value)
    assert "cifar-10-python.tar.gz" in str(err.value)


def test_meta_with_the_wrong_class_count(tmp_path):
    write_cifar10(tmp_path)
    with (tmp_path / "cifar-10-batches-py" / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": ["a", "b"]}, f)
    with pytest.raises(SpecError, match="2 class names, expected 10"):
        load_dataset({"name": "cifar10", "root": str(tmp_path)}, "dataset")
