"""Decode lists of image files (JPEG, PNG, …) into one uint8 (N, 3, S, S) tensor.

For the datasets that ship as loose files (Tiny ImageNet, CelebA). Files are decoded by a small
thread pool: Pillow releases the GIL while it decodes, so the cores share the work. JPEGs are
decoded at a reduced scale when that is still at least the target size (Pillow's ``draft``:
the decoder skips detail the resize would throw away).
"""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dimctl.errors import ArtifactError


def _decode(path: Path, size: int, square_crop: bool) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (size, size))
            img = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ArtifactError(f"cannot read image {path} ({e}); the dataset copy is damaged") from e
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
