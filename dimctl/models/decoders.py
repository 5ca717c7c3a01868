"""Decoders that map a frozen encoder's features back to images (paper §4.1, Table 4).

A decoder is rebuilt from its ``DecoderConfig`` alone, which the decoder artifact's header carries.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DecoderConfig:
    in_features: int  # flattened size of the tap it decodes (y 64, fc 1024, conv 256×4×4 = 4096)
    out_channels: int  # the encoder's in_channels
    image_size: int = 32
    source_layer: str = "y"
    width: float = 1.0  # multiplier of the channels (1.0: the paper's 512-256-128-64); small for tests

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DecoderConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def _up_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    # Each transposed conv doubles the side; no bias under BatchNorm (its shift makes it redundant).
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DCGANDecoder(nn.Module):
    """The paper's 32×32 decoder: linear → 512×4×4; transposed convs → 256×8×8, 128×16×16,
    64×32×32; conv3×3 → C channels; tanh, since images are normalised to [-1, 1]."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        if config.image_size != 32:
            raise ValueError(f"the decoder makes 32×32 images, not {config.image_size}×{config.image_size}")
        if config.in_features < 1 or config.out_channels < 1:
            raise ValueError(f"decoder sizes must be positive, got in_features={config.in_features}, "
                             f"out_channels={config.out_channels}")
        if config.width <= 0:
            raise ValueError(f"decoder width must be positive, got {config.width}")
        self.config = config
        c = [max(1, round(n * config.width)) for n in (512, 256, 128, 64)]
        self.base = c[0]
        self.project = nn.Sequential(
            nn.Linear(config.in_features, c[0] * 4 * 4, bias=False),
            nn.BatchNorm1d(c[0] * 4 * 4),
            nn.ReLU(inplace=True),
        )
        self.upsample = nn.Sequential(_up_bn_relu(c[0], c[1]), _up_bn_relu(c[1], c[2]), _up_bn_relu(c[2], c[3]))
        self.to_image = nn.Sequential(nn.Conv2d(c[3], config.out_channels, kernel_size=3, padding=1), nn.Tanh())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features (N, …) of one tap, flattened here, → images (N, C, 32, 32) in [-1, 1]."""
        x = self.project(features.flatten(1)).view(-1, self.base, 4, 4)
        return self.to_image(self.upsample(x))


def build_decoder(config: DecoderConfig) -> nn.Module:
    return DCGANDecoder(config)
