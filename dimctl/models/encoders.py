"""Image encoders with named taps.

An encoder maps normalised images (N, C, H, W) to a dict of named intermediate outputs:
``local`` (the feature map whose locations DIM(L) scores), ``conv``, ``fc`` and ``y`` (the
representation). Probes read ``conv``/``fc``/``y``; the objective reads ``local`` and ``y``.

Every encoder is two halves, so objectives can build a global feature from part of the local map:

- ``encode_local(x)`` → the local map (N, C, H', W');
- ``summarise(local)`` → ``{"conv", "fc", "y"}`` computed from that map alone;

and ``forward(x) == {"local": encode_local(x), **summarise(encode_local(x))}``. ``summarise``
accepts any map of the local map's shape, including one in which some locations were set to zero
(masked out): those locations then contribute what a zero feature contributes. Nothing in it looks
at which locations are zero. In training mode its BatchNorm layers normalise with the statistics
of the batch they are given, masked or not. (``summarise`` is ``conv_from_local`` followed by the
fully connected layers; ``encode_conv(x)`` stops at conv, for fine-tuning.)

Architectures (``ENCODERS``), each for one input size (``INPUT_SIZES``):

- ``dcgan`` (32×32): the paper's DCGAN-type encoder (App. A.2). local = 2nd conv (128×8×8).
- ``alexnet`` (64×64): the AlexNet-type encoder of App. A.2 and the authors' ``alex64x64``.
  local = the 3rd conv (384×15×15), conv = the last conv (192×7×7), fc = the 2nd 4096 layer.
- ``resnet`` (32×32): the authors' ``resnet19_32x32``: a stride-2 3×3 stem, then six bottleneck
  blocks (64, 64, 128/2, 128, 256/2, 256 wide, ×4 out). local = after the 4th block (512×8×8),
  conv = after the last (1024×4×4), fc 1024.
- ``folded-resnet`` (32×32) and ``folded-alexnet`` (64×64): the strided-crop encoders of Table 3
  (the authors' ``foldresnet19_32x32`` and ``foldalex64x64``). The image is cut into overlapping
  crops of 1/4 of its side at a stride of 1/8 (8 px at 4 on 32 px, 16 px at 8 on 64 px: a 7×7
  grid); each crop is encoded to one vector by the same network, and the vectors, in grid order,
  form the 7×7 local map (1024 and 192 channels). Each local feature sees only its own crop.
  The top network reads the map: conv = the local map itself (the last convolutional layer, as
  in the authors' code), then fc and Y.

``width`` multiplies every convolution's channel count and ``fc_dim`` sets the fully connected
width (default: the paper's, 1024 or 4096); both exist so tests can build small encoders.

Every encoder is rebuilt from its ``EncoderConfig`` alone, which the artifact header carries.
"""

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dimctl.models.conv import Conv2d

@dataclass(frozen=True)
class EncoderConfig:
    arch: str = "dcgan"
    in_channels: int = 1
    image_size: int = 32
    y_dim: int = 64
    fc_dim: int | None = None  # None: the architecture's paper width (its class's ``fc_default``)
    width: float = 1.0  # multiplier of every conv layer's channels; 1.0 = the paper's
    # torchvision backbones only (models/backbones.py): the ResNet stem, the stage read as the local
    # map (resolved to a name here, so the header rebuilds the same cut) and torchvision's version.
    stem: str | None = None
    local_layer: str | None = None
    library_version: str | None = None

    def __post_init__(self):
        if self.fc_dim is None:  # resolved here, so headers and config.json always hold the number
            object.__setattr__(self, "fc_dim", ENCODERS[self.arch].fc_default if self.arch in ENCODERS else 1024)
        if self.arch.startswith(("torchvision:", "timm:")):
            from dimctl.models import backbones

            backbones.resolve_config(self)

    def to_dict(self) -> dict:
        # The paper's encoders keep the header they always had: the backbone fields only where used.
        return {k: v for k, v in asdict(self).items()
                if v is not None or k not in ("stem", "local_layer", "library_version")}

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    def channels(self, n: int) -> int:
        """The paper's channel count ``n`` scaled by ``width`` (at least 1)."""
        return max(1, round(n * self.width))


class Encoder(nn.Module, ABC):
    """Base class: ``forward`` is ``encode_local`` followed by ``summarise`` (module docstring)."""

    input_size = 32  # the image side the architecture is built for
    fc_default = 1024  # the paper's fully connected width (1024 DCGAN, 4096 AlexNet)

    def __init__(self, config: EncoderConfig):
        super().__init__()
        if self.input_size is not None and config.image_size != self.input_size:  # None: any size (backbones)
            raise ValueError(f"the {config.arch} encoder takes {self.input_size}×{self.input_size} images, "
                             f"not {config.image_size}×{config.image_size}")
        self.config = config

    @abstractmethod
    def encode_local(self, x: torch.Tensor) -> torch.Tensor:
        """The local feature map (N, C, H, W) of images ``x``."""

    @abstractmethod
    def conv_from_local(self, local: torch.Tensor) -> torch.Tensor:
        """The ``conv`` tap from the local map (the first step of ``summarise``)."""

    def fc_input(self, conv: torch.Tensor) -> torch.Tensor:
        """What the fully connected layers read of the conv map: all of it, flattened."""
        return conv.flatten(1)

    def summarise(self, local: torch.Tensor) -> dict[str, torch.Tensor]:
        conv = self.conv_from_local(local)
        fc = self.fc(self.fc_input(conv))
        return {"conv": conv, "fc": fc, "y": self.head(fc)}

    def encode_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Only the ``conv`` tap, skipping the fully connected layers (fine-tuning reads this)."""
        return self.conv_from_local(self.encode_local(x))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        local = self.encode_local(x)
        return {"local": local, **self.summarise(local)}


def _fc_bn_relu(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out, bias=False), nn.BatchNorm1d(n_out), nn.ReLU(inplace=True))


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 4, stride: int = 2, padding: int = 1,
                  pool: bool = False) -> nn.Sequential:
    # No conv bias under BatchNorm: BN's shift makes it redundant (paper App. A.2).
    layers = [Conv2d(c_in, c_out, kernel_size=kernel, stride=stride, padding=padding, bias=False),
              nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
    return nn.Sequential(*layers)


class DCGANEncoder(Encoder):
    """The paper's DCGAN-type encoder for 32×32 images (App. A.2).

    conv4×4/2 → 64, 128 (= local, 128×8×8), 256 (= conv, 256×4×4); linear 1024 (= fc); linear → Y.
    The parameter names (block1/2/3, fc, head) are those of every published dcgan artifact.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        c1, c2, c3 = config.channels(64), config.channels(128), config.channels(256)
        self.block1 = _conv_bn_relu(config.in_channels, c1)
        self.block2 = _conv_bn_relu(c1, c2)
        self.block3 = _conv_bn_relu(c2, c3)
        self.fc = _fc_bn_relu(c3 * 4 * 4, config.fc_dim)
        self.head = nn.Linear(config.fc_dim, config.y_dim)

    def encode_local(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(x))

    def conv_from_local(self, local: torch.Tensor) -> torch.Tensor:
        return self.block3(local)


def _alexnet_convs(config: EncoderConfig, c_in: int) -> tuple[nn.Sequential, nn.Sequential, int]:
    """AlexNet's five 3×3 convs (pad 1, BN, ReLU), max-pool(3, 2) after the 1st, 2nd and 5th:
    (layers up to the 3rd conv, the 4th and 5th, channels out)."""
    c = [config.channels(n) for n in (96, 192, 384, 384, 192)]
    lower = nn.Sequential(
        _conv_bn_relu(c_in, c[0], 3, 1, 1, pool=True),
        _conv_bn_relu(c[0], c[1], 3, 1, 1, pool=True),
        _conv_bn_relu(c[1], c[2], 3, 1, 1),
    )
    upper = nn.Sequential(
        _conv_bn_relu(c[2], c[3], 3, 1, 1),
        _conv_bn_relu(c[3], c[4], 3, 1, 1, pool=True),
    )
    return lower, upper, c[4]


class AlexNetEncoder(Encoder):
    """AlexNet-type encoder for 64×64 images (App. A.2, the authors' ``alex64x64``).

    64 → conv 96, pool → 31 → conv 192, pool → 15 → conv 384 (= local, 384×15×15) → conv 384 →
    conv 192, pool → 7 (= conv, 192×7×7); linear 4096, linear 4096 (= fc); linear → Y.
    """

    input_size = 64
    fc_default = 4096

    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        self.lower, self.upper, c_out = _alexnet_convs(config, config.in_channels)
        self.fc = nn.Sequential(_fc_bn_relu(c_out * 7 * 7, config.fc_dim), _fc_bn_relu(config.fc_dim, config.fc_dim))
        self.head = nn.Linear(config.fc_dim, config.y_dim)

    def encode_local(self, x: torch.Tensor) -> torch.Tensor:
        return self.lower(x)

    def conv_from_local(self, local: torch.Tensor) -> torch.Tensor:
        return self.upper(local)


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1×1 → 3×3 (stride) → 1×1 to 4× the width, each BN (ReLU but the last);
    the sum with the shortcut (a strided 1×1 conv + BN where the shape changes) passes a ReLU."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(
            Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            Conv2d(width, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            Conv2d(width, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.body(x) + residual)


# (width, stride) of the six bottleneck blocks of the authors' resnet19_32x32.
RESNET_BLOCKS = ((64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1))
RESNET_LOCAL_AFTER = 4  # blocks before the local map (the authors' local_idx 4 counts the stem)


def _resnet_layers(config: EncoderConfig, c_in: int) -> tuple[nn.Sequential, nn.Sequential, int]:
    """(stem and the first four blocks, the last two blocks, channels out)."""
    stem_channels = config.channels(64)
    layers: list[nn.Module] = [_conv_bn_relu(c_in, stem_channels, 3, 2, 1)]
    c = stem_channels
    for width, stride in RESNET_BLOCKS:
        layers.append(Bottleneck(c, config.channels(width), stride))
        c = config.channels(width) * Bottleneck.expansion
    split = 1 + RESNET_LOCAL_AFTER
    return nn.Sequential(*layers[:split]), nn.Sequential(*layers[split:]), c


class ResNetEncoder(Encoder):
    """ResNet-type encoder for 32×32 images (the authors' ``resnet19_32x32``, Table 3).

    32 → stem 3×3/2 (64) → 16 → blocks 64, 64 → 128/2 → 8, 128 (= local, 512×8×8) → 256/2 → 4,
    256 (= conv, 1024×4×4); linear 1024 (= fc); linear → Y.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        self.lower, self.upper, c_out = _resnet_layers(config, config.in_channels)
        self.fc = _fc_bn_relu(c_out * 4 * 4, config.fc_dim)
        self.head = nn.Linear(config.fc_dim, config.y_dim)

    def encode_local(self, x: torch.Tensor) -> torch.Tensor:
        return self.lower(x)

    def conv_from_local(self, local: torch.Tensor) -> torch.Tensor:
        return self.upper(local)


GRID = 7  # crops per side: a crop of 1/4 of the side at a stride of 1/8 fits 7 times


def crop_grid(x: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) → (N·49, C, S/4, S/4): the overlapping crops at stride S/8, row by row."""
    n, c, size, _ = x.shape
    # int(): under torch.jit.trace the shape is traced tensors, which F.unfold cannot take as sizes
    # (`dimctl export --format torchscript`); the image size is fixed per encoder anyway.
    crop, stride = int(size) // 4, int(size) // 8
    patches = F.unfold(x, kernel_size=crop, stride=stride)  # (N, C·crop·crop, 49), row-major positions
    return patches.transpose(1, 2).reshape(n * GRID * GRID, c, crop, crop)


def fold_grid(vectors: torch.Tensor, n: int) -> torch.Tensor:
    """(N·49, D, …) crop encodings → the (N, D, 7, 7) map, each vector at its crop's grid position."""
    d = vectors.shape[1]
    return vectors.reshape(n, GRID, GRID, d).permute(0, 3, 1, 2).contiguous()


class FoldedEncoder(Encoder):
    """Strided-crop encoder (Table 3): a crop network turns each of the 7×7 overlapping crops into
    one vector; the vectors form the local map; conv = that map; fc layers and Y read it whole."""

    def __init__(self, config: EncoderConfig, crop_net: nn.Module, c_local: int, fc_layers: int):
        super().__init__(config)
        self.crops = crop_net
        fc = [_fc_bn_relu(c_local * GRID * GRID, config.fc_dim)]
        fc += [_fc_bn_relu(config.fc_dim, config.fc_dim) for _ in range(fc_layers - 1)]
        self.fc = nn.Sequential(*fc)
        self.head = nn.Linear(config.fc_dim, config.y_dim)

    def encode_local(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.crops(crop_grid(x))  # (N·49, D, 1, 1)
        return fold_grid(encoded.flatten(1), x.shape[0])

    def conv_from_local(self, local: torch.Tensor) -> torch.Tensor:
        return local


class FoldedResNetEncoder(FoldedEncoder):
    """``folded-resnet`` (32×32): each 8×8 crop (stride 4) through the resnet19 stem and blocks
    (8 → 4 → 2 → 1) to a 1024 vector; local = conv = 1024×7×7; linear 1024 (= fc); Y."""

    def __init__(self, config: EncoderConfig):
        lower, upper, c_out = _resnet_layers(config, config.in_channels)
        super().__init__(config, nn.Sequential(lower, upper), c_out, fc_layers=1)


class FoldedAlexNetEncoder(FoldedEncoder):
    """``folded-alexnet`` (64×64): each 16×16 crop (stride 8) through AlexNet's convs and pools
    (16 → 7 → 3 → 1) to a 192 vector; local = conv = 192×7×7; linear 4096, 4096 (= fc); Y."""

    input_size = 64
    fc_default = 4096

    def __init__(self, config: EncoderConfig):
        lower, upper, c_out = _alexnet_convs(config, config.in_channels)
        super().__init__(config, nn.Sequential(lower, upper), c_out, fc_layers=2)


ENCODERS: dict[str, type[Encoder]] = {
    "dcgan": DCGANEncoder,
    "alexnet": AlexNetEncoder,
    "resnet": ResNetEncoder,
    "folded-resnet": FoldedResNetEncoder,
    "folded-alexnet": FoldedAlexNetEncoder,
}
INPUT_SIZES: dict[str, int] = {name: cls.input_size for name, cls in ENCODERS.items()}


def build_encoder(config: EncoderConfig) -> Encoder:
    if config.arch.startswith(("torchvision:", "timm:")):
        from dimctl.models.backbones import BackboneEncoder

        return BackboneEncoder(config)
    if config.arch not in ENCODERS:
        raise ValueError(f"unknown encoder architecture {config.arch!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[config.arch](config)


def tap_shapes(config: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of every tap, found by running one blank image through a fresh encoder."""
    encoder = build_encoder(config).eval()
    with torch.no_grad():
        out = encoder(torch.zeros(1, config.in_channels, config.image_size, config.image_size))
    return {name: tuple(t.shape[1:]) for name, t in out.items()}
