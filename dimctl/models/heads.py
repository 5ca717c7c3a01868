"""Encode-and-dot-product MI heads (paper App. A.2, "encoder and dot product" critics).

Each side of a critic embeds its features into ``mi_units`` dimensions; the critic's score of a
pair is the dot product of the two embeddings. Scoring every global against every local in the
batch is then one matrix product, which yields positives and negatives together.
"""

import math

import torch
from torch import nn

from dimctl.models.conv import Conv2d


class VectorEmbedding(nn.Module):
    """Linear → BN → ReLU → linear, plus a linear shortcut, LayerNorm over the units.

    ``identity_shortcut``: the authors' init of the shortcut — weights U(−0.01, 0.01) with ones on
    the diagonal (as much of an identity as the shapes allow), no bias — instead of PyTorch's."""

    def __init__(self, in_features: int, units: int, identity_shortcut: bool = False):
        super().__init__()
        self.block = nn.Sequential(
            nn.Linear(in_features, units, bias=False),
            nn.BatchNorm1d(units),
            nn.ReLU(inplace=True),
            nn.Linear(units, units),
        )
        self.shortcut = nn.Linear(in_features, units, bias=not identity_shortcut)
        if identity_shortcut:
            with torch.no_grad():
                self.shortcut.weight.uniform_(-0.01, 0.01).fill_diagonal_(1.0)
        self.norm = nn.LayerNorm(units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.block(x) + self.shortcut(x))


class LocalEmbedding(VectorEmbedding):
    """The paper's 1×1-conv block (conv → BN → ReLU → conv, plus a linear 1×1 shortcut, LayerNorm
    over channels), applied to every location of a feature map.

    A 1×1 convolution is a matrix product over the map's locations, so the block runs as
    ``VectorEmbedding`` on the (N·H·W, C) matrix of locations: the same function (BatchNorm1d over
    N·H·W rows per unit computes BatchNorm2d's statistics), but each layer is one GEMM whose
    backward is two GEMMs, which run at the matmul units' speed in bf16 where mkldnn's 1×1-conv
    backward does not (benchmarks/profile_step.py), and the output is already in the layout the
    scores need.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, H·W, units), locations in row-major order."""
        n, c = x.shape[:2]
        rows = x.flatten(2).transpose(1, 2).reshape(-1, c)  # (N·H·W, C); no copy for a channels-last map
        return super().forward(rows).view(n, -1, self.norm.normalized_shape[0])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written while the block was made of 1×1 convs hold weights of shape (U, C, 1, 1).
        for key in ("block.0.weight", "block.3.weight", "shortcut.weight"):
            weight = state_dict.get(prefix + key)
            if weight is not None and weight.dim() == 4:
                state_dict[prefix + key] = weight.flatten(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class MapEmbedding(nn.Module):
    """Embeds a whole feature map into one vector: the paper's global-discriminator convs
    (3×3 → 64, 3×3 → 32, no padding), flattened, then a VectorEmbedding."""

    def __init__(self, in_channels: int, spatial: int, units: int, identity_shortcut: bool = False):
        super().__init__()
        self.convs = nn.Sequential(
            Conv2d(in_channels, 64, 3),
            nn.ReLU(inplace=True),
            Conv2d(64, 32, 3),
            nn.ReLU(inplace=True),
        )
        self.embed = VectorEmbedding(32 * (spatial - 4) ** 2, units, identity_shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.convs(x).flatten(1))


def dot_scores(global_emb: torch.Tensor, local_emb: torch.Tensor, scaled: bool = True) -> torch.Tensor:
    """Score every global against every local in one matrix product.

    global_emb (N, U) and local_emb (N, M, U) → scores (N, N, M), scores[i, j, m] = <g_i, l_jm>.
    A local_emb of shape (N, U) is treated as M == 1. ``scaled``: scores are divided by sqrt(U)
    (an AMDIM practice): LayerNorm makes every embedding coordinate unit-scale, so raw dot products
    grow like sqrt(U) and would saturate the softplus and exp of the bounds at the paper's width of
    2048. The authors' code uses the raw products (``scaled=False``).
    """
    if local_emb.dim() == 2:
        local_emb = local_emb.unsqueeze(1)
    n, m, units = local_emb.shape
    # (N·M, U)ᵀ is a transposed view, which the GEMM reads without a copy.
    scores = (global_emb @ local_emb.reshape(n * m, units).T).view(global_emb.shape[0], n, m)
    return scores / math.sqrt(units) if scaled else scores


class ConcatCritic(nn.Module):
    """The concat-and-convolve local critic (paper Eq. 11–12, App. Table 7): Y tiled over the local
    map and concatenated to it, then 1×1 convs ``hidden`` → ``hidden`` → 1 with ReLU.

    It scores chosen (global, local map) pairs rather than all N² of them. Its first 1×1 conv acts
    on a concatenation, so it splits into a Y part and a map part (W·[y; l] = W_y·y + W_l·l); each
    image's two parts are computed once and only their sums are formed per pair.
    """

    def __init__(self, local_channels: int, y_dim: int, hidden: int = 512):
        super().__init__()
        self.local_in = nn.Conv1d(local_channels, hidden, 1)
        self.y_in = nn.Linear(y_dim, hidden, bias=False)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv1d(hidden, hidden, 1), nn.ReLU(), nn.Conv1d(hidden, 1, 1))

    def project(self, y: torch.Tensor, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, Y) and (N, C, H, W) → the first layer's Y part (N, hidden) and map part (N, hidden, H·W)."""
        return self.y_in(y), self.local_in(local.flatten(2))

    def score_shifted(self, y_part: torch.Tensor, map_part: torch.Tensor, negatives: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positives (N, M): each global with its own map. Negatives (N, K·M): global i with the maps
        of images i+1 … i+K (mod N), so every global meets K other images (the paper uses K = 1)."""
        n, hidden, m = map_part.shape
        shifts = torch.arange(negatives + 1, device=map_part.device)
        partner = (torch.arange(n, device=map_part.device)[:, None] + shifts) % n  # (N, 1+K)
        h = y_part[:, None, :, None] + map_part[partner]  # (N, 1+K, hidden, M)
        scores = self.body(h.reshape(-1, hidden, m)).view(n, negatives + 1, m)
        return scores[:, 0], scores[:, 1:].reshape(n, -1)


class CoordinatePredictor(nn.Module):
    """MLP with two hidden layers (BN, ReLU) predicting a location as two categorical variables,
    row and column (App. A.7). Used for absolute coordinates (classes = H, W) and relative offsets
    (classes = 2H-1, 2W-1)."""

    def __init__(self, in_features: int, rows: int, cols: int, hidden: int = 512):
        super().__init__()
        self.rows = rows
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, rows + cols),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x)
        return logits[:, :self.rows], logits[:, self.rows:]
