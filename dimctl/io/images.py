"""Images as PNG files, written atomically: one image, a grid, or rows of images.

Every PNG dimctl writes goes through ``save_png``: a grey (L) PNG for 1-channel images, RGB for
3 (a grey PNG is a third of the size of an RGB one with equal channels). Grids have 2-pixel grey
gaps and round to uint8 as torchvision's ``save_image`` does.
"""

import math
from pathlib import Path

import torch

from dimctl.io.atomic import atomic_path

GRID_PADDING = 2  # pixels between images
GRID_PAD_VALUE = 0.5  # grey: visible between dark-background digits and bright photos alike


def save_png(path: str | Path, image: torch.Tensor) -> Path:
    """One uint8 image (C, H, W), C = 1 or 3, as a PNG at ``path``."""
    from PIL import Image

    array = image.detach().cpu().permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[:, :, 0], "L") if array.shape[2] == 1 else Image.fromarray(array, "RGB")
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")  # the temporary name ends in .tmp: name the format
    return Path(path)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of the most nearly square grid for n images."""
    columns = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / columns), columns


def save_grid(path: str | Path, images: torch.Tensor, columns: int | None = None) -> Path:
    """uint8 images (N, C, H, W) as one PNG grid, ``columns`` wide (default: ``grid_shape``)."""
    return _save_grid01(path, images.float() / 255, columns or grid_shape(images.shape[0])[1], images.shape[1])


def save_image_rows(path: str | Path, rows: list[torch.Tensor]) -> Path:
    """One row per (n, C, H, W) batch of images in [-1, 1], all rows of the same n; a PNG at ``path``.

    The PNG is (rows·H + (rows+1)·2) pixels high and (n·W + (n+1)·2) wide.
    """
    if not rows or any(r.shape != rows[0].shape for r in rows):
        raise ValueError(f"need rows of equal shape, got {[tuple(r.shape) for r in rows]}")
    images = torch.cat([r.detach().float().cpu() for r in rows]).add(1).div(2).clamp(0, 1)
    return _save_grid01(path, images, rows[0].shape[0], images.shape[1])


def _save_grid01(path: str | Path, images: torch.Tensor, columns: int, channels: int) -> Path:
    # Imported here: torchvision costs ~2 s at start-up, which every command would pay.
    from torchvision.utils import make_grid

    grid = make_grid(images.cpu(), nrow=columns, padding=GRID_PADDING, pad_value=GRID_PAD_VALUE)  # 3 channels
    return save_png(path, grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)[:channels])
