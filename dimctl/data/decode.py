"""Decode lists of image files (JPEG, PNG, …) into one uint8 (N, 3, S, S) tensor.

For the datasets that ship as loose files (Tiny ImageNet, CelebA). Files are decoded by a small
thread pool: Pillow releases the GIL while it decodes, so the cores share the work. JPEGs are
decoded at a reduced scale when that is still at least the target size (Pillow's ``draft``:
the decoder skips detail the resize would throw away).
"""

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dimctl.errors import ArtifactError

# A file whose header claims more pixels than Pillow's limit (Image.MAX_IMAGE_PIXELS, ~89 M) is a
# decompression bomb: Pillow checks the header before decoding, and warns up to twice the limit.
# Here the warning is an error too, so no such image is ever decoded.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
BAD_IMAGE = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning)


def open_image(path: Path):
    """Image.open with the pixel limit enforced from the header, before any decoding (Pillow only
    warns between one and two times its limit, and a test harness may hide that warning)."""
    image = Image.open(path)
    limit = Image.MAX_IMAGE_PIXELS
    if limit and image.width * image.height > limit:
        image.close()
        raise Image.DecompressionBombError(f"its header claims {image.width}×{image.height} pixels, over the "
                                           f"{limit} an image may have (a decompression bomb?)")
    return image


def shown(path: Path | str) -> str:
    """A file name as messages print it: as is, or quoted with escapes when it holds a newline or
    another unprintable character (one error stays one line)."""
    name = str(path)
    return name if name.isprintable() else repr(name)


def _decode(path: Path, size: int, square_crop: bool) -> np.ndarray:
    try:
        with open_image(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (size, size))
            img = img.convert("RGB")
    except BAD_IMAGE as e:
        raise ArtifactError(f"cannot read image {shown(path)} ({e}); the dataset copy is damaged") from e
    if square_crop and img.width != img.height:
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def decode_images(paths: list[Path], size: int, square_crop: bool = False) -> torch.Tensor:
    """RGB images resized to size × size; ``square_crop`` first takes the central square
    (CelebA's 178×218 faces), so faces keep their proportions."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)

    def fill(i: int) -> None:
        out[i] = _decode(paths[i], size, square_crop)

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(fill, range(len(paths)), chunksize=256):
            pass
    return torch.from_numpy(out)
