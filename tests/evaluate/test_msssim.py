import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim as library_ms_ssim

from dimctl.evaluate.msssim import (MS_SSIM_SETTINGS, STANDARD_WEIGHTS, describe_setting, ms_ssim_per_image,
                                    ms_ssim_setting, multiscale_ssim)


def reference_ms_ssim(x: torch.Tensor, y: torch.Tensor, win_size: int, sigma: float, weights, data_range: float = 1.0):
    """Wang, Simoncelli & Bovik 2003, written out in float64 from the definition: at every scale
    Gaussian-weighted local means, variances and covariance ('valid' windows); the
    contrast-structure term at every scale but the last, luminance × contrast-structure at the
    last; 2×2 average pooling between scales; product of the terms raised to their weights.
    Negative terms are clipped to 0 before the power, as pytorch-msssim does."""
    x, y = x.double(), y.double()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    coords = torch.arange(win_size, dtype=torch.float64) - win_size // 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = torch.outer(g, g)
    channels = x.shape[1]

    def blur(t):
        return F.conv2d(t, kernel.expand(channels, 1, win_size, win_size), groups=channels)

    result = torch.ones(x.shape[0], channels, dtype=torch.float64)
    for j, w in enumerate(weights):
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
        cs = ((2 * cxy + c2) / (vx + vy + c2)).mean(dim=(2, 3))
        if j < len(weights) - 1:
            result = result * cs.clamp(min=0) ** w
            x = (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) / 4
            y = (y[..., 0::2, 0::2] + y[..., 1::2, 0::2] + y[..., 0::2, 1::2] + y[..., 1::2, 1::2]) / 4
        else:
            lum_cs = ((2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1) * (2 * cxy + c2) / (vx + vy + c2)).mean(dim=(2, 3))
            result = result * lum_cs.clamp(min=0) ** w
    return result.mean(1)


def _smooth_images(n, channels, size, seed):
    # Random but image-like (correlated neighbours), so every scale has structure to compare.
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, size // 4, size // 4, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def test_the_32_pixel_setting_is_three_scales_of_renormalised_standard_weights():
    s = ms_ssim_setting(32)
    assert s["scales"] == 3 and s["win_size"] == 5 and s["win_sigma"] == 1.5 and s["data_range"] == 1.0
    assert math.isclose(sum(s["weights"]), 1.0)
    kept = STANDARD_WEIGHTS[:3]
    assert all(math.isclose(w, k / sum(kept)) for w, k in zip(s["weights"], kept))
    assert MS_SSIM_SETTINGS[64]["scales"] == 4
    # the coarsest scale still holds a whole window
    assert 32 // 2 ** (s["scales"] - 1) >= s["win_size"]
    assert "3 scales" in describe_setting(32) and "0.0711" in describe_setting(32)
    with pytest.raises(ValueError, match="no MS-SSIM setting"):
        ms_ssim_setting(28)


def test_identical_images_score_one():
    x = _smooth_images(4, 1, 32, seed=0) * 2 - 1
    assert torch.allclose(ms_ssim_per_image(x, x), torch.ones(4), atol=1e-5)
    rgb = _smooth_images(2, 3, 32, seed=1) * 2 - 1
    assert torch.allclose(ms_ssim_per_image(rgb, rgb), torch.ones(2), atol=1e-5)


def test_score_falls_strictly_as_noise_grows():
    x = _smooth_images(8, 1, 32, seed=2) * 2 - 1
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(x.shape, generator=g)
    scores = [ms_ssim_per_image(x + std * noise, x).mean().item() for std in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert scores[0] > 0.9999 and scores[-1] < 0.7


@pytest.mark.parametrize("size,channels", [(32, 1), (32, 3), (64, 1)])
def test_agrees_with_an_independent_reference(size, channels):
    s = ms_ssim_setting(size)
    x = _smooth_images(6, channels, size, seed=4)
    g = torch.Generator().manual_seed(5)
    for std in (0.02, 0.1, 0.3):  # from near-identical to heavy noise, where cs terms can turn negative
        y = (x + std * torch.randn(x.shape, generator=g)).clamp(0, 1)
        ours = multiscale_ssim(x, y, s["win_size"], s["win_sigma"], s["weights"], s["data_range"])
        reference = reference_ms_ssim(x, y, s["win_size"], s["win_sigma"], s["weights"], s["data_range"])
        # float32 against float64: the differences are rounding, far under 1e-4
        assert torch.allclose(ours.double(), reference, atol=1e-4, rtol=0), (ours, reference)


def test_same_loop_as_pytorch_msssim_where_its_size_check_allows():
    # At 192 px pytorch-msssim's own ms_ssim runs at its defaults; ours must give the same numbers.
    x = _smooth_images(2, 3, 192, seed=6)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    ours = multiscale_ssim(x, y, 11, 1.5, STANDARD_WEIGHTS, 1.0)
    theirs = library_ms_ssim(x, y, data_range=1.0, size_average=False)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_rejects_images_too_small_for_the_window():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="coarsest scale"):
        multiscale_ssim(x, x, 5, 1.5, [0.2, 0.3, 0.5])
