"""MS-SSIM (Wang, Simoncelli & Bovik 2003) for the small images of the paper's Table 4.

pytorch-msssim's ``ms_ssim`` asserts ``min(H, W) > (win_size - 1) * 2**4`` whatever the number of
weights, i.e. it always budgets for 4 downsamplings: at its defaults (5 scales, 11-pixel window)
images must exceed 160 px, and a 32×32 image fails even with a 3-pixel window. So this module runs
the same multi-scale loop as pytorch-msssim 1.0's ``ms_ssim`` — its per-scale ``_ssim`` (Gaussian
means, variances and covariance; luminance and contrast-structure terms), relu on negative
contrast-structure values, 2×2 average pooling between scales, product of cs_j^w_j over the first
K-1 scales and ssim_K^w_K at the last — with fewer scales and a smaller window. A test checks the
loop against pytorch-msssim's own ``ms_ssim`` on images large enough for it, and both against an
independent reference written from the paper's definition.

The setting per image size (``MS_SSIM_SETTINGS``):

* scales: down to an 8×8 coarsest scale — 3 for 32×32 (32, 16, 8), 4 for 64×64.
* window: 5 pixels, sigma 1.5. Sigma 1.5 keeps the standard SSIM's local-statistics scale; the
  filter is applied without padding ("valid"), so the 8×8 coarsest scale still yields a 4×4 map of
  local statistics (16 windows to average). A 7-pixel window would leave 2×2, and a window larger
  than the scale makes pytorch-msssim silently skip the smoothing. A 5-tap window truncates the
  Gaussian at ±1.33 sigma; that is the price of 8×8 images.
* weights: the standard five (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), first K kept and
  renormalised to sum 1, so a perfect reconstruction still scores 1.
* images in [-1, 1] are mapped to [0, 1] and compared with data_range 1 (so the stabilising
  constants are C1 = 0.01², C2 = 0.03²).
"""

import math

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

STANDARD_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIZE = 5
WIN_SIGMA = 1.5
DATA_RANGE = 1.0
K1, K2 = 0.01, 0.03
COARSEST_SIDE = 8


def _setting(image_size: int) -> dict:
    scales = int(math.log2(image_size // COARSEST_SIDE)) + 1
    kept = STANDARD_WEIGHTS[:scales]
    return {
        "image_size": image_size,
        "scales": scales,
        "win_size": WIN_SIZE,
        "win_sigma": WIN_SIGMA,
        "weights": [w / sum(kept) for w in kept],
        "data_range": DATA_RANGE,
        "K": [K1, K2],
        "input_mapping": "(x + 1) / 2: [-1, 1] -> [0, 1]",
    }


# The exact settings used, by image side; reported in --help and in every result line.
MS_SSIM_SETTINGS: dict[int, dict] = {size: _setting(size) for size in (32, 64)}


def ms_ssim_setting(image_size: int) -> dict:
    if image_size not in MS_SSIM_SETTINGS:
        raise ValueError(f"no MS-SSIM setting for {image_size}×{image_size} images; "
                         f"supported sides: {', '.join(map(str, MS_SSIM_SETTINGS))}")
    return MS_SSIM_SETTINGS[image_size]


def describe_setting(image_size: int) -> str:
    """One line, e.g. for --help: the scales, window and weights of the setting for this side."""
    s = ms_ssim_setting(image_size)
    kept = STANDARD_WEIGHTS[:s["scales"]]
    rounded = ", ".join(f"{w:.4f}" for w in s["weights"])
    return (f"{s['scales']} scales ({image_size} px down to {COARSEST_SIDE}), Gaussian window {s['win_size']} px "
            f"sigma {s['win_sigma']:g}, weights ({', '.join(map(str, kept))})/{sum(kept):.4f} = ({rounded}), "
            f"K1 {K1:g} K2 {K2:g}, images mapped from [-1, 1] to [0, 1] with data_range {s['data_range']:g}")


def multiscale_ssim(x: torch.Tensor, y: torch.Tensor, win_size: int, win_sigma: float,
                    weights: list[float] | tuple[float, ...], data_range: float = DATA_RANGE) -> torch.Tensor:
    """MS-SSIM of each image pair (N, C, H, W) → (N,), averaged over channels.

    The smallest scale, min(H, W) / 2**(len(weights) - 1), must be at least ``win_size``.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"need two (N, C, H, W) batches of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    smallest = min(x.shape[-2:]) // 2 ** (len(weights) - 1)
    if smallest < win_size:
        raise ValueError(f"{x.shape[-2]}×{x.shape[-1]} images give a {smallest}-pixel coarsest scale over "
                         f"{len(weights)} scales, smaller than the {win_size}-pixel window")
    win = _fspecial_gauss_1d(win_size, win_sigma).repeat(x.shape[1], 1, 1, 1)
    weight = x.new_tensor(weights).view(-1, 1, 1)
    contrast_structure = []
    for scale in range(len(weights)):
        ssim_per_channel, cs = _ssim(x, y, data_range=data_range, win=win, size_average=False, K=(K1, K2))
        if scale < len(weights) - 1:
            contrast_structure.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    terms = torch.stack([*contrast_structure, torch.relu(ssim_per_channel)])  # (scale, N, C)
    return torch.prod(terms ** weight, dim=0).mean(1)


def ms_ssim_per_image(reconstructions: torch.Tensor, originals: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of each reconstruction against its original, both (N, C, H, W) in [-1, 1] → (N,)."""
    s = ms_ssim_setting(originals.shape[-1])
    return multiscale_ssim(_to_unit_range(reconstructions), _to_unit_range(originals),
                           s["win_size"], s["win_sigma"], s["weights"], s["data_range"])


def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
    # Clamped so that data_range 1 holds even for a value a hair outside [-1, 1].
    return ((images.float() + 1) / 2).clamp(0, 1)
