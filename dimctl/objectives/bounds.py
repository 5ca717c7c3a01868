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
- ``nwj``: Nguyen-Wainwright-Jordan (f-GAN's KL), E_pos[s] - E_neg[exp(s - 1)]; unbiased in
  minibatches, but its variance grows like exp(I).
- ``smile``: Song & Ermon (2020): the DV value with the negatives' scores clipped to [-τ, τ]
  inside the log-mean-exp (lower variance), trained with the JSD gradient, as their code does.

``DVMovingAverage`` is DV with MINE's bias correction (Belghazi et al. 2018): the minibatch
gradient of log E_neg[exp(s)] divides by a per-batch mean, which biases it; the corrected
gradient divides by a moving average instead. Its value is still the DV estimate.
"""

import math
from collections.abc import Callable
from functools import lru_cache

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


@lru_cache(maxsize=16)
def _masks(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Built once per (batch size, device), not per step.
    eye = torch.eye(n, dtype=torch.bool, device=device)
    return eye, ~eye


def _split(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives (N, M) and a boolean (N, N) mask that is True on negative image pairs."""
    eye, negatives = _masks(scores.shape[0], scores.device)
    positives = scores[eye]  # (N, M): row i holds scores[i, i, :]
    return positives, negatives


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
    return dv_samples(positives, scores[neg_mask])


def _log_mean_exp(values: torch.Tensor) -> torch.Tensor:
    values = values.reshape(-1)
    return torch.logsumexp(values, dim=0) - math.log(values.numel())


def dv_samples(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """DV from critic values on samples of the joint (positives) and of the product of marginals
    (negatives), for critics that do not score every pair (MINE's and NDM's)."""
    return positives.mean() - _log_mean_exp(negatives)


def nwj(scores: torch.Tensor) -> torch.Tensor:
    scores = _as_3d(scores)
    positives, neg_mask = _split(scores)
    return positives.mean() - torch.exp(scores[neg_mask] - 1.0).mean()


def smile(scores: torch.Tensor, clip: float = 5.0) -> torch.Tensor:
    scores = _as_3d(scores)
    positives, neg_mask = _split(scores)
    clipped_dv = dv_samples(positives, scores[neg_mask].clamp(-clip, clip))
    js = jsd(scores)
    return js + (clipped_dv - js).detach()  # value: clipped DV; gradient: JSD's


class DVMovingAverage:
    """DV whose gradient uses a moving average of E_neg[exp(s)] as the denominator (MINE).

    Call it once per training step; the returned tensor's value is the ordinary DV estimate.
    The average is kept in log space so large scores cannot overflow it.
    """

    def __init__(self, rate: float = 0.01):
        self.rate = rate
        self.log_average: torch.Tensor | None = None

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        scores = _as_3d(scores)
        positives, neg_mask = _split(scores)
        return self.samples(positives, scores[neg_mask])

    def samples(self, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        log_mean_exp = _log_mean_exp(negatives)
        batch = log_mean_exp.detach()
        if self.log_average is None:
            self.log_average = batch
        else:
            self.log_average = torch.logaddexp(self.log_average + math.log(1 - self.rate), batch + math.log(self.rate))
        ratio = torch.exp(log_mean_exp - self.log_average)  # E_neg[exp(s)] / moving average
        return positives.mean() - (log_mean_exp.detach() + ratio - ratio.detach())


ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "jsd": jsd,
    "infonce": infonce,
    "dv": dv,
    "nwj": nwj,
    "smile": smile,
}
