"""Encode-and-dot-product MI heads (paper App. A.2, "encoder and dot product" critics).

Each side of a critic embeds its features into ``mi_units`` dimensions; the critic's score of a
pair is the dot product of the two embeddings. Scoring every global against every local in the
batch is then one matrix product, which yields positives and negatives together.
"""

import math

import torch
from torch import nn

from dimctl.models.conv import Conv2d


# From this many activations (rows × units) on, VectorEmbedding runs its wide form. Measured on the
# DIM(L) step in bf16, batch 64 (4096 local rows), 2-core Xeon with AMX: 8–9 % faster a step at 1024
# and 2048 units, 1–4 % slower at 512, 5 % slower at 256 (its dozen small extra ops cost more than
# the passes over the activations they save).
WIDE_MIN_ACTIVATIONS = 1 << 22


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
        # A SyncBatchNorm (multi-process training) needs the rows of every process: it runs as a layer.
        # Under torch.compile the plain layers run too: inductor fuses them itself, and on the CPU in
        # bf16 it compiled the wide form into NaN scores at step 1 (torch 2.14, 2048 units).
        if (type(self.block[1]) is nn.BatchNorm1d and not torch.compiler.is_compiling()
                and x.shape[0] * self.norm.normalized_shape[0] >= WIDE_MIN_ACTIVATIONS):
            return self.norm(self._wide(x))
        return self.norm(self.block(x) + self.shortcut(x))

    def _wide(self, x: torch.Tensor) -> torch.Tensor:
        """``block(x) + shortcut(x)`` with no pass over the (rows × units) activations but the
        products, the ReLU and the LayerNorm's: BatchNorm folded into the first product
        (``fold_batch_norm``), the biases carried by a column of ones, and the residual sum
        accumulated into the shortcut's output by the second product (GEMM with beta = 1)."""
        first, batch_norm, _, second = self.block
        weight, shift = fold_batch_norm(x, first.weight, batch_norm)
        with_ones = torch.cat([x, x.new_ones(x.shape[0], 1)], 1)
        # .to(x.dtype): the folded weight is float32 (fold_batch_norm); under autocast the product casts anyway.
        h = torch.relu_(with_ones @ torch.cat([weight, shift[:, None]], 1).to(x.dtype).T)
        bias = second.bias if self.shortcut.bias is None else second.bias + self.shortcut.bias
        out = with_ones @ torch.cat([self.shortcut.weight, bias[:, None]], 1).to(x.dtype).T
        return out.addmm_(h, second.weight.to(out.dtype).T)


def fold_batch_norm(x: torch.Tensor, weight: torch.Tensor, batch_norm: nn.BatchNorm1d
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(s∘W, t) such that ``batch_norm(x @ weight.T) == x @ (s∘W).T + t``.

    The batch statistics of h = x·Wᵀ follow from x's: mean(h) = W·mean(x) and var(h) =
    diag(W·Cov(x)·Wᵀ), from a (C × C) covariance instead of a pass over the (rows × units)
    activations; the normalisation is then affine. Same function and gradients (autograd follows
    the statistics back to x and W); the running statistics are updated as BatchNorm1d's forward
    does. Statistics in float32 whatever the autocast dtype.
    """
    bn = batch_norm
    with torch.autocast(x.device.type, enabled=False):
        w = weight.float()
        if bn.training or bn.running_mean is None:
            xf = x.float()
            rows = xf.shape[0]
            mean_x = xf.mean(0)
            centred = xf - mean_x
            mean = w @ mean_x
            var = ((w @ (centred.T @ centred / rows)) * w).sum(1).clamp_min(0)  # biased, as BatchNorm normalises
            if bn.training and bn.track_running_stats:
                _update_running_stats(bn, mean.detach(), var.detach() * rows / max(rows - 1, 1))
        else:
            mean, var = bn.running_mean, bn.running_var
        scale = torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
    return w * scale[:, None], shift


@torch.no_grad()
def _update_running_stats(bn: nn.BatchNorm1d, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
    """What BatchNorm's forward does to its buffers in training (momentum None: a cumulative average)."""
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    factor = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), factor)
    bn.running_var.lerp_(unbiased_var.to(bn.running_var.dtype), factor)


class Locations(torch.autograd.Function):
    """(N, C, H, W) → its (N·H·W, C) matrix of locations (no copy for a channels-last map), whose
    gradient goes back in the map's own memory layout.

    The plain view's gradient is channels-last whatever the map's layout. A contiguous map's other
    gradient (from the next convolution) is contiguous, so their sum and the ReLU's backward
    before it ran on mixed layouts, 5–19× slower than on one: 2.6 ms of a DIM(L) step at batch 64
    in bf16 (2-core Xeon, torch 2.14), against one copy of the gradient here."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        ctx.layout = torch.contiguous_format if x.is_contiguous() else torch.channels_last
        return x.flatten(2).transpose(1, 2).reshape(-1, x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        n, c, h, w = ctx.shape
        return grad.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous(memory_format=ctx.layout)


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
        return super().forward(Locations.apply(x)).view(x.shape[0], -1, self.norm.normalized_shape[0])

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
