"""A dataset from user code: ``factory: "module:function"`` (see :mod:`sweep.data.registry`).

The function is called with the entry's ``kwargs`` and returns an
:class:`~sweep.data.base.ImageSet` or a map-style ``torch.utils.data.Dataset`` of
``(image, label)`` pairs (image a ``[C, H, W]`` tensor in [0, 1], a uint8 tensor, or
a PIL image); the class count comes from ``num_classes`` (entry, or the dataset's
attribute) or ``len(classes)``. Both are torch objects, so this path needs torch; the
registry imports this module only for a factory entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from sweep.data.base import ImageSet
from sweep.data.selection import select_positions
from sweep.errors import SpecError
from sweep.factory import call_factory, check_kwargs


def _subset(data: ImageSet, positions: np.ndarray, name: str | None = None) -> ImageSet:
    index = torch.from_numpy(positions)
    return ImageSet(
        images=data.images[index],
        labels=data.labels[index],
        sample_ids=data.sample_ids[index],
        num_classes=data.num_classes,
        name=name or data.name,
    )


def load_from_factory(
    entry: Mapping[str, Any], field: str, limit: int | None, shuffle_seed: int | None
) -> ImageSet:
    """The factory entry's dataset (its first ``limit`` samples, after ``shuffle_seed``);
    ``field`` is the entry's dotted spec path."""
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
