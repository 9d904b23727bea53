"""Dataset registry: spec entry -> :class:`~sweep.data.base.ImageSet`.

A dataset entry is a mapping with either ``name`` (one of
:data:`BUILTIN_DATASETS`) or ``factory: "module:function"``. What each source
reads, its keys and the meaning of ``sample_id`` are documented in
``docs/models-and-data.md`` and in the loader modules:

- ``digits`` (:mod:`sweep.data.digits`): scikit-learn's bundled digits; ``split``;
- ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``, ``kmnist``
  (:mod:`sweep.data.torchvision_sets`): torchvision's files under a local
  ``root``, never downloaded; ``split`` (``train`` / ``test``, default ``test``);
- ``image-folder`` (:mod:`sweep.data.image_folder`): ``root`` with a sub-folder
  per class; ``image_size``, ``crop_size``, ``extensions``, ``channels``;
- ``factory``: user code called with ``kwargs``, returning an ``ImageSet`` or a
  map-style ``torch.utils.data.Dataset`` of ``(image, label)`` pairs (image a
  ``[C, H, W]`` tensor in [0, 1], a uint8 tensor, or a PIL image); the class count
  comes from ``num_classes`` (entry, or the dataset's attribute) or ``len(classes)``.

Every source also takes ``shuffle_seed`` (see :mod:`sweep.data.selection`).
``load_dataset(..., limit=N)`` loads only the first N samples, decoding no more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from sweep.data.base import ImageSet
from sweep.data.digits import SPLITS as DIGITS_SPLITS
from sweep.data.digits import load_digits_split
from sweep.data.image_folder import CHANNEL_MODES, DEFAULT_EXTENSIONS, load_image_folder
from sweep.data.selection import select_positions
from sweep.data.torchvision_sets import (
    CIFAR10,
    CIFAR100,
    FASHION_MNIST,
    KMNIST,
    MNIST,
    CifarLayout,
    IdxLayout,
    existing_root,
    load_cifar,
    load_idx_dataset,
)
from sweep.data.torchvision_sets import SPLITS as TORCHVISION_SPLITS
from sweep.errors import SpecError, close_match_hint
from sweep.factory import call_factory, check_kwargs

_TORCHVISION: dict[str, CifarLayout | IdxLayout] = {
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "mnist": MNIST,
    "fashion-mnist": FASHION_MNIST,
    "kmnist": KMNIST,
}
BUILTIN_DATASETS: tuple[str, ...] = ("digits", *_TORCHVISION, "image-folder")

DEFAULT_SPLIT = "test"

# Keys each source accepts, besides `name` and `shuffle_seed`.
SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "digits": ("split",),
    **{name: ("root", "split") for name in _TORCHVISION},
    "image-folder": ("root", "image_size", "crop_size", "extensions", "channels"),
    "factory": ("factory", "kwargs", "num_classes"),
}
COMMON_KEYS: tuple[str, ...] = ("name", "shuffle_seed")
# Keys the sweep itself reads from the same mapping; ignored here.
SWEEP_KEYS: tuple[str, ...] = ("samples", "num_samples", "shard_size")
# every source's keys: the spec declares the same set (sweep.spec.sections.DatasetSection,
# which refuses any other key before an entry gets here; tests/data/test_registry.py)
DATASET_KEYS: tuple[str, ...] = tuple(
    dict.fromkeys(COMMON_KEYS + tuple(k for keys in SOURCE_KEYS.values() for k in keys))
)


def load_dataset(
    entry: Mapping[str, Any], field: str = "dataset", limit: int | None = None
) -> ImageSet:
    """Load the dataset a spec entry describes: its first ``limit`` samples (all if ``None``).

    Images are float32 ``[N, C, H, W]`` in [0, 1]; ``sample_ids`` index the
    source in its natural order. ``field`` is the entry's dotted spec path.
    """
    if not isinstance(entry, Mapping):
        raise SpecError(field, entry, "expected a mapping with `name` or `factory`")
    source = _source(entry, field)
    allowed = COMMON_KEYS + SOURCE_KEYS[source] + SWEEP_KEYS
    for key, value in entry.items():  # the spec knows every key; which source reads it, only here
        if key not in allowed and key in DATASET_KEYS:
            users = [s for s, keys in SOURCE_KEYS.items() if key in keys]
            raise SpecError(
                f"{field}.{key}", value, f"not used by {source}; only by {', '.join(users)}"
            )
    shuffle_seed = entry.get("shuffle_seed")
    if shuffle_seed is not None and (
        isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int) or shuffle_seed < 0
    ):
        raise SpecError(f"{field}.shuffle_seed", shuffle_seed, "expected a non-negative integer")

    if source == "digits":
        split = _split(entry, field, DIGITS_SPLITS)
        data = load_digits_split(split)
        return _subset(data, select_positions(len(data), limit, shuffle_seed))
    if source in _TORCHVISION:
        layout = _TORCHVISION[source]
        split = _split(entry, field, TORCHVISION_SPLITS)
        root = existing_root(entry.get("root"), f"{field}.root", source)
        if isinstance(layout, CifarLayout):
            return load_cifar(layout, root, split, limit, shuffle_seed, f"{field}.root")
        return load_idx_dataset(layout, root, split, limit, shuffle_seed, f"{field}.root")
    if source == "image-folder":
        return _image_folder(entry, field, limit, shuffle_seed)
    return _from_factory(entry, field, limit, shuffle_seed)


def _source(entry: Mapping[str, Any], field: str) -> str:
    name = entry.get("name")
    if entry.get("factory") is not None:
        if name is not None and not isinstance(name, str):
            raise SpecError(f"{field}.name", name, "expected a string (the dataset's label)")
        return "factory"
    if name in BUILTIN_DATASETS:
        return name
    if name is None:
        raise SpecError(
            f"{field}.name", name, f"required (or `factory`); valid: {', '.join(BUILTIN_DATASETS)}"
        )
    hint = close_match_hint(name, BUILTIN_DATASETS)
    raise SpecError(
        f"{field}.name",
        name,
        f'unknown dataset; {hint}valid: {", ".join(BUILTIN_DATASETS)}, or factory: "module:function"',
    )


def _split(entry: Mapping[str, Any], field: str, valid: tuple[str, ...]) -> str:
    split = entry.get("split", DEFAULT_SPLIT)
    if split not in valid:
        raise SpecError(f"{field}.split", split, f"valid: {', '.join(valid)}")
    return split


def _subset(data: ImageSet, positions: np.ndarray, name: str | None = None) -> ImageSet:
    index = torch.from_numpy(positions)
    return ImageSet(
        images=data.images[index],
        labels=data.labels[index],
        sample_ids=data.sample_ids[index],
        num_classes=data.num_classes,
        name=name or data.name,
    )


# --------------------------------------------------------------------------- image folder


def _size(value: Any, key: str, field: str) -> int | list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return list(value)
    raise SpecError(f"{field}.{key}", value, "expected a positive integer or [height, width]")


def _image_folder(
    entry: Mapping[str, Any], field: str, limit: int | None, shuffle_seed: int | None
) -> ImageSet:
    root = existing_root(entry.get("root"), f"{field}.root", "image-folder")
    extensions = entry.get("extensions", DEFAULT_EXTENSIONS)
    if isinstance(extensions, str):
        extensions = [extensions]
    if (
        not isinstance(extensions, list | tuple)
        or not extensions
        or not all(isinstance(e, str) and e.strip(".") for e in extensions)
    ):
        raise SpecError(
            f"{field}.extensions",
            extensions,
            'expected a list of file extensions, e.g. [".png", ".jpg"]',
        )
    extensions = ["." + e.lstrip(".") for e in extensions]
    channels = entry.get("channels", 3)
    if channels not in CHANNEL_MODES or isinstance(channels, bool):
        raise SpecError(f"{field}.channels", channels, "expected 3 (RGB) or 1 (grayscale)")
    return load_image_folder(
        root,
        field=field,
        image_size=_size(entry.get("image_size"), "image_size", field),
        crop_size=_size(entry.get("crop_size"), "crop_size", field),
        extensions=extensions,
        channels=channels,
        limit=limit,
        shuffle_seed=shuffle_seed,
    )


# --------------------------------------------------------------------------- factory


def _from_factory(
    entry: Mapping[str, Any], field: str, limit: int | None, shuffle_seed: int | None
) -> ImageSet:
    spec = entry["factory"]
    kwargs = check_kwargs(entry.get("kwargs"), f"{field}.kwargs")
    num_classes = entry.get("num_classes")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise SpecError(f"{field}.num_classes", num_classes, "expected a positive integer")
    result = call_factory(spec, kwargs, f"{field}.factory", f"{field}.kwargs")
    label = entry.get("name") or str(spec)
    if isinstance(result, ImageSet):
        data = _checked_imageset(result, num_classes, f"{field}.factory", spec)
        return _subset(data, select_positions(len(data), limit, shuffle_seed), label)
    if not (hasattr(result, "__len__") and hasattr(result, "__getitem__")):
        raise SpecError(
            f"{field}.factory",
            spec,
            f"returned a {type(result).__name__}; expected an ImageSet or a map-style "
            "torch Dataset of (image, label) pairs",
        )
    return _from_torch_dataset(
        result, num_classes, label, limit, shuffle_seed, f"{field}.factory", spec
    )


def _checked_imageset(data: ImageSet, num_classes: int | None, field: str, spec: Any) -> ImageSet:
    images = data.images
    if not images.is_floating_point():
        raise SpecError(
            field, spec, f"its ImageSet holds {images.dtype} images; expected floats in [0, 1]"
        )
    _check_unit_range(images, field, spec)
    classes = num_classes if num_classes is not None else data.num_classes
    _check_labels(data.labels, classes, field, spec)
    return ImageSet(
        images.float().cpu(),
        data.labels.long().cpu(),
        data.sample_ids.long().cpu(),
        classes,
        data.name,
    )


def _from_torch_dataset(
    dataset: Any,
    num_classes: int | None,
    label: str,
    limit: int | None,
    shuffle_seed: int | None,
    field: str,
    spec: Any,
) -> ImageSet:
    classes = num_classes
    if classes is None:
        attr = getattr(dataset, "num_classes", None)
        names = getattr(dataset, "classes", None)
        if isinstance(attr, int) and not isinstance(attr, bool):
            classes = attr
        elif isinstance(names, list | tuple) and names:
            classes = len(names)
        else:
            raise SpecError(
                field.rsplit(".", 1)[0] + ".num_classes",
                None,
                f"cannot tell how many classes {spec} has (no `num_classes` or `classes` "
                "attribute): give num_classes in the dataset entry",
            )
    positions = select_positions(len(dataset), limit, shuffle_seed)
    images, labels = [], []
    for position in positions:
        item = dataset[int(position)]
        if not isinstance(item, tuple | list) or len(item) < 2:
            raise SpecError(
                field, spec, f"item {position} is a {type(item).__name__}; expected (image, label)"
            )
        images.append(_image_tensor(item[0], position, field, spec))
        labels.append(_label_int(item[1], position, field, spec))
        if images[-1].shape != images[0].shape:
            raise SpecError(
                field,
                spec,
                f"item {position} has shape {list(images[-1].shape)}, item "
                f"{positions[0]} {list(images[0].shape)}: all images must be the same size",
            )
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    _check_labels(label_tensor, classes, field, spec)
    stacked = torch.stack(images) if images else torch.zeros((0, 1, 1, 1))
    return ImageSet(stacked, label_tensor, torch.from_numpy(positions), classes, label)


def _image_tensor(image: Any, position: int, field: str, spec: Any) -> torch.Tensor:
    from PIL import Image

    if isinstance(image, Image.Image):
        mode = image.mode if image.mode in ("L", "RGB") else "RGB"
        pixels = np.asarray(image.convert(mode), dtype=np.uint8)
        pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
        return torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255.0)
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise SpecError(
            field,
            spec,
            f"item {position}: image is {shape}; expected a [C, H, W] tensor or a PIL image",
        )
    if image.dtype == torch.uint8:
        return image.float().div(255.0).cpu()
    if not image.is_floating_point():
        raise SpecError(
            field,
            spec,
            f"item {position}: image dtype {image.dtype}; expected float in [0, 1] or uint8",
        )
    image = image.detach().float().cpu()
    _check_unit_range(image, field, spec, f"item {position}: ")
    return image


def _label_int(value: Any, position: int, field: str, spec: Any) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value.item())
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    raise SpecError(
        field, spec, f"item {position}: label {value!r:.60} is not an integer class index"
    )


def _check_unit_range(images: torch.Tensor, field: str, spec: Any, where: str = "") -> None:
    # Normalised images would make epsilon mean something else: normalisation belongs
    # in the model (mean / std), the data stays in [0, 1] pixel space.
    if images.numel() and not bool(torch.isfinite(images).all()):
        raise SpecError(field, spec, f"{where}images contain NaN or infinite values")
    if images.numel() and (bool(images.min() < 0) or bool(images.max() > 1)):
        raise SpecError(
            field,
            spec,
            f"{where}pixel values span [{images.min().item():.3g}, {images.max().item():.3g}]; images must "
            "be in [0, 1] (put normalisation in the model's mean/std instead)",
        )


def _check_labels(labels: torch.Tensor, num_classes: int, field: str, spec: Any) -> None:
    if labels.numel() and (bool(labels.min() < 0) or bool(labels.max() >= num_classes)):
        raise SpecError(
            field,
            spec,
            f"labels span {labels.min().item()}..{labels.max().item()}, outside 0..{num_classes - 1}",
        )
