"""dimctl from Python: a trained encoder as an ``nn.Module``, with the preprocessing it was trained
with, and feature files as numpy arrays.

    import dimctl

    encoder = dimctl.load_encoder("runs/dim-l/encoder.safetensors")    # eval mode, on the CPU
    x = encoder.preprocess(images)          # PIL images, uint8 or [0, 1] float arrays → what it saw in training
    y = encoder(x)                          # the representation Y, (N, y_dim)
    taps = encoder.features(x, layers=("conv", "fc", "y"))
    features = dimctl.load_features("features.h5")              # layers="y": only Y (and the labels) read
    features["train"]["y"], features["test"]["labels"]

``import dimctl`` stays light (no torch) until one of these is used: the package reaches them
through a lazy attribute.
"""

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from dimctl.data.registry import fit_to_size
from dimctl.data.transforms import normalise
from dimctl.errors import UsageError
from dimctl.io.artifacts import load_encoder as _load_encoder_artifact
from dimctl.io.feature_reader import Features, read_features

__all__ = ["Encoder", "load_encoder", "load_features"]


class Encoder(nn.Module):
    """A published encoder: ``forward(x)`` is Y; ``features`` gives any of its taps (local, conv,
    fc, y). ``config`` rebuilds it, ``dataset`` describes what it was trained on, ``sha256`` names
    the file (as feature files and results do)."""

    def __init__(self, network: nn.Module, config, dataset: dict, sha256: str, path: Path):
        super().__init__()
        self.network = network
        self.config, self.dataset, self.sha256, self.path = config, dataset, sha256, path
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)["y"]

    def features(self, x: torch.Tensor, layers: tuple[str, ...] = ("conv", "fc", "y")) -> dict[str, torch.Tensor]:
        taps = self.network(x)
        unknown = [layer for layer in layers if layer not in taps]
        if unknown:
            raise KeyError(f"no layer {unknown[0]!r}; the encoder has {', '.join(taps)}")
        return {layer: taps[layer] for layer in layers}

    def preprocess(self, images) -> torch.Tensor:
        """Images → the normalised float32 batch (N, C, S, S) the encoder saw in training, on its device.

        Takes a PIL image or a list of them; a torch tensor, channels first, (C, H, W) or
        (N, C, H, W); or a numpy array as images are read, (H, W), (H, W, C), (N, H, W) or
        (N, H, W, C). uint8 values are 0–255; floats are taken as 0–1 (torchvision's ToTensor).
        Sizes are fitted as the encoder's dataset was: an image folder's PIL images resized
        bilinearly, tensor datasets zero-padded from 28 to 32 (MNIST's way) or resized."""
        size, channels = self.config.image_size, self.config.in_channels
        # A Hugging Face dataset's images are decoded as an image folder's files are (data/hf.py).
        from_folder = self.dataset.get("name") == "folder" or str(self.dataset.get("name", "")).startswith("hf:")
        batch = _as_uint8_batch(images, channels, size if from_folder else None)
        if batch.shape[1] != channels:
            raise ValueError(f"the encoder takes {channels}-channel images; these have {batch.shape[1]}")
        device = next(self.network.parameters()).device
        return normalise(fit_to_size(batch, size).to(device))


def load_encoder(path: str | Path, device: str | torch.device = "cpu") -> Encoder:
    """The encoder of a ``dimctl pretrain`` (or ``finetune``) run, in eval mode, on ``device``."""
    artifact = _load_encoder_artifact(path, device=device)
    return Encoder(artifact.encoder, artifact.config, artifact.dataset, artifact.sha256, artifact.path)


def load_features(path: str | Path, layers: str | Iterable[str] | None = None) -> Features:
    """A feature file of ``dimctl extract``, checked: ``features[split][layer]`` (split: train,
    test; layer: the extracted ones and ``labels``) are numpy arrays; ``.encoder`` and
    ``.dataset`` say where they came from.

    ``layers`` ("y", "conv,y" or ["conv", "y"]) reads only those layers (and the labels) from disk,
    as `dimctl probe --layer` does: a file's conv layer can be gigabytes. ``.available`` lists every
    layer the file holds; a layer it lacks is a ``dimctl.errors.UsageError`` naming them."""
    if layers is None:
        return read_features(path)
    wanted = [name for name in (layers.split(",") if isinstance(layers, str) else layers) if name != "labels"]

    def select(available: list[str]) -> list[str]:
        missing = [name for name in wanted if name not in available]
        if missing:
            raise UsageError(f"no layer {missing[0]!r} in {path}; it has {', '.join(available)}")
        return list(dict.fromkeys(wanted))

    return read_features(path, select=select)


def _as_uint8_batch(images, channels: int, pil_size: int | None) -> torch.Tensor:
    """(N, C, H, W) uint8; PIL images converted to the encoder's mode (and resized to
    ``pil_size`` with PIL's bilinear filter, as an image folder is loaded, when given)."""
    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], Image.Image):
        arrays = []
        for img in images:
            img = img.convert("L" if channels == 1 else "RGB")
            if pil_size is not None and img.size != (pil_size, pil_size):
                img = img.resize((pil_size, pil_size), Image.Resampling.BILINEAR)
            arrays.append(np.asarray(img, dtype=np.uint8))
        images = np.stack(arrays)
    if isinstance(images, np.ndarray):  # channels last, as images are read
        array = images
        if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] not in (1, 3) and channels == 1):
            array = array[..., None]  # (H, W) or a batch (N, H, W) of grey images
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ValueError(f"cannot read a numpy array of shape {images.shape} as images")
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
    elif isinstance(images, torch.Tensor):  # channels first, as torchvision gives them
        tensor = images.detach().cpu()
        if tensor.dim() == 3:
            tensor = tensor[None]
        if tensor.dim() != 4:
            raise ValueError(f"cannot read a tensor of shape {tuple(images.shape)} as images (N, C, H, W)")
    else:
        raise TypeError(f"preprocess takes PIL images, numpy arrays or torch tensors, not {type(images).__name__}")
    if tensor.is_floating_point():
        tensor = (tensor * 255).round_().clamp_(0, 255)
    return tensor.to(torch.uint8)
