"""Multiple less-global features (paper §4.2, Table 3, "DIM(L) multiple globals").

Each extra global feature is the encoder's summary of a random rectangular block of the local
feature map (locations outside the block zeroed), scored against the *full* local map by the same
estimator as the ordinary global feature. On the folded encoders' 7×7 grid this is the DIM
counterpart of CPC's summaries over partial contexts.
"""

import torch


def random_blocks(n: int, h: int, w: int, device: torch.device, min_side: int = 2,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, 1, H, W) float masks, each one rectangle of random height and width in [min_side, side]
    at a random position of the H×W grid (one block per image, drawn independently)."""
    min_h, min_w = min(min_side, h), min(min_side, w)
    bh = torch.randint(min_h, h + 1, (n,), device=device, generator=generator)
    bw = torch.randint(min_w, w + 1, (n,), device=device, generator=generator)
    top = (torch.rand(n, device=device, generator=generator) * (h - bh + 1)).long()
    left = (torch.rand(n, device=device, generator=generator) * (w - bw + 1)).long()
    r = torch.arange(h, device=device)[None, :, None]
    c = torch.arange(w, device=device)[None, None, :]
    inside = ((r >= top[:, None, None]) & (r < (top + bh)[:, None, None]) &
              (c >= left[:, None, None]) & (c < (left + bw)[:, None, None]))
    return inside.float()[:, None]
