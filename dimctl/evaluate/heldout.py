"""What the critic-based estimators (mi, mine, ndm) share: batch sizing, the one critic-fitting
loop, and the held-out estimate with its standard error. Each estimator keeps only its network,
its sampler and its bound; the random draws happen in the same order as when each had its own loop.
"""

import math
from collections.abc import Callable

import numpy as np
import torch

from dimctl.errors import UsageError

CURVE_EVERY = 100  # steps between the training curve's points (and on_step calls)

# One critic step: the loss to minimise, and a report of the step's values (read only at curve points).
CriticStep = Callable[[], tuple[torch.Tensor, Callable[[], dict[str, float]]]]


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


def fit_critic(parameters, critic_step: CriticStep, steps: int, lr: float, cosine_lr: bool = False,
               on_step: Callable[[int, float], None] | None = None) -> list[dict]:
    """Adam on ``parameters`` for ``steps`` steps of ``critic_step`` (with the learning rate decayed
    to zero on a cosine when ``cosine_lr``). Returns the training curve: every CURVE_EVERY steps and
    at the last, the step's report (plus the learning rate, when it decays); ``on_step`` gets the
    step and the report's first value."""
    # fused: one kernel per step, not ~10 elementwise passes per tensor (~20 % of a small critic's step)
    optimiser = torch.optim.Adam(parameters, lr=lr, fused=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps) if cosine_lr else None
    curve = []
    for step in range(1, steps + 1):
        loss, report = critic_step()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if schedule is not None:
            schedule.step()
        if step % CURVE_EVERY == 0 or step == steps:
            point = report()
            curve.append({"step": step, **point, **({"lr": schedule.get_last_lr()[0]} if schedule else {})})
            if on_step is not None:
                on_step(step, next(iter(point.values())))
    return curve


@torch.no_grad()
def heldout_estimate(n_test: int, batch: int, generator: torch.Generator,
                     bound_of: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, float, int]:
    """The bound over disjoint test batches in a seeded order: (mean, standard error, batches).
    ``bound_of`` gets one batch's test indices and returns its bound."""
    order = torch.randperm(n_test, generator=generator)
    values = [bound_of(order[start:start + batch]).item() for start in range(0, n_test - batch + 1, batch)]
    return (*mean_and_stderr(values), len(values))
