"""Image encoders with named taps.

An encoder maps normalised images (N, C, H, W) to a dict of named intermediate outputs:
``local`` (the feature map whose locations DIM(L) scores), ``conv``, ``fc`` and ``y`` (the
representation). Probes read ``conv``/``fc``/``y``; the objective reads ``local`` and ``y``.

Every encoder is rebuilt from its ``EncoderConfig`` alone, which the artifact header carries.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    arch: str = "dcgan"
    in_channels: int = 1
    image_size: int = 32
    y_dim: int = 64
    fc_dim: int = 1024

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    # No conv bias under BatchNorm: BN's shift makes it redundant (paper App. A.2).
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DCGANEncoder(nn.Module):
    """The paper's DCGAN-type encoder for 32×32 images (App. A.2).

    conv4×4/2 → 64, 128 (= local, 128×8×8), 256 (= conv, 256×4×4); linear 1024 (= fc); linear → Y.
    """

    taps = ("local", "conv", "fc", "y")

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if config.image_size != 32:
            raise ValueError(f"the dcgan encoder takes 32×32 images, not {config.image_size}×{config.image_size}")
        self.config = config
        self.block1 = _conv_bn_relu(config.in_channels, 64)
        self.block2 = _conv_bn_relu(64, 128)
        self.block3 = _conv_bn_relu(128, 256)
        self.fc = nn.Sequential(
            nn.Linear(256 * 4 * 4, config.fc_dim, bias=False),
            nn.BatchNorm1d(config.fc_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(config.fc_dim, config.y_dim)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        local = self.block2(self.block1(x))
        conv = self.block3(local)
        fc = self.fc(conv.flatten(1))
        y = self.head(fc)
        return {"local": local, "conv": conv, "fc": fc, "y": y}


ENCODERS: dict[str, Callable[[EncoderConfig], nn.Module]] = {
    "dcgan": DCGANEncoder,
}


def build_encoder(config: EncoderConfig) -> nn.Module:
    if config.arch not in ENCODERS:
        raise ValueError(f"unknown encoder architecture {config.arch!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[config.arch](config)


def tap_shapes(config: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of every tap, found by running one blank image through a fresh encoder."""
    encoder = build_encoder(config).eval()
    with torch.no_grad():
        out = encoder(torch.zeros(1, config.in_channels, config.image_size, config.image_size))
    return {name: tuple(t.shape[1:]) for name, t in out.items()}
