"""Input occlusion for the global feature (paper §4.3, App. A.7).

The global feature is computed from an occluded copy of the image, the local features from the
full image. The image is cut into a grid of square blocks at least as large as a local feature's
receptive field; each block is hidden at random, under the constraint that at least one block
stays visible and at least one is hidden. A block that size guarantees at least one local feature
fully observed and at least one fully unobserved, which is the paper's stated aim.
"""

import torch
from torch import nn


def receptive_field(encoder: nn.Module, channels: int, image_size: int) -> int:
    """Side of the input window that one central location of the ``local`` map sees, found by
    back-propagating from it (works for any architecture; random weights, so a few random inputs)."""
    encoder = encoder.eval()
    seen = torch.zeros(image_size, image_size, dtype=torch.bool)
    for seed in range(3):
        x = torch.randn(2, channels, image_size, image_size, generator=torch.Generator().manual_seed(seed),
                        requires_grad=True)
        local = encoder.encode_local(x)
        h, w = local.shape[-2:]
        local[:, :, h // 2, w // 2].abs().sum().backward()
        seen |= x.grad.abs().sum((0, 1)) > 0
    rows, cols = seen.any(1).nonzero(), seen.any(0).nonzero()
    return int(max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))


def block_size(image_size: int, field: int) -> int:
    """The smallest divisor of the image side that covers the receptive field and leaves at least
    two blocks (the image's half when the field is larger than that)."""
    for size in range(1, image_size // 2 + 1):
        if image_size % size == 0 and size >= field:
            return size
    return image_size // 2


def occlusion_masks(n: int, image_size: int, block: int, device: torch.device,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, 1, S, S) float masks, 1 where visible. Each block is hidden with probability ½; draws with
    every block visible or every block hidden are redrawn (uniform over the allowed patterns)."""
    grid = image_size // block
    blocks = torch.rand(n, grid * grid, generator=generator, device=device) < 0.5
    while True:
        hidden = blocks.sum(1)
        bad = (hidden == 0) | (hidden == grid * grid)
        if not bad.any():
            break
        blocks[bad] = torch.rand(int(bad.sum()), grid * grid, generator=generator, device=device) < 0.5
    visible = (~blocks).float().view(n, 1, grid, grid)
    return visible.repeat_interleave(block, 2).repeat_interleave(block, 3)


def occlude(x: torch.Tensor, block: int) -> torch.Tensor:
    """Normalised images with hidden blocks set to 0 (mid-grey in [-1, 1])."""
    return x * occlusion_masks(x.shape[0], x.shape[-1], block, x.device).to(x.dtype)
