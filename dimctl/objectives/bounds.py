"""Variational lower bounds on mutual information, on one score-matrix convention.

A critic scores pairs. For a batch of N images the scores form a tensor ``scores`` of shape
(N, N, M): ``scores[i, j, m]`` is the critic's value for global feature i paired with local
feature m of image j. Pairs with i == j come from the joint distribution (positives); pairs with
i != j come from the product of marginals (negatives). An image's own locals at other positions
are never used as its negatives (paper App. A.3). A global-to-global critic is the case M == 1.

Each bound returns the estimate in nats, to be *maximised*; a training loss is its negation.
The estimates are averaged over the N·M positive pairs.

- ``jsd``: the Jensen-Shannon estimator of f-GAN (paper Eq. 4),
  E_pos[-softplus(-s)] - E_neg[softplus(s)]. It is not an MI value in nats (it is bounded by
  log 4 shifted), but its maximiser is the same; DIM's default.
- ``infonce``: noise-contrastive estimation (paper Eq. 5). For each positive (i, m) the softmax
  of s[i, i, m] against every local of every other image, s[i, j != i, :]; the bound adds
  log K, where K = 1 + (N-1)·M is the number of candidates, so it is capped at log K.
- ``dv``: the Donsker-Varadhan representation (MINE, paper Eq. 2),
  E_pos[s] - log E_neg[exp(s)], computed with log-sum-exp.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def _as_3d(scores: torch.Tensor) -> torch.Tensor:
    if scores.dim() == 2:
        scores = scores.unsqueeze(-1)
    if scores.dim() != 3 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must have shape (N, N, M) or (N, N), got {tuple(scores.shape)}")
    if scores.shape[0] < 2:
        raise ValueError("at least two samples are needed to form negatives")
    return scores


def _split(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives (N, M) and a boolean (N, N) mask that is True on negative image pairs."""
    n = scores.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=scores.device)
    positives = scores[eye]  # (N, M): row i holds scores[i, i, :]
    return positives, ~eye


def jsd(scores: torch.Tensor) -> torch.Tensor:
    scores = _as_3d(scores)
    positives, neg_mask = _split(scores)
    e_pos = -F.softplus(-positives).mean()
    e_neg = F.softplus(scores[neg_mask]).mean()
    return e_pos - e_neg


def infonce(scores: torch.Tensor) -> torch.Tensor:
    scores = _as_3d(scores)
    n, _, m = scores.shape
    positives, neg_mask = _split(scores)
    # Negatives of global i are the same for every position m: all locals of every other image.
    masked = scores.masked_fill(~neg_mask.unsqueeze(-1), float("-inf"))
    neg_lse = torch.logsumexp(masked.reshape(n, -1), dim=1, keepdim=True)  # (N, 1)
    log_softmax = positives - torch.logaddexp(positives, neg_lse)
    candidates = 1 + (n - 1) * m
    return log_softmax.mean() + math.log(candidates)


def dv(scores: torch.Tensor) -> torch.Tensor:
    scores = _as_3d(scores)
    positives, neg_mask = _split(scores)
    negatives = scores[neg_mask].reshape(-1)
    log_mean_exp = torch.logsumexp(negatives, dim=0) - math.log(negatives.numel())
    return positives.mean() - log_mean_exp


ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "jsd": jsd,
    "infonce": infonce,
    "dv": dv,
}
