"""Image grids as PNG files, written atomically."""

from pathlib import Path

import torch

from dimctl.io.atomic import atomic_path

GRID_PADDING = 2  # pixels between images
GRID_PAD_VALUE = 0.5  # grey: visible between dark-background digits and bright photos alike


def save_image_rows(path: str | Path, rows: list[torch.Tensor]) -> Path:
    """One row per (n, C, H, W) batch of images in [-1, 1], all rows of the same n; a PNG at ``path``.

    The PNG is (rows·H + (rows+1)·2) pixels high and (n·W + (n+1)·2) wide; 1-channel images come out grey.
    """
    if not rows or any(r.shape != rows[0].shape for r in rows):
        raise ValueError(f"need rows of equal shape, got {[tuple(r.shape) for r in rows]}")
    # Imported here: torchvision costs ~2 s at start-up, which every command would pay.
    from torchvision.utils import save_image

    images = torch.cat([r.detach().float().cpu() for r in rows]).add(1).div(2).clamp(0, 1)
    with atomic_path(path) as tmp:
        # The temporary name ends in .tmp, so name the format rather than let save_image guess it.
        save_image(images, tmp, format="PNG", nrow=rows[0].shape[0], padding=GRID_PADDING, pad_value=GRID_PAD_VALUE)
    return Path(path)
