"""Every encoder architecture: its taps at the paper's sizes, the encode_local/summarise split the
objectives rely on, masked local maps, and the folded encoders' crop grid."""

import pytest
import torch

from dimctl.models.encoders import (ENCODERS, GRID, INPUT_SIZES, EncoderConfig, build_encoder, crop_grid,
                                    fold_grid, tap_shapes)

# Per-sample tap shapes at the paper's widths (the authors' configs for resnet/folded).
PAPER_TAPS = {
    "dcgan": {"local": (128, 8, 8), "conv": (256, 4, 4), "fc": (1024,), "y": (64,)},
    "alexnet": {"local": (384, 15, 15), "conv": (192, 7, 7), "fc": (4096,), "y": (64,)},
    "resnet": {"local": (512, 8, 8), "conv": (1024, 4, 4), "fc": (1024,), "y": (64,)},
    "folded-resnet": {"local": (1024, 7, 7), "conv": (1024, 7, 7), "fc": (1024,), "y": (64,)},
    "folded-alexnet": {"local": (192, 7, 7), "conv": (192, 7, 7), "fc": (4096,), "y": (64,)},
}


def small(arch: str, channels: int = 3) -> EncoderConfig:
    return EncoderConfig(arch=arch, in_channels=channels, image_size=INPUT_SIZES[arch], width=0.125, fc_dim=16, y_dim=8)


@pytest.mark.parametrize("arch", list(ENCODERS))
def test_paper_sized_taps(arch):
    config = EncoderConfig(arch=arch, in_channels=3, image_size=INPUT_SIZES[arch])
    with torch.device("meta"):  # shapes only: no memory for the 20–60M parameters
        out = build_encoder(config)(torch.empty(2, 3, config.image_size, config.image_size))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == PAPER_TAPS[arch]


@pytest.mark.parametrize("arch", list(ENCODERS))
def test_forward_is_encode_local_then_summarise(arch):
    torch.manual_seed(0)
    config = small(arch)
    encoder = build_encoder(config).eval()
    x = torch.randn(3, 3, config.image_size, config.image_size)
    out = encoder(x)
    local = encoder.encode_local(x)
    summary = encoder.summarise(local)
    assert set(out) == {"local", "conv", "fc", "y"} == {"local", *summary}
    for name in summary:
        torch.testing.assert_close(out[name], summary[name])
    torch.testing.assert_close(encoder.encode_conv(x), out["conv"])
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == tap_shapes(config)


@pytest.mark.parametrize("arch", list(ENCODERS))
def test_summarise_takes_a_masked_local_map(arch):
    torch.manual_seed(0)
    encoder = build_encoder(small(arch)).eval()
    size = INPUT_SIZES[arch]
    local = encoder.encode_local(torch.randn(4, 3, size, size))
    keep = torch.zeros(1, 1, *local.shape[2:])
    keep[..., :2, :3] = 1  # a block of visible locations
    masked = (local * keep).detach()
    out = encoder.summarise(masked)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in encoder.summarise(local).items()}
    assert all(torch.isfinite(t).all() for t in out.values())
    assert not torch.allclose(encoder.summarise(local)["y"], out["y"])  # the hidden locations did count
    # In training mode too (BatchNorm on the batch's statistics), gradients reach the visible locations.
    encoder.train()
    masked.requires_grad_()
    encoder.summarise(masked)["y"].square().sum().backward()
    assert masked.grad.shape == local.shape and masked.grad[..., :2, :3].abs().sum() > 0


def test_dcgan_keeps_the_parameter_names_of_published_artifacts():
    names = list(build_encoder(EncoderConfig()).state_dict())
    assert names[:3] == ["block1.0.weight", "block1.1.weight", "block1.1.bias"]
    assert {n.split(".")[0] for n in names} == {"block1", "block2", "block3", "fc", "head"}
    assert names[-2:] == ["head.weight", "head.bias"] and "fc.0.weight" in names and "fc.1.running_mean" in names
    # A header written before width/fc_dim defaults existed still rebuilds the same network.
    old = EncoderConfig.from_dict({"arch": "dcgan", "in_channels": 1, "image_size": 32, "y_dim": 64, "fc_dim": 1024})
    assert old == EncoderConfig() and old.fc_dim == 1024 and EncoderConfig(arch="alexnet", image_size=64).fc_dim == 4096


@pytest.mark.parametrize("size", [32, 64])
def test_crop_grid_cuts_overlapping_quarter_crops_at_eighth_stride(size):
    x = torch.randn(2, 3, size, size)
    crops = crop_grid(x)
    crop, stride = size // 4, size // 8
    assert crops.shape == (2 * GRID * GRID, 3, crop, crop)
    for n, i, j in [(0, 0, 0), (1, 6, 6), (1, 2, 5), (0, 4, 1)]:
        torch.testing.assert_close(crops[n * 49 + i * 7 + j], x[n, :, i * stride:i * stride + crop, j * stride:j * stride + crop])
    # fold_grid puts crop (i, j)'s vector at map position (i, j).
    vectors = torch.arange(2 * 49, dtype=torch.float32).view(98, 1)
    folded = fold_grid(vectors, 2)
    assert folded.shape == (2, 1, 7, 7) and folded[1, 0, 2, 5].item() == 49 + 2 * 7 + 5


@pytest.mark.parametrize("arch", ["folded-resnet", "folded-alexnet"])
def test_each_folded_local_feature_sees_only_its_own_crop(arch):
    torch.manual_seed(0)
    encoder = build_encoder(small(arch)).eval()
    size = INPUT_SIZES[arch]
    crop, stride = size // 4, size // 8
    x = torch.randn(1, 3, size, size)
    y = x.clone()
    y[..., :, 3 * stride + crop:] = torch.randn_like(y[..., :, 3 * stride + crop:])  # right of column 3's crops
    a, b = encoder.encode_local(x), encoder.encode_local(y)
    torch.testing.assert_close(a[..., :4], b[..., :4])  # columns 0–3 are unchanged
    assert not torch.allclose(a[..., 4:], b[..., 4:])


def test_unknown_arch_and_wrong_size_are_refused():
    with pytest.raises(ValueError, match="known: dcgan, alexnet"):
        build_encoder(EncoderConfig(arch="vgg"))
    with pytest.raises(ValueError, match="alexnet encoder takes 64×64"):
        build_encoder(EncoderConfig(arch="alexnet", image_size=32))
