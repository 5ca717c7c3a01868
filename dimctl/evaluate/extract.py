"""Run a frozen encoder over images in batches and collect chosen taps."""

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from dimctl.data.transforms import normalise

# A pseudo-layer: the normalised input itself, so probes can compare against raw pixels.
PIXELS = "pixels"


@torch.no_grad()
def iter_features(encoder: nn.Module, images: torch.Tensor, layers: list[str], batch_size: int,
                  device: torch.device | str = "cpu") -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield (start index, {layer: float32 array}) for consecutive batches of uint8 ``images``."""
    encoder.eval()
    for start in range(0, images.shape[0], batch_size):
        x = normalise(images[start:start + batch_size].to(device))
        taps = encoder(x)
        taps[PIXELS] = x
        yield start, {layer: taps[layer].float().cpu().numpy() for layer in layers}


def extract_layer(encoder: nn.Module, images: torch.Tensor, layer: str, batch_size: int = 256,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """One tap for all ``images``, flattened to (N, features) float32."""
    parts = [batch[layer] for _, batch in iter_features(encoder, images, [layer], batch_size, device)]
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts).reshape(images.shape[0], -1)
