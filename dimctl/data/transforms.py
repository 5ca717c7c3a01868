"""Batched tensor transforms that run on the training device: no per-image Python.

Images stay uint8 until a batch is drawn; ``normalise`` maps them to [-1, 1] as in the paper.
"""

import torch
import torch.nn.functional as F


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float32 [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (N, C, H, W) images symmetrically to size × size (MNIST's 28 → 32)."""
    h, w = images.shape[-2:]
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(images, (left, size - w - left, top, size - h - top))


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of uint8 images, returned as uint8."""
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad by ``padding`` (zeros) and take one random H × W crop per image, all in one gather."""
    if padding <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=images.device, generator=generator)
    rows = (dy + torch.arange(h, device=images.device)).view(n, 1, h, 1)
    cols = (dx + torch.arange(w, device=images.device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    chans = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
    return padded[batch, chans, rows, cols]


def random_hflip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror a random half of the batch left-to-right."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def augment(images: torch.Tensor, crop_padding: int = 0, hflip: bool = False,
            generator: torch.Generator | None = None) -> torch.Tensor:
    if crop_padding > 0:
        images = random_crop(images, crop_padding, generator)
    if hflip:
        images = random_hflip(images, generator)
    return images
