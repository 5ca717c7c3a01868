"""What the critic-based estimators (mi, mine, ndm) share: batch sizing and the held-out summary."""

import math

import numpy as np
import torch

from dimctl.errors import UsageError


def batch_size_for(requested: int, n_train: int, n_test: int) -> int:
    """The batch used for training and evaluation: at most each split's size, at least 2 (negatives)."""
    batch = min(requested, n_train, n_test)
    if batch < 2:
        raise UsageError(f"estimators need at least two samples per split (train {n_train}, test {n_test})")
    return batch


def mean_and_stderr(values: list[float]) -> tuple[float, float]:
    """The estimate over evaluation batches and its standard error (nan with a single batch)."""
    array = np.asarray(values, dtype=np.float64)
    stderr = float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else float("nan")
    return float(array.mean()), stderr


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten, then scale by the train split's mean and std (constant columns are left at 0)."""
    train = train.reshape(train.shape[0], -1).astype(np.float64)
    test = test.reshape(test.shape[0], -1).astype(np.float64)
    mean, std = train.mean(0), train.std(0)
    std[std == 0] = 1.0
    return (torch.from_numpy((train - mean) / std).float(), torch.from_numpy((test - mean) / std).float())
