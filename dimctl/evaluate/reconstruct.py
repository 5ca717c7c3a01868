"""How much of the image a representation keeps: decode a frozen tap back to pixels (paper §4.1,
Table 4).

The encoder is frozen: its features are computed once, in eval mode, and a decoder learns to map
them to the normalised images with MSE. The score is the mean MS-SSIM of the test split's
reconstructions (dimctl.evaluate.msssim) and their MSE in the normalised [-1, 1] space.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import update_bn

from dimctl.data.dataset import ImageDataset
from dimctl.data.order import epoch_order
from dimctl.data.transforms import normalise
from dimctl.errors import UsageError
from dimctl.evaluate.extract import extract_layer
from dimctl.evaluate.msssim import ms_ssim_per_image, ms_ssim_setting
from dimctl.models.decoders import DecoderConfig, build_decoder

SOURCE_LAYERS = ("y", "fc", "conv")
# The paper names no optimiser for its decoder; Adam at 1e-3 (default betas) trains it in a few epochs.
DEFAULT_LR = 1e-3
FEATURE_BATCH = 256  # images per frozen-encoder forward pass; independent of the training batch


@dataclass
class ReconstructProgress:
    step: int
    total_steps: int
    epoch: int  # 0-based
    epoch_done: bool  # this step ended an epoch; train_mse is then that epoch's mean
    train_mse: float  # mean MSE of the current epoch so far
    epochs: int = 0

    @property
    def metrics(self) -> dict[str, float]:
        return {"train_mse": self.train_mse}


@dataclass
class ReconstructionResult:
    decoder: nn.Module
    config: DecoderConfig
    layer: str
    ms_ssim: float  # mean over the test split
    mse: float  # mean over every test pixel, images in [-1, 1]
    train_curve: list[float]  # mean training MSE of each epoch
    steps: int
    originals: torch.Tensor  # the first few test images and their reconstructions, (n, C, H, W) in [-1, 1], CPU
    reconstructions: torch.Tensor


def encode(encoder: nn.Module, images: torch.Tensor, layer: str, device: torch.device | str) -> torch.Tensor:
    """The frozen encoder's ``layer`` for uint8 ``images``, flattened to (N, features), on ``device``."""
    return torch.from_numpy(extract_layer(encoder, images, layer, FEATURE_BATCH, device)).to(device)


def train_decoder(encoder: nn.Module, data: ImageDataset, layer: str = "y", *, epochs: int = 10,
                  batch_size: int = 64, lr: float = DEFAULT_LR, seed: int = 0, device: torch.device | str = "cpu",
                  samples: int = 8, decoder: nn.Module | None = None, width: float = 1.0,
                  on_progress: Callable[[ReconstructProgress], None] | None = None) -> ReconstructionResult:
    """Train the paper's decoder on ``layer`` of the frozen ``encoder`` and score it on the test split.

    ``decoder``: start from this decoder (one an autoencoder baseline trained with the encoder)
    instead of a fresh one. ``epochs=0`` scores the decoder as it is: a fresh one is a floor to
    compare against; a given one has its BatchNorm statistics recomputed on the frozen features.
    ``width``: a fresh decoder's channel multiplier (1: the paper's 512-256-128-64).
    """
    if layer not in SOURCE_LAYERS:
        raise UsageError(f"cannot decode layer {layer!r}; choose from {', '.join(SOURCE_LAYERS)}")
    if epochs < 0 or batch_size < 2 or lr <= 0:
        raise UsageError(f"need epochs >= 0, batch size >= 2 (BatchNorm) and lr > 0; "
                         f"got {epochs}, {batch_size}, {lr}")
    n = data.train_images.shape[0]
    if n < batch_size:
        raise UsageError(f"{data.name} has {n} training images, fewer than one batch of {batch_size}; lower --batch-size")
    ms_ssim_setting(data.image_size)  # fail before the work on a size without a setting

    decoder_given = decoder is not None
    train_features = encode(encoder, data.train_images, layer, device)
    test_features = encode(encoder, data.test_images, layer, device)
    torch.manual_seed(seed)  # the fresh decoder's initialisation (and, either way, the data order's draws)
    if decoder is None:
        config = DecoderConfig(in_features=train_features.shape[1], out_channels=data.channels,
                               image_size=data.image_size, source_layer=layer, width=width)
        decoder = build_decoder(config)
    else:
        config = decoder.config
        if config.in_features != train_features.shape[1]:
            raise UsageError(f"the decoder reads {config.in_features} features, but {layer} has {train_features.shape[1]}")
    decoder = decoder.to(device)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=lr)
    images = data.train_images.to(device)

    steps_per_epoch = n // batch_size  # drop the ragged tail: a batch of one would break BatchNorm
    total_steps = epochs * steps_per_epoch
    curve: list[float] = []
    decoder.train()
    for epoch in range(epochs):
        order = epoch_order(n, seed, epoch, device)
        total = 0.0
        for position in range(steps_per_epoch):
            index = order[position * batch_size:(position + 1) * batch_size]
            loss = F.mse_loss(decoder(train_features[index]), normalise(images[index]))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item()
            done = position + 1
            if done == steps_per_epoch:
                curve.append(total / steps_per_epoch)
            if on_progress is not None:
                on_progress(ReconstructProgress(epoch * steps_per_epoch + done, total_steps, epoch,
                                                done == steps_per_epoch, total / done, epochs))

    if total_steps or decoder_given:
        # BatchNorm's running averages trail the weights (and, from a frozen encoder whose features
        # are tiny, start far off — a random-init encoder's y has a std near 0.003): recompute them
        # exactly for the final weights over the training batches, so eval mode matches training.
        # A decoder trained with its encoder saw train-mode features; the frozen ones are eval-mode.
        update_bn([train_features[i:i + batch_size] for i in range(0, steps_per_epoch * batch_size, batch_size)],
                  decoder)
    ms_ssim, mse = evaluate_decoder(decoder, test_features, data.test_images)
    originals = normalise(data.test_images[:samples]).cpu()
    with torch.no_grad():
        reconstructions = decoder(test_features[:samples]).cpu()
    return ReconstructionResult(decoder, config, layer, ms_ssim, mse, curve, total_steps, originals, reconstructions)


@torch.no_grad()
def evaluate_decoder(decoder: nn.Module, features: torch.Tensor, images: torch.Tensor,
                     batch_size: int = FEATURE_BATCH) -> tuple[float, float]:
    """(mean MS-SSIM, mean squared error) of ``decoder(features)`` against uint8 ``images``."""
    if images.shape[0] == 0:
        raise UsageError("the test split is empty; nothing to score the decoder on")
    decoder.eval()
    device = features.device
    ms_ssim_sum, squared_error_sum = 0.0, 0.0
    for start in range(0, images.shape[0], batch_size):
        target = normalise(images[start:start + batch_size].to(device))
        output = decoder(features[start:start + batch_size])
        ms_ssim_sum += ms_ssim_per_image(output, target).sum().item()
        squared_error_sum += (output - target).pow(2).sum().item()
    return ms_ssim_sum / images.shape[0], squared_error_sum / images.numel()
