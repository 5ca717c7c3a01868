"""The ResNet generator and critic of Gulrajani et al. (2017, "Improved training of Wasserstein
GANs"), which the paper's App. A.9 uses for its generator, its implicit-prior-matching encoder and
both GAN baselines ("identical architectures").

Two variants, one per image size:

- 32×32 (their ``gan_cifar_resnet.py``; every layer ``width`` channels, 128 there):
  generator z → linear 4·4·w → three up-blocks (4 → 8 → 16 → 32) → BN, ReLU, conv3×3 → C, tanh;
  critic: an optimised first down-block (conv, ReLU, conv, mean-pool; shortcut mean-pool, 1×1 conv)
  → one down-block → two plain blocks → ReLU → spatial mean → linear.
- 64×64 (their ``gan_64x64.py`` "good" ResNet; ``width`` = their ``dim``, 64 there):
  generator z → linear 4·4·8w → up-blocks 8w → 8w → 4w → 2w → w (4 → 64) → BN, ReLU, conv3×3, tanh;
  critic: conv3×3 → w, down-blocks w → 2w → 4w → 8w → 8w (64 → 4), flatten, linear.

A residual block is ``shortcut(x) + conv2(act(norm(conv1(act(norm(x))))))``. Upsampling is
nearest-neighbour followed by the convolution (their ``UpsampleConv``); downsampling is a
convolution followed by 2×2 mean pooling (``ConvMeanPool``); a shortcut is a 1×1 convolution
resampled the same way whenever shape changes, the identity otherwise.

Batch norm is in the generator only (App. A.9: "Batch norm was used on the generator, but not on
the discriminator"): the critic's penalties and the encoder's per-sample outputs must not depend
on which other images share the batch.

``arch="dcgan"`` is the other generator: the DCGAN generator BiGAN trains (``dimctl pretrain
--method bigan``; the paper's "generator from DCGAN", as Donahue et al. 2016), the same network as
the 32×32 decoder of models/decoders.py with z as its input; its ``width`` is the channels of the
last up-block (64 in DCGAN: 512-256-128-64).

Both networks are rebuilt from a config dataclass alone; the generator artifact's header carries it.
``fixed_noise`` and ``generate_images`` sample a generator (training grids, `dimctl generate sample`).
"""

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dimctl.models.decoders import DCGANDecoder, DecoderConfig

IMAGE_SIZES = (32, 64)
# Gulrajani et al.'s channel widths: DIM_G = DIM_D = 128 at 32×32, dim = 64 at 64×64.
DEFAULT_WIDTHS = {32: 128, 64: 64}
DEFAULT_Z_DIM = 128
DCGAN_WIDTH = 64  # channels of the DCGAN generator's last up-block


@dataclass(frozen=True)
class GeneratorConfig:
    image_size: int = 32
    channels: int = 1  # of the images made (the dataset's)
    z_dim: int = DEFAULT_Z_DIM  # input noise z ~ N(0, I)
    width: int | None = None  # None: Gulrajani et al.'s (DEFAULT_WIDTHS)
    arch: str = "resnet"

    def __post_init__(self):
        if self.width is None:  # resolved here, so headers and config.json always hold the number
            default = DCGAN_WIDTH if self.arch == "dcgan" else DEFAULT_WIDTHS.get(self.image_size, 64)
            object.__setattr__(self, "width", default)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class CriticConfig:
    image_size: int = 32
    channels: int = 1
    width: int | None = None
    out_features: int = 1  # 1: a GAN critic's score, or the IE encoder's 1-D output

    def __post_init__(self):
        if self.width is None:
            object.__setattr__(self, "width", DEFAULT_WIDTHS.get(self.image_size, 64))

    def to_dict(self) -> dict:
        return asdict(self)


def _check_sizes(image_size: int, channels: int, width: int) -> None:
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"the ResNet generator and critic are built for {' or '.join(map(str, IMAGE_SIZES))}-pixel "
                         f"images, not {image_size}")
    if channels < 1 or width < 1:
        raise ValueError(f"channels and width must be positive, got {channels} and {width}")


class _Upsample(nn.Module):
    """Nearest-neighbour 2× upsampling, then a convolution (Gulrajani et al.'s UpsampleConv)."""

    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _ConvMeanPool(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(x), 2)


class _MeanPoolConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.avg_pool2d(x, 2))


class ResidualBlock(nn.Module):
    """``resample``: "up" (generator), "down" (critic) or None. ``batch_norm`` only in the generator."""

    def __init__(self, c_in: int, c_out: int, resample: str | None, batch_norm: bool):
        super().__init__()
        if resample == "up":
            self.conv1, self.conv2 = _Upsample(c_in, c_out, 3), nn.Conv2d(c_out, c_out, 3, padding=1)
            self.shortcut = _Upsample(c_in, c_out, 1)
        elif resample == "down":
            self.conv1, self.conv2 = nn.Conv2d(c_in, c_in, 3, padding=1), _ConvMeanPool(c_in, c_out, 3)
            self.shortcut = _ConvMeanPool(c_in, c_out, 1)
        elif resample is None:
            self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_out, c_out, 3, padding=1)
            self.shortcut = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        else:
            raise ValueError(f"resample must be 'up', 'down' or None, not {resample!r}")
        mid = c_out if resample == "up" or resample is None else c_in
        self.norm1 = nn.BatchNorm2d(c_in) if batch_norm else nn.Identity()
        self.norm2 = nn.BatchNorm2d(mid) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        h = self.conv2(F.relu(self.norm2(h)))
        return self.shortcut(x) + h


class _FirstCriticBlock(nn.Module):
    """The 32×32 critic's first block (Gulrajani et al.'s OptimizedResBlockDisc1): no activation
    before the first convolution, since its input is the image itself."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = _ConvMeanPool(c_out, c_out, 3)
        self.shortcut = _MeanPoolConv(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv2(F.relu(self.conv1(x)))


class ResNetGenerator(nn.Module):
    """z (N, z_dim) → images (N, C, S, S) in [-1, 1]."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        _check_sizes(config.image_size, config.channels, config.width)
        if config.z_dim < 1:
            raise ValueError(f"z_dim must be positive, got {config.z_dim}")
        self.config = config
        w = config.width
        widths = [w] * 4 if config.image_size == 32 else [8 * w, 8 * w, 4 * w, 2 * w, w]
        self.input = nn.Linear(config.z_dim, widths[0] * 4 * 4)
        self.blocks = nn.Sequential(*(ResidualBlock(a, b, "up", batch_norm=True) for a, b in zip(widths, widths[1:])))
        self.output = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.Conv2d(widths[-1], config.channels, 3, padding=1),
                                    nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.input(z).view(z.shape[0], -1, 4, 4)
        return self.output(self.blocks(h))


class ResNetCritic(nn.Module):
    """Images (N, C, S, S) in [-1, 1] → (N, out_features). No normalisation layers."""

    def __init__(self, config: CriticConfig):
        super().__init__()
        _check_sizes(config.image_size, config.channels, config.width)
        self.config = config
        w = config.width
        if config.image_size == 32:
            self.blocks = nn.Sequential(
                _FirstCriticBlock(config.channels, w),  # 16×16
                ResidualBlock(w, w, "down", batch_norm=False),  # 8×8
                ResidualBlock(w, w, None, batch_norm=False),
                ResidualBlock(w, w, None, batch_norm=False),
                nn.ReLU(),
            )
            self.output = nn.Linear(w, config.out_features)
        else:
            widths = [w, 2 * w, 4 * w, 8 * w, 8 * w]
            self.blocks = nn.Sequential(
                nn.Conv2d(config.channels, w, 3, padding=1),
                *(ResidualBlock(a, b, "down", batch_norm=False) for a, b in zip(widths, widths[1:])),  # 64 → 4
            )
            self.output = nn.Linear(8 * w * 4 * 4, config.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x)
        # 32×32: mean over the 8×8 map (their reduce_mean); 64×64: the flattened 4×4 map.
        h = h.mean(dim=(2, 3)) if self.config.image_size == 32 else h.flatten(1)
        return self.output(h)


class DCGANGenerator(DCGANDecoder):
    """z (N, z_dim) → 32×32 images in [-1, 1]: linear → 8w×4×4, transposed convs to 4w, 2w, w
    (BatchNorm + ReLU), conv3×3, tanh (w = ``width``, 64 in DCGAN)."""

    def __init__(self, config: GeneratorConfig):
        if config.image_size != 32:
            raise ValueError(f"the DCGAN generator makes 32×32 images, not {config.image_size}×{config.image_size}")
        super().__init__(DecoderConfig(in_features=config.z_dim, out_channels=config.channels, image_size=32,
                                       source_layer="z", width=config.width / DCGAN_WIDTH))
        self.generator_config = config


GENERATORS = {"resnet": ResNetGenerator, "dcgan": DCGANGenerator}


def build_generator(config: GeneratorConfig) -> nn.Module:
    if config.arch not in GENERATORS:
        raise ValueError(f"unknown generator architecture {config.arch!r}; known: {', '.join(GENERATORS)}")
    return GENERATORS[config.arch](config)


def build_critic(config: CriticConfig) -> ResNetCritic:
    return ResNetCritic(config)


def fixed_noise(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The same z for a given (n, z_dim, seed) on every machine: drawn on the CPU by its own generator."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate_images(generator: nn.Module, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 images (N, C, H, W), the form datasets are held in, from ``z`` in eval mode."""
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    out = []
    for start in range(0, z.shape[0], batch_size):
        x = generator(z[start:start + batch_size].to(device))
        out.append(x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu())
    generator.train(was_training)
    return torch.cat(out) if out else torch.zeros((0,), dtype=torch.uint8)
