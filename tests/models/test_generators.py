"""Gulrajani et al.'s ResNet generator and critic: shapes, widths, where batch norm is."""

import pytest
import torch
from torch import nn

from dimctl.models.generators import CriticConfig, GeneratorConfig, ResidualBlock, build_critic, build_generator


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_makes_images_in_range_and_critic_scores_them(size, channels):
    generator = build_generator(GeneratorConfig(image_size=size, channels=channels, z_dim=16, width=4))
    images = generator(torch.randn(3, 16))
    assert images.shape == (3, channels, size, size)
    assert images.abs().max() <= 1  # tanh: the [-1, 1] range of normalised images
    critic = build_critic(CriticConfig(image_size=size, channels=channels, width=4, out_features=1))
    assert critic(images).shape == (3, 1)


def test_widths_follow_gulrajani_et_al():
    # 32×32: every block `width` channels, three up-blocks from 4×4; 64×64: 8w, 8w, 4w, 2w, w, four up-blocks.
    assert GeneratorConfig(image_size=32).width == 128 and GeneratorConfig(image_size=64).width == 64
    g32 = build_generator(GeneratorConfig(image_size=32, width=8))
    g64 = build_generator(GeneratorConfig(image_size=64, width=8))
    up32 = [b for b in g32.blocks if isinstance(b, ResidualBlock)]
    up64 = [b for b in g64.blocks if isinstance(b, ResidualBlock)]
    assert [b.conv1.conv.out_channels for b in up32] == [8, 8, 8]
    assert [b.conv1.conv.out_channels for b in up64] == [64, 32, 16, 8]
    assert g32.input.out_features == 8 * 4 * 4 and g64.input.out_features == 64 * 4 * 4
    c64 = build_critic(CriticConfig(image_size=64, width=8))
    assert c64.output.in_features == 64 * 4 * 4  # 8w channels on a 4×4 map, flattened


def test_batch_norm_in_the_generator_only():
    generator = build_generator(GeneratorConfig(width=4))
    critic = build_critic(CriticConfig(width=4))
    assert any(isinstance(m, nn.BatchNorm2d) for m in generator.modules())
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm, nn.GroupNorm)) for m in critic.modules())
    # So a critic's score of an image does not depend on the rest of the batch (its penalties are per image).
    x = torch.randn(5, 1, 32, 32)
    torch.testing.assert_close(critic(x[:2]), critic(x)[:2])


def test_eval_mode_samples_do_not_depend_on_the_batch():
    generator = build_generator(GeneratorConfig(z_dim=8, width=4))
    generator.train()
    generator(torch.randn(16, 8))  # give the running statistics some values
    generator.eval()
    z = torch.randn(6, 8)
    torch.testing.assert_close(generator(z[:2]), generator(z)[:2])


def test_config_round_trips_and_unsupported_sizes_are_refused():
    config = GeneratorConfig(image_size=64, channels=3, z_dim=32, width=16)
    assert GeneratorConfig.from_dict({**config.to_dict(), "unknown": 1}) == config
    assert GeneratorConfig.from_dict({"image_size": 32}).width == 128  # the default is resolved, then stored
    with pytest.raises(ValueError, match="32 or 64"):
        build_generator(GeneratorConfig(image_size=48))
    with pytest.raises(ValueError, match="32 or 64"):
        build_critic(CriticConfig(image_size=28))
