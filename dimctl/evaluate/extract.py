"""Run a frozen encoder over images in batches and collect chosen taps."""

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from dimctl import progress
from dimctl.data.transforms import normalise

# A pseudo-layer: the normalised input itself, so probes can compare against raw pixels.
PIXELS = "pixels"


def iter_features(encoder: nn.Module, images: torch.Tensor, layers: list[str], batch_size: int,
                  device: torch.device | str = "cpu", precision: str = "fp32") -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield (start index, {layer: float32 array}) for consecutive batches of uint8 ``images``.
    On the CPU in fp32 the arrays share memory with the encoder's fresh outputs (no copy).
    ``precision`` "bf16" runs the encoder under bf16 autocast; its taps still come as float32."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, not {precision!r}")
    encoder.eval()
    device_type = torch.device(device).type
    with progress.activity("encode", total=images.shape[0], unit="img") as task:
        for start in range(0, images.shape[0], batch_size):
            with torch.inference_mode():
                x = normalise(images[start:start + batch_size].to(device))
                with (torch.autocast(device_type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()):
                    taps = encoder(x)
                taps[PIXELS] = x
                batch = {layer: _array(taps[layer]) for layer in layers}
            yield start, batch
            task.update(min(start + batch_size, images.shape[0]))


def _array(t: torch.Tensor) -> np.ndarray:
    if t.dtype != torch.float32:
        t = t.float()
    return t.numpy() if t.device.type == "cpu" else t.cpu().numpy()


def extract_layer(encoder: nn.Module, images: torch.Tensor, layer: str, batch_size: int = 256,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """One tap for all ``images``, flattened to (N, features) float32."""
    parts = [batch[layer] for _, batch in iter_features(encoder, images, [layer], batch_size, device)]
    if not parts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(parts).reshape(images.shape[0], -1)
