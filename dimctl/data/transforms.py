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


def resize(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Bilinear resize of uint8 images, returned as uint8. Works ``chunk`` images at a time, so
    the float copies stay small however many images there are (STL-10's 100,000)."""
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8, device=images.device)
    for start in range(0, images.shape[0], chunk):
        part = F.interpolate(images[start:start + chunk].float(), size=(size, size), mode="bilinear",
                             align_corners=False, antialias=True)
        out[start:start + chunk] = part.round_().clamp_(0, 255)
    return out


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


def random_crop_to(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random size × size window of each (larger) image, all in one gather (STL-10's random
    64×64 crops of its 96×96 images, paper §4)."""
    n, _, h, w = images.shape
    if size > min(h, w):
        raise ValueError(f"cannot crop {size}×{size} windows out of {h}×{w} images")
    if size == h == w:
        return images
    dy = torch.randint(0, h - size + 1, (n, 1), device=images.device, generator=generator)
    dx = torch.randint(0, w - size + 1, (n, 1), device=images.device, generator=generator)
    rows = (dy + torch.arange(size, device=images.device)).view(n, 1, size, 1)
    cols = (dx + torch.arange(size, device=images.device)).view(n, 1, 1, size)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    chans = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
    return images[batch, chans, rows, cols]


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central size × size window of (N, C, H, W) images (the evaluation view of random crops)."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def augment(images: torch.Tensor, crop_padding: int = 0, hflip: bool = False,
            generator: torch.Generator | None = None, crop_size: int = 0) -> torch.Tensor:
    """``crop_size``: random crop_size × crop_size windows first (0: off); then ``crop_padding``:
    pad-and-crop jitter at that size; then random horizontal flips."""
    if crop_size > 0:
        images = random_crop_to(images, crop_size, generator)
    if crop_padding > 0:
        images = random_crop(images, crop_padding, generator)
    if hflip:
        images = random_hflip(images, generator)
    return images
