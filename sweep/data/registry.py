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

digits, CIFAR and the MNIST family are read into NumPy arrays
(:func:`load_dataset_arrays`, which needs no torch: ``sweep plan`` uses it) and
handed out as tensors by :func:`load_dataset`; an image folder and a factory need
torch to load, so their modules are imported only when one is named.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweep.data.base import ImageSet
from sweep.data.digits import SPLITS as DIGITS_SPLITS
from sweep.data.digits import load_digits_arrays
from sweep.data.samples import ArraySet
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

_TORCHVISION: dict[str, CifarLayout | IdxLayout] = {
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "mnist": MNIST,
    "fashion-mnist": FASHION_MNIST,
    "kmnist": KMNIST,
}
BUILTIN_DATASETS: tuple[str, ...] = ("digits", *_TORCHVISION, "image-folder")
# the sources read into NumPy arrays (load_dataset_arrays); the others need torch
ARRAY_SOURCES: tuple[str, ...] = ("digits", *_TORCHVISION)

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
    source, shuffle_seed = _checked_entry(entry, field)
    if source in ARRAY_SOURCES:
        return ImageSet.from_arrays(_read_arrays(source, entry, field, limit, shuffle_seed))
    if source == "image-folder":
        return _image_folder(entry, field, limit, shuffle_seed)
    from sweep.data.factory_sets import load_from_factory

    return load_from_factory(entry, field, limit, shuffle_seed)


def load_dataset_arrays(
    entry: Mapping[str, Any], field: str = "dataset", limit: int | None = None
) -> ArraySet | None:
    """:func:`load_dataset` as NumPy arrays, without torch, for the :data:`ARRAY_SOURCES`;
    None for the other sources (after the same checks of the entry's keys).

    The same samples, dtypes and values as :func:`load_dataset` (which wraps these
    arrays), so the same fingerprints."""
    source, shuffle_seed = _checked_entry(entry, field)
    if source not in ARRAY_SOURCES:
        return None
    return _read_arrays(source, entry, field, limit, shuffle_seed)


def _checked_entry(entry: Mapping[str, Any], field: str) -> tuple[str, int | None]:
    """The entry's source and ``shuffle_seed``, after checking its keys against the source."""
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
    return source, shuffle_seed


def _read_arrays(
    source: str, entry: Mapping[str, Any], field: str, limit: int | None, shuffle_seed: int | None
) -> ArraySet:
    """One of the :data:`ARRAY_SOURCES`, its entry already checked."""
    if source == "digits":
        data = load_digits_arrays(_split(entry, field, DIGITS_SPLITS))
        return data.subset(select_positions(len(data), limit, shuffle_seed))
    layout = _TORCHVISION[source]
    split = _split(entry, field, TORCHVISION_SPLITS)
    root = existing_root(entry.get("root"), f"{field}.root", source)
    if isinstance(layout, CifarLayout):
        return load_cifar(layout, root, split, limit, shuffle_seed, f"{field}.root")
    return load_idx_dataset(layout, root, split, limit, shuffle_seed, f"{field}.root")


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
    # imported here: the image folder reads through torchvision (and torch)
    from sweep.data.image_folder import CHANNEL_MODES, DEFAULT_EXTENSIONS, load_image_folder

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


