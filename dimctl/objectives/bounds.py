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
from dataclasses import dataclass

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
    """Positives (N, M) and each global's negatives (N, (N-1)·M): every local of every other image.

    Strided views, not a boolean mask: indexing by a mask finds its elements anew each step and
    its backward scatters (``index_put_``), ~1.8 ms of a DIM(L) step at batch 64 on a 2-core Xeon.
    Rows i, j ≠ i in order, as the mask gave them."""
    n, _, m = scores.shape
    positives = scores.diagonal(dim1=0, dim2=1).T  # (N, M): scores[i, i, :]
    # The (N·N, M) rows after the first, in groups of N + 1, start with the pair (i, i+1) and end
    # with the diagonal (i+1, i+1): dropping each group's last row leaves the off-diagonal pairs.
    off_diagonal = scores.reshape(n * n, m)[1:].view(n - 1, n + 1, m)[:, :-1]
    return positives, off_diagonal.reshape(n, (n - 1) * m)


# Each bound on paired form: positives (N, M), scores of global i with local m of its own image;
# negatives (N, K), global i's scores with K locals of other images. Critics that score every pair
# (dot products) use all of them; critics that score chosen pairs (concat-and-convolve) pass theirs.

def jsd_pairs(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    return -F.softplus(-positives).mean() - F.softplus(negatives).mean()


def infonce_pairs(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    # Negatives of global i are the same for every position m.
    neg_lse = torch.logsumexp(negatives, dim=1, keepdim=True)  # (N, 1)
    log_softmax = positives - torch.logaddexp(positives, neg_lse)
    return log_softmax.mean() + math.log(1 + negatives.shape[1])


def dv_pairs(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    return dv_samples(positives, negatives)


def nwj_pairs(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    return positives.mean() - torch.exp(negatives - 1.0).mean()


def smile_pairs(positives: torch.Tensor, negatives: torch.Tensor, clip: float = 5.0) -> torch.Tensor:
    clipped_dv = dv_samples(positives, negatives.clamp(-clip, clip))
    js = jsd_pairs(positives, negatives)
    return js + (clipped_dv - js).detach()  # value: clipped DV; gradient: JSD's


def _log_mean_exp(values: torch.Tensor) -> torch.Tensor:
    values = values.reshape(-1)
    return torch.logsumexp(values, dim=0) - math.log(values.numel())


def dv_samples(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """DV from critic values on samples of the joint (positives) and of the product of marginals
    (negatives), for critics that do not score every pair (MINE's and NDM's)."""
    return positives.mean() - _log_mean_exp(negatives)


def jsd(scores: torch.Tensor) -> torch.Tensor:
    return jsd_pairs(*_split(_as_3d(scores)))


def infonce(scores: torch.Tensor) -> torch.Tensor:
    return infonce_pairs(*_split(_as_3d(scores)))


def dv(scores: torch.Tensor) -> torch.Tensor:
    return dv_pairs(*_split(_as_3d(scores)))


def nwj(scores: torch.Tensor) -> torch.Tensor:
    return nwj_pairs(*_split(_as_3d(scores)))


def smile(scores: torch.Tensor, clip: float = 5.0) -> torch.Tensor:
    return smile_pairs(*_split(_as_3d(scores)), clip=clip)


class DVMovingAverage:
    """DV whose gradient uses a moving average of E_neg[exp(s)] as the denominator (MINE).

    Call it once per training step; the returned tensor's value is the ordinary DV estimate.
    The average is kept in log space so large scores cannot overflow it.
    """

    def __init__(self, rate: float = 0.01):
        self.rate = rate
        self.log_average: torch.Tensor | None = None

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        return self.samples(*_split(_as_3d(scores)))

    def samples(self, positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        log_mean_exp = _log_mean_exp(negatives)
        batch = log_mean_exp.detach()
        if self.log_average is None:
            self.log_average = batch
        else:
            self.log_average = torch.logaddexp(self.log_average + math.log(1 - self.rate), batch + math.log(self.rate))
        ratio = torch.exp(log_mean_exp - self.log_average)  # E_neg[exp(s)] / moving average
        return positives.mean() - (log_mean_exp.detach() + ratio - ratio.detach())


@dataclass(frozen=True)
class Estimator:
    """One MI bound, with everything the rest of dimctl needs to know about it."""

    name: str  # its --estimator choice
    display: str  # its name as the literature writes it (reports, help)
    paired: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # of (positives, negatives)
    scores: Callable[[torch.Tensor], torch.Tensor]  # of the (N, N, M) score tensor


# Every estimator, in the order --estimator lists them. Adding one here adds it everywhere.
REGISTRY: dict[str, Estimator] = {e.name: e for e in (
    Estimator("jsd", "JSD", jsd_pairs, jsd),
    Estimator("infonce", "infoNCE", infonce_pairs, infonce),
    Estimator("dv", "DV", dv_pairs, dv),
    Estimator("nwj", "NWJ", nwj_pairs, nwj),
    Estimator("smile", "SMILE", smile_pairs, smile),
)}

# Views of the registry by facet. The objectives read ESTIMATORS at call time, so a test can swap
# one entry of this dict (monkeypatch.setitem) to inject a fault into training.
ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {name: e.scores for name, e in REGISTRY.items()}
PAIRED_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    name: e.paired for name, e in REGISTRY.items()}
ESTIMATOR_NAMES: dict[str, str] = {name: e.display for name, e in REGISTRY.items()}


def display_name(name: str | None) -> str | None:
    """An estimator's name as the literature writes it; a name dimctl does not know, unchanged."""
    return REGISTRY[name].display if name in REGISTRY else name
