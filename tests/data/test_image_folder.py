"""Image folders of real PNG files: order, labels, pixels, resizing and broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from sweep.data.registry import load_dataset
from sweep.errors import SpecError


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def folder(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """root/{cat,dog,eel}/*.png, 6x5 RGB, deliberately created out of sorted order."""
    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    pixels = {}
    for rel in ["dog/b.png", "cat/z.png", "cat/a.png", "eel/sub/c.png", "dog/a.png", "eel/a.png"]:
        pixels[rel] = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
        _png(root / rel, pixels[rel])
    (root / "dog" / "notes.txt").write_text("not an image")
    return root, pixels


def test_order_labels_and_pixels_match_imagefolder(folder):
    root, pixels = folder
    data = load_dataset({"name": "image-folder", "root": str(root)}, "dataset")
    reference = torchvision.datasets.ImageFolder(str(root))
    order = [Path(p).relative_to(root).as_posix() for p, _ in reference.samples]
    assert order == [
        "cat/a.png",
        "cat/z.png",
        "dog/a.png",
        "dog/b.png",
        "eel/a.png",
        "eel/sub/c.png",
    ]
    assert data.labels.tolist() == [label for _, label in reference.samples] == [0, 0, 1, 1, 2, 2]
    assert data.sample_ids.tolist() == list(range(6))
    assert data.num_classes == 3
    expected = torch.stack(
        [torch.from_numpy(pixels[rel]).permute(2, 0, 1).float() / 255 for rel in order]
    )
    assert data.images.shape == (6, 3, 6, 5)
    assert torch.equal(data.images, expected)  # PNG is lossless: exact


def test_limit_decodes_only_what_is_needed(folder):
    root, _ = folder
    (root / "eel" / "a.png").write_bytes(b"corrupt png")  # position 4
    data = load_dataset({"name": "image-folder", "root": str(root)}, "dataset", limit=3)
    assert data.sample_ids.tolist() == [0, 1, 2]
    with pytest.raises(SpecError) as err:
        load_dataset({"name": "image-folder", "root": str(root)}, "dataset")
    assert err.value.field == "dataset.root"
    assert err.value.value.endswith("eel/a.png")
    assert "cannot decode" in str(err.value)


def test_shuffle_seed_mixes_classes(folder):
    root, _ = folder
    natural = load_dataset({"name": "image-folder", "root": str(root)}, "dataset")
    mixed = load_dataset(
        {"name": "image-folder", "root": str(root), "shuffle_seed": 0}, "dataset", limit=4
    )
    assert torch.equal(mixed.images, natural.images[mixed.sample_ids])
    assert len(set(mixed.labels.tolist())) > 1


def test_resize_crop_and_grayscale(tmp_path):
    root = tmp_path / "sizes"
    _png(root / "a" / "wide.png", np.full((10, 20, 3), 200, np.uint8))
    _png(root / "b" / "tall.png", np.full((16, 8, 3), 100, np.uint8))
    entry = {"name": "image-folder", "root": str(root)}
    with pytest.raises(SpecError) as err:
        load_dataset(entry, "dataset")
    assert err.value.field == "dataset.image_size"
    assert "set image_size" in str(err.value)

    exact = load_dataset({**entry, "image_size": [12, 7]}, "dataset")
    assert exact.images.shape == (2, 3, 12, 7)
    assert exact.images[0].unique().tolist() == [
        pytest.approx(200 / 255)
    ]  # flat colour survives resizing

    cropped = load_dataset({**entry, "image_size": 8, "crop_size": 8, "channels": 1}, "dataset")
    assert cropped.images.shape == (2, 1, 8, 8)  # shorter side to 8, then the centre 8x8
    assert cropped.images[1].unique().tolist() == [pytest.approx(100 / 255)]


def test_extensions_filter(tmp_path):
    root = tmp_path / "mixed"
    _png(root / "a" / "x.png", np.zeros((4, 4, 3), np.uint8))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "a" / "y.bmp")
    _png(root / "b" / "z.png", np.zeros((4, 4, 3), np.uint8))
    all_images = load_dataset({"name": "image-folder", "root": str(root)}, "dataset")
    pngs = load_dataset(
        {"name": "image-folder", "root": str(root), "extensions": ["png"]}, "dataset"
    )
    assert len(all_images) == 3 and len(pngs) == 2


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ({"root": "{missing}"}, "dataset.root", "no such directory"),
        ({}, "dataset.root", "required"),
        ({"root": "{empty}"}, "dataset.root", "not an image folder"),
        ({"root": "{flat}"}, "dataset.root", "not an image folder"),
        ({"root": "{pets}", "image_size": 0}, "dataset.image_size", "positive integer"),
        ({"root": "{pets}", "image_size": [8]}, "dataset.image_size", "[height, width]"),
        ({"root": "{pets}", "crop_size": 64}, "dataset.crop_size", "larger than"),
        ({"root": "{pets}", "channels": 4}, "dataset.channels", "3 (RGB) or 1"),
        ({"root": "{pets}", "extensions": []}, "dataset.extensions", "list of file extensions"),
        ({"root": "{pets}", "split": "test"}, "dataset.split", "not used by image-folder"),
    ],
)
def test_image_folder_errors(folder, tmp_path, entry, field, message):
    root, _ = folder
    (tmp_path / "empty").mkdir()
    _png(tmp_path / "flat" / "img.png", np.zeros((4, 4, 3), np.uint8))  # no class sub-folder
    paths = {
        "missing": str(tmp_path / "nope"),
        "empty": str(tmp_path / "empty"),
        "flat": str(tmp_path / "flat"),
        "pets": str(root),
    }
    entry = {
        "name": "image-folder",
        **{k: v.format(**paths) if isinstance(v, str) else v for k, v in entry.items()},
    }
    with pytest.raises(SpecError) as err:
        load_dataset(entry, "dataset")
    assert err.value.field == field, str(err.value)
    assert message in str(err.value), str(err.value)
