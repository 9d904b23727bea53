"""The dataset registry: digits with limits, factory datasets, and entry errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sweep.data.base import ImageSet
from sweep.data.digits import load_digits_split
from sweep.data.registry import BUILTIN_DATASETS, DATASET_KEYS, SWEEP_KEYS, load_dataset
from sweep.data.selection import select_positions
from sweep.errors import SpecError

USER_DATA = """
import numpy as np
import torch
from PIL import Image
from sweep.data.base import ImageSet


class Squares(torch.utils.data.Dataset):
    classes = ["dark", "mid", "light"]

    def __init__(self, n=7, side=4):
        self.n, self.side = n, side

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((1, self.side, self.side), i / 10), i % 3


class PilImages(torch.utils.data.Dataset):
    num_classes = 2

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return Image.fromarray(np.full((2, 3, 3), 50 * i, np.uint8)), np.int64(i % 2)


class NoClasses(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.zeros(1, 2, 2, dtype=torch.uint8) + 255, i


class Normalised(Squares):
    def __getitem__(self, i):
        return torch.full((1, 2, 2), -0.5), 0


class Ragged(Squares):
    def __getitem__(self, i):
        return torch.zeros(1, 2 + i, 2), 0


class BadLabel(Squares):
    def __getitem__(self, i):
        return torch.zeros(1, 2, 2), 5


def squares(n=7, side=4):
    return Squares(n, side)


def pil_images():
    return PilImages()


def no_classes():
    return NoClasses()


def normalised():
    return Normalised()


def ragged():
    return Ragged()


def bad_label():
    return BadLabel()


def image_set():
    images = torch.rand(5, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    return ImageSet(images, torch.tensor([0, 1, 2, 3, 0]), torch.tensor([10, 11, 12, 13, 14]), 4, "mine")


def a_number():
    return 3
"""


@pytest.fixture
def user_data(write_module) -> str:
    return write_module(USER_DATA)


def test_digits_limit_and_split():
    full = load_digits_split("test")
    data = load_dataset({"name": "digits"}, "dataset", limit=10)
    assert torch.equal(data.images, full.images[:10])
    assert data.sample_ids.tolist() == list(range(899, 909))
    train = load_dataset({"name": "digits", "split": "train"}, "dataset", limit=3)
    assert train.sample_ids.tolist() == [0, 1, 2]
    assert len(load_dataset({"name": "digits"}, "dataset")) == 898


def test_digits_read_without_sklearn_equal_sklearns_load_digits():
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = load_digits_split("all")
    assert torch.equal(data.images, torch.from_numpy(bunch.images[:, None] / 16.0).float())
    assert data.labels.tolist() == bunch.target.tolist()
    code = ("import sys; from sweep.data.digits import load_digits_split; "
            "load_digits_split('test'); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_factory_torch_dataset_is_converted(user_data):
    data = load_dataset(
        {"factory": f"{user_data}:squares", "kwargs": {"n": 6, "side": 3}}, "dataset", limit=5
    )
    assert data.images.shape == (5, 1, 3, 3) and data.images.dtype == torch.float32
    assert data.images[:, 0, 0, 0].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert data.labels.tolist() == [0, 1, 2, 0, 1]
    assert data.sample_ids.tolist() == [0, 1, 2, 3, 4]
    assert data.num_classes == 3  # len(dataset.classes)


def test_factory_pil_and_uint8_images(user_data):
    pil = load_dataset({"factory": f"{user_data}:pil_images"}, "dataset")
    assert pil.images.shape == (3, 3, 2, 3)
    assert pil.images[2].unique().tolist() == [pytest.approx(100 / 255)]
    assert pil.num_classes == 2 and pil.labels.tolist() == [0, 1, 0]
    with pytest.raises(SpecError) as err:
        load_dataset({"factory": f"{user_data}:no_classes"}, "dataset")
    assert err.value.field == "dataset.num_classes"
    given = load_dataset({"factory": f"{user_data}:no_classes", "num_classes": 2}, "dataset")
    assert given.images.unique().tolist() == [1.0]  # uint8 255 -> 1.0


def test_factory_image_set_keeps_its_ids_and_respects_limit(user_data):
    data = load_dataset({"name": "custom", "factory": f"{user_data}:image_set"}, "dataset", limit=3)
    assert data.sample_ids.tolist() == [10, 11, 12]
    assert data.num_classes == 4 and data.name == "custom"


@pytest.mark.parametrize(
    ("function", "field", "message"),
    [
        ("normalised", "dataset.factory", "must be in [0, 1]"),
        ("ragged", "dataset.factory", "same size"),
        ("bad_label", "dataset.factory", "outside 0..2"),
        ("a_number", "dataset.factory", "expected an ImageSet or a map-style"),
        ("missing_fn", "dataset.factory", "has no attribute"),
    ],
)
def test_factory_dataset_errors(user_data, function, field, message):
    with pytest.raises(SpecError) as err:
        load_dataset({"factory": f"{user_data}:{function}"}, "dataset")
    assert err.value.field == field
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ({"name": "cifar-10", "root": "."}, "dataset.name", "did you mean 'cifar10'"),
        ({"name": "imagenet"}, "dataset.name", "unknown dataset"),
        ({}, "dataset.name", "required"),
        ({"name": "digits", "split": "val"}, "dataset.split", "valid: train, test, all"),
        ({"name": "cifar10", "root": ".", "split": "all"}, "dataset.split", "valid: train, test"),
        ({"name": "digits", "root": "/data"}, "dataset.root", "not used by digits"),
        (
            {"name": "cifar10", "root": ".", "image_size": 32},
            "dataset.image_size",
            "only by image-folder",
        ),
        ({"name": "cifar10"}, "dataset.root", "required for cifar10"),
        ({"name": "mnist", "root": "/definitely/not/here"}, "dataset.root", "never downloaded"),
        ({"name": "mnist", "root": 5}, "dataset.root", "folder path"),
        ({"name": "digits", "shuffle_seed": -1}, "dataset.shuffle_seed", "non-negative"),
        ({"name": "digits", "shuffle_seed": True}, "dataset.shuffle_seed", "non-negative"),
        ({"factory": "nope"}, "dataset.factory", "module:function"),
        (
            {"factory": "sweep.data.digits:load_digits_split", "kwargs": 3},
            "dataset.kwargs",
            "mapping",
        ),
        (
            {"factory": "sweep.data.digits:load_digits_split", "kwargs": {"splt": "a"}},
            "dataset.kwargs",
            "did you mean 'split'",
        ),
        (
            {"factory": "sweep.data.digits:load_digits_split", "num_classes": 0},
            "dataset.num_classes",
            "positive",
        ),
        ("digits", "dataset", "mapping"),
    ],
)
def test_dataset_entry_errors(entry, field, message):
    with pytest.raises(SpecError) as err:
        load_dataset(entry, "dataset")
    assert err.value.field == field, str(err.value)
    assert message in str(err.value), str(err.value)


def test_sweep_level_keys_pass_through():
    data = load_dataset({"name": "digits", "samples": 5, "shard_size": 2}, "dataset", limit=5)
    assert len(data) == 5


def test_factory_that_is_a_builtin_loader():
    data = load_dataset(
        {"factory": "sweep.data.digits:load_digits_split", "kwargs": {"split": "train"}},
        "dataset",
        limit=2,
    )
    assert data.sample_ids.tolist() == [0, 1]


def test_select_positions():
    assert select_positions(5, None, None).tolist() == [0, 1, 2, 3, 4]
    assert select_positions(5, 2, None).tolist() == [0, 1]
    assert select_positions(3, 10, None).tolist() == [0, 1, 2]
    shuffled = select_positions(100, None, 7)
    assert sorted(shuffled.tolist()) == list(range(100)) and shuffled.tolist() != list(range(100))
    assert np.array_equal(select_positions(100, 10, 7), shuffled[:10])
    assert np.array_equal(select_positions(100, None, 7), shuffled)  # deterministic
    with pytest.raises(ValueError):
        select_positions(5, -1, None)


def test_published_names():
    assert BUILTIN_DATASETS == (
        "digits",
        "cifar10",
        "cifar100",
        "mnist",
        "fashion-mnist",
        "kmnist",
        "image-folder",
    )
    assert {"name", "factory", "root", "split", "image_size", "extensions", "kwargs"} <= set(
        DATASET_KEYS
    )


def test_the_spec_declares_every_key_a_source_reads():
    """The spec refuses unknown dataset keys (tests/spec/test_config.py, case
    ``dataset-key-typo``); it knows the same keys as the sources here."""
    from sweep.spec.sections import DatasetSection

    declared = set(DatasetSection.model_fields) | set(DatasetSection.aliases())
    assert declared == set(DATASET_KEYS) | set(SWEEP_KEYS)
    assert isinstance(load_dataset({"name": "digits"}, "dataset", limit=1), ImageSet)
