import pytest
import torch

from dimctl.models.decoders import DecoderConfig, build_decoder
from dimctl.models.encoders import EncoderConfig, tap_shapes


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("layer,features", [("y", 64), ("fc", 1024), ("conv", 4096)])
def test_decodes_each_tap_to_images_in_range(channels, layer, features):
    decoder = build_decoder(DecoderConfig(in_features=features, out_channels=channels, source_layer=layer))
    out = decoder(torch.randn(2, features))
    assert out.shape == (2, channels, 32, 32)
    assert out.abs().max() <= 1  # tanh: the [-1, 1] range of normalised images


def test_takes_the_encoders_unflattened_taps():
    shapes = tap_shapes(EncoderConfig())
    assert shapes["conv"] == (256, 4, 4)
    decoder = build_decoder(DecoderConfig(in_features=256 * 4 * 4, out_channels=1, source_layer="conv")).eval()
    assert decoder(torch.randn(3, *shapes["conv"])).shape == (3, 1, 32, 32)


def test_config_round_trips_and_unsupported_sizes_are_refused():
    config = DecoderConfig(in_features=64, out_channels=3, source_layer="y")
    assert DecoderConfig.from_dict({**config.to_dict(), "unknown": 1}) == config
    with pytest.raises(ValueError, match="32×32"):
        build_decoder(DecoderConfig(in_features=64, out_channels=3, image_size=64))
