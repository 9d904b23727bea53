"""A folder of images, one sub-folder per class, as torchvision's ``ImageFolder`` reads it.

Layout: ``ROOT/<class name>/<any sub-path>/<image file>``. Classes are the
sub-folder names sorted alphabetically (label = position in that order);
``sample_id`` is the image's index in ``torchvision.datasets.ImageFolder(ROOT)``
(classes in sorted order, then file paths sorted within each class), so it is
stable as long as the folder's contents do not change.

Decoding (Pillow): each image is converted to RGB (``channels: 3``, default) or
grayscale (``channels: 1``); optionally resized (``image_size``: an int resizes
the shorter side keeping the aspect ratio, ``[H, W]`` resizes exactly; bilinear
with antialiasing, as torchvision's ``Resize``) and then centre-cropped
(``crop_size``: int or ``[H, W]``), e.g. ``image_size: 256, crop_size: 224`` for
the usual ImageNet evaluation. All images must end up the same size. Pixels
become float32 ``byte / 255`` in [0, 1]. Only the selected images are decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sweep.data.base import ImageSet
from sweep.data.selection import select_positions
from sweep.errors import SpecError

# torchvision.datasets.folder.IMG_EXTENSIONS, the default set ImageFolder accepts.
DEFAULT_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)
CHANNEL_MODES = {1: "L", 3: "RGB"}


def load_image_folder(
    root: Path,
    *,
    field: str,
    image_size: int | Sequence[int] | None = None,
    crop_size: int | Sequence[int] | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    channels: int = 3,
    limit: int | None = None,
    shuffle_seed: int | None = None,
) -> ImageSet:
    """The images under ``root`` as an :class:`ImageSet`; ``field`` is the spec entry's path."""
    from torchvision.datasets import ImageFolder

    suffixes = tuple(e.lower() for e in extensions)
    try:
        # The loader is never called: we decode only the selected files ourselves.
        folder = ImageFolder(
            str(root), loader=_not_called, is_valid_file=lambda p: p.lower().endswith(suffixes)
        )
    except FileNotFoundError as exc:
        raise SpecError(
            f"{field}.root",
            str(root),
            f"not an image folder ({exc}); expected ROOT/<class>/<image> with extensions "
            f"{', '.join(suffixes)}",
        ) from exc
    positions = select_positions(len(folder.samples), limit, shuffle_seed)
    images = []
    first: tuple[str, tuple[int, ...]] | None = None
    for position in positions:
        path = folder.samples[position][0]
        image = _decode(path, CHANNEL_MODES[channels], image_size, crop_size, field)
        if first is None:
            first = (path, tuple(image.shape))
        elif tuple(image.shape) != first[1]:
            raise SpecError(
                f"{field}.image_size",
                image_size,
                f"images differ in size after resizing: {first[0]} is {list(first[1][1:])}, "
                f"{path} is {list(image.shape[1:])}; set image_size: [H, W], or image_size plus "
                "crop_size",
            )
        images.append(image)
    labels = np.asarray([folder.samples[p][1] for p in positions], dtype=np.int64)
    stacked = torch.stack(images) if images else torch.zeros((0, channels, 1, 1))
    return ImageSet(
        images=stacked,
        labels=torch.from_numpy(labels),
        sample_ids=torch.from_numpy(positions),
        num_classes=len(folder.classes),
        name=f"image-folder[{root.name}]",
    )


def _not_called(path: str) -> Any:  # pragma: no cover - never used, see above
    raise AssertionError(path)


def _decode(
    path: str,
    mode: str,
    image_size: int | Sequence[int] | None,
    crop_size: int | Sequence[int] | None,
    field: str,
) -> torch.Tensor:
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    try:
        with Image.open(path) as opened:
            image = opened.convert(mode)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SpecError(
            f"{field}.root", path, f"cannot decode this file as an image (Pillow: {exc})"
        ) from exc
    if image_size is not None:
        size = [image_size] if isinstance(image_size, int) else list(image_size)
        image = tvf.resize(image, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
    if crop_size is not None:
        crop = [crop_size, crop_size] if isinstance(crop_size, int) else list(crop_size)
        if image.height < crop[0] or image.width < crop[1]:
            raise SpecError(
                f"{field}.crop_size",
                crop_size,
                f"larger than {path} ({image.height}x{image.width})",
            )
        image = tvf.center_crop(image, crop)
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return torch.from_numpy(pixels.transpose(2, 0, 1).astype(np.float32) / 255.0)
