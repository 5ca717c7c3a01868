"""What a critic sees of each coordinate. Mutual information does not change under an invertible map
of each coordinate, so the estimators are free to choose the map that a critic learns from best.

- ``standard``: each coordinate centred and scaled by the train split's mean and standard deviation.
- ``rank``: each coordinate replaced by the normal scores of its ranks (a Gaussian copula transform,
  as in rank-based "normal scores"): a heavy tail or an odd marginal becomes a standard normal, and
  a monotone map of a coordinate leaves the result unchanged. Each split is ranked on its own (the
  split's own empirical distribution), so no test value is placed by the training pairs.
"""

import numpy as np
import torch
from scipy import special, stats

MARGINALS = ("rank", "standard")


def flat64(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).reshape(array.shape[0], -1).astype(np.float64)


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten, then scale by the train split's mean and std (constant columns are left at 0)."""
    train, test = flat64(train), flat64(test)
    mean, std = train.mean(0), train.std(0)
    std[std == 0] = 1.0
    return torch.from_numpy((train - mean) / std).float(), torch.from_numpy((test - mean) / std).float()


def normal_scores(array: np.ndarray) -> np.ndarray:
    """Each column to Φ⁻¹(rank / (n + 1)), tied values sharing their average rank (so a binary or
    one-hot column stays two-valued, and a constant column becomes 0)."""
    array = flat64(array)
    ranks = stats.rankdata(array, axis=0, method="average")
    return special.ndtri(ranks / (array.shape[0] + 1))


def rank_marginals(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(normal_scores(train)).float(), torch.from_numpy(normal_scores(test)).float()


def prepare(train: np.ndarray, test: np.ndarray, marginals: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both splits of one array, flattened to float32 rows, under the named map (``MARGINALS``)."""
    if marginals == "rank":
        return rank_marginals(train, test)
    if marginals == "standard":
        return standardise(train, test)
    raise ValueError(f"unknown marginals {marginals!r}; known: {', '.join(MARGINALS)}")
