"""What the critic-based estimators (mi, mine, ndm) share: batch sizing, the validation split, the
one critic-fitting loop (early stopping on the validation bound, the best critic kept), and the
held-out estimate with its standard error. Each estimator keeps only its network, its sampler and
its bound.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from dimctl.errors import UsageError
from dimctl.settings import declared_problem, setting

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


@dataclass(frozen=True)
class EarlyStopping:
    """Fit against a validation split: a ``fraction`` of the training pairs is held out, the bound on
    it is measured every CURVE_EVERY steps, the best critic is kept, and training stops after
    ``patience`` measurements without a gain (the maximum steps being only a ceiling)."""
    PANEL = "Early stopping"  # the --help heading of the settings declared here

    fraction: float = setting(0.2, "Fraction of the training pairs held out to decide when to stop and which "
                                   "critic to keep (between 0 and 1).", flags=("--validation",), positive=True)
    patience: int = setting(5, "Validation checks (every 100 steps) without a gain before training stops.",
                            positive=True)


@dataclass(frozen=True)
class CriticFitSettings:
    """What the settings of every critic-based estimate (mi, ndm, mine) share: early stopping, and
    their check."""

    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)

    def validate(self):
        """Every declared range and choice, and the held-out fraction below 1; a ValueError names
        the first option outside them."""
        problem = declared_problem(self)
        fraction = self.early_stopping.fraction
        if problem is None and not fraction < 1:
            problem = f"--validation is a fraction of the training pairs, between 0 and 1, not {fraction:g}"
        if problem:
            raise ValueError(problem)
        return self


@dataclass
class Fit:
    """What the critic's training did: its curve, the steps it ran, the step of the critic kept, and
    whether the validation bound had stopped improving (False: it was still rising at the ceiling)."""
    curve: list[dict]
    steps_used: int
    best_step: int
    stopped_improving: bool


def validation_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (fit, validation) of n training pairs, validation a ``fraction`` of them (at least two),
    drawn with their own generator so the critic's batches do not depend on the split."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    held = max(2, int(round(n * fraction)))
    if n - held < 2:
        raise UsageError(f"estimators need at least four training samples to hold some out for validation (got {n})")
    return order[held:], order[:held]


@torch.no_grad()
def batch_mean(n: int, batch: int, bound_of: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """The bound averaged over the consecutive batches of indices 0..n-1 (a fixed order, so two
    measurements of the same critic agree)."""
    values = [bound_of(torch.arange(start, start + batch)).item() for start in range(0, n - batch + 1, batch)]
    return float(np.mean(values))


def fit_critic(critic: torch.nn.Module, critic_step: CriticStep, steps: int, lr: float, cosine_lr: bool = False,
               on_step: Callable[[int, float], None] | None = None,
               validate: Callable[[], float] | None = None, patience: int = 5) -> Fit:
    """Adam on the critic's parameters for at most ``steps`` steps of ``critic_step`` (with the
    learning rate decayed to zero on a cosine when ``cosine_lr``). Every CURVE_EVERY steps and at the
    last, the curve gets the step's report (plus the validation bound, and the learning rate when it
    decays) and ``on_step`` the step and the report's first value.

    With ``validate`` (the bound on held-out training pairs, larger is better), the critic with the
    best validation bound is kept, and training stops after ``patience`` measurements without a
    gain: past that point a critic learns its training pairs, not the dependence, and its
    held-out bound falls (at 25 dimensions on 10,000 pairs, below zero)."""
    # fused: one kernel per step, not ~10 elementwise passes per tensor (~20 % of a small critic's step)
    optimiser = torch.optim.Adam(critic.parameters(), lr=lr, fused=True)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps) if cosine_lr else None
    curve, best, best_step, best_state, waited, step = [], -math.inf, 0, None, 0, 0
    for step in range(1, steps + 1):
        loss, report = critic_step()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if schedule is not None:
            schedule.step()
        if step % CURVE_EVERY and step != steps:
            continue
        point = {"step": step, **report(), **({"lr": schedule.get_last_lr()[0]} if schedule else {})}
        if validate is not None:
            critic.eval()
            point["validation_estimate"] = value = validate()
            critic.train()
            if value > best:
                best, best_step, waited = value, step, 0
                best_state = {k: v.detach().clone() for k, v in critic.state_dict().items()}
            else:
                waited += 1
        curve.append(point)
        if on_step is not None:
            on_step(step, point[next(k for k in point if k != "step")])
        if validate is not None and waited >= patience:
            break
    if best_state is not None:
        critic.load_state_dict(best_state)
    stopped = validate is not None and waited >= patience
    return Fit(curve, step, best_step if validate is not None else step, stopped)


@torch.no_grad()
def heldout_estimate(n_test: int, batch: int, generator: torch.Generator,
                     bound_of: Callable[[torch.Tensor], torch.Tensor]) -> tuple[float, float, int]:
    """The bound over disjoint test batches in a seeded order: (mean, standard error, batches).
    ``bound_of`` gets one batch's test indices and returns its bound."""
    order = torch.randperm(n_test, generator=generator)
    values = [bound_of(order[start:start + batch]).item() for start in range(0, n_test - batch + 1, batch)]
    return (*mean_and_stderr(values), len(values))
