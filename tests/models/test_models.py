import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dimctl.models.encoders import EncoderConfig, build_encoder, tap_shapes
from dimctl.models.heads import LocalEmbedding, VectorEmbedding, dot_scores


@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_encoder_taps(channels):
    encoder = build_encoder(EncoderConfig(in_channels=channels))
    out = encoder(torch.randn(5, channels, 32, 32))
    assert out["local"].shape == (5, 128, 8, 8)
    assert out["conv"].shape == (5, 256, 4, 4)
    assert out["fc"].shape == (5, 1024)
    assert out["y"].shape == (5, 64)
    assert tap_shapes(EncoderConfig(in_channels=channels))["y"] == (64,)


def test_encoder_rejects_other_sizes_and_archs():
    with pytest.raises(ValueError):
        build_encoder(EncoderConfig(image_size=64))
    with pytest.raises(ValueError):
        build_encoder(EncoderConfig(arch="vgg"))


class _CountMatmuls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in ("mm", "bmm", "addmm", "matmul", "baddbmm"):
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_dot_scores_is_one_matrix_product_and_matches_pairwise():
    torch.manual_seed(0)
    g, l = torch.randn(6, 16), torch.randn(6, 16, 10)
    with _CountMatmuls() as counter:
        scores = dot_scores(g, l)
    assert counter.count == 1
    assert scores.shape == (6, 6, 10)
    for i in range(6):
        for j in range(6):
            for m in range(10):
                assert scores[i, j, m].item() == pytest.approx((g[i] @ l[j, :, m]).item() / 4.0, abs=1e-5)


def test_embeddings_shapes():
    assert LocalEmbedding(128, 32)(torch.randn(3, 128, 8, 8)).shape == (3, 32, 64)
    assert VectorEmbedding(64, 32)(torch.randn(3, 64)).shape == (3, 32)
