"""Mutual information between two arrays, estimated with a trained critic.

A separable critic embeds x and y with two MLPs and scores a pair by the dot product of the
embeddings (Poole et al. 2019 found it as accurate as a joint critic on these problems and it
scores a whole batch in one matrix product). The critic is trained on the train split with one
of the bounds of ``objectives.bounds`` and evaluated on held-out pairs:

- dv is trained with MINE's moving-average gradient correction and reports the DV bound;
- nwj, infonce and smile report their own bound (infoNCE can never exceed log(batch size));
- jsd trains with the JSD objective, whose optimal critic is the log density ratio, and reports
  the DV bound evaluated with that critic, so its estimate is in nats as well.

Training stops when the bound on a validation part of the training pairs stops rising, and the
critic with the best validation bound is kept (``critic_fit.fit_critic``). Inputs are mapped by
``marginals`` first (rank by default: normal scores, which tame heavy tails). The estimate is the
mean over evaluation batches; its standard error is their standard deviation over sqrt(number of
batches). ``ksg`` is the k-nearest-neighbour estimator, which trains nothing (``evaluate.ksg``).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dimctl.evaluate.critic_fit import (CriticFitSettings, batch_mean, batch_size_for, fit_critic, heldout_estimate,
                                        validation_split)
from dimctl.evaluate.ksg import ksg
from dimctl.evaluate.marginals import MARGINALS, prepare
from dimctl.objectives.bounds import ESTIMATORS, DVMovingAverage, dv
from dimctl.settings import setting

MI_ESTIMATORS = (*ESTIMATORS, "ksg")  # the critic bounds, and Kraskov et al.'s k-nearest-neighbour estimator


@dataclass(frozen=True)
class MIConfig(CriticFitSettings):
    """Settings of an MI estimate, each with its option's help (`dimctl mi`'s options are derived from these)."""

    estimator: str = setting("smile", f"Bound: {', '.join(MI_ESTIMATORS)} (ksg: k-nearest neighbours, no critic; "
                                      f"for up to ~10 dimensions).", choices=MI_ESTIMATORS)
    marginals: str = setting("rank", "What the critic sees of each coordinate: rank (normal scores of its ranks: heavy "
                                     "tails and odd marginals tamed) or standard (centred and scaled). MI is the same "
                                     "under either.", choices=tuple(MARGINALS))
    # the ceiling: training stops earlier once the validation bound stops rising
    steps: int = setting(2000, "Most critic training steps; training stops earlier when the validation estimate "
                               "stops rising.", positive=True)
    batch_size: int = setting(128, "Pairs per step; infoNCE cannot exceed log(batch size).", minimum=2)
    lr: float = setting(5e-4, "Adam learning rate of the critic.", positive=True)
    seed: int = setting(0, "Seed of the critic and the batches.")
    hidden: int = setting(256, "Hidden units of the critic's two MLPs.", cli=False, positive=True)
    embedding: int = setting(64, "Size of the critic's embeddings.", cli=False, positive=True)
    ema_rate: float = setting(0.01, "dv: rate of MINE's moving average.", cli=False, positive=True)
    neighbours: int = setting(3, "ksg: the k of the k nearest neighbours.", cli=False, positive=True)


@dataclass
class MIResult:
    estimate: float
    stderr: float
    estimator: str
    steps: int
    eval_batches: int
    curve: list[dict] = field(default_factory=list)  # training (and validation) estimate every 100 steps
    steps_used: int | None = None  # None for KSG, which trains nothing
    best_step: int | None = None
    stopped_improving: bool | None = None
    train_estimate: float | None = None  # the kept critic's bound on its own training pairs
    marginals: str = "rank"
    warning: str | None = None


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, d_out))


class SeparableCritic(nn.Module):
    """scores[i, j] = <g(y_i), f(x_j)>: positives on the diagonal, as ``objectives.bounds`` expects."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int, embedding: int):
        super().__init__()
        self.f = _mlp(x_dim, hidden, embedding)
        self.g = _mlp(y_dim, hidden, embedding)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.g(y) @ self.f(x).T


def _training_objective(config: MIConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    if config.estimator == "dv":
        return DVMovingAverage(config.ema_rate)
    return ESTIMATORS[config.estimator]


def _evaluation_bound(estimator: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return dv if estimator == "jsd" else ESTIMATORS[estimator]


def estimate_mi(train_x, train_y, test_x, test_y, config: MIConfig = MIConfig(),
                on_step: Callable[[int, float], None] | None = None) -> MIResult:
    """I(X; Y) in nats from paired arrays (N, …) of each split, numpy or torch, each flattened to rows
    and mapped by ``config.marginals``. A critic is trained on the train split, less a validation
    part that decides when to stop, and its bound is evaluated on the test pairs; KSG uses both splits."""
    if config.estimator not in MI_ESTIMATORS:
        raise ValueError(f"unknown estimator {config.estimator!r}; known: {', '.join(MI_ESTIMATORS)}")
    if config.marginals not in MARGINALS:
        raise ValueError(f"unknown marginals {config.marginals!r}; known: {', '.join(MARGINALS)}")
    train_x, test_x = prepare(_numpy(train_x), _numpy(test_x), config.marginals)
    train_y, test_y = prepare(_numpy(train_y), _numpy(test_y), config.marginals)
    if config.estimator == "ksg":
        result = _ksg(train_x, train_y, test_x, test_y, config)
    else:
        result = _critic_estimate(train_x, train_y, test_x, test_y, config, on_step)
    result.warning = warning_for(result)
    return result


def _numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def _ksg(train_x, train_y, test_x, test_y, config: MIConfig) -> MIResult:
    # Nothing is fitted, so every pair is a sample: both splits together.
    estimate, stderr = ksg(torch.cat([train_x, test_x]).double().numpy(), torch.cat([train_y, test_y]).double().numpy(),
                           config.neighbours, config.seed)
    return MIResult(estimate, stderr, "ksg", 0, 0, marginals=config.marginals)


def _critic_estimate(train_x, train_y, test_x, test_y, config: MIConfig, on_step) -> MIResult:
    fit_idx, val_idx = validation_split(train_x.shape[0], config.early_stopping.fraction, config.seed)
    fit_x, fit_y, val_x, val_y = train_x[fit_idx], train_y[fit_idx], train_x[val_idx], train_y[val_idx]
    n = fit_x.shape[0]
    batch = batch_size_for(config.batch_size, n, test_x.shape[0])
    held_batch = min(batch, val_x.shape[0])  # validation_split holds out at least two
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    critic = SeparableCritic(train_x.shape[1], train_y.shape[1], config.hidden, config.embedding)
    objective, bound = _training_objective(config), _evaluation_bound(config.estimator)

    def critic_step():
        idx = torch.randperm(n, generator=generator)[:batch]  # distinct samples: no negative is a positive
        value = objective(critic(fit_x[idx], fit_y[idx]))
        return -value, lambda: {"train_estimate": value.item()}

    def validate() -> float:
        return batch_mean(val_x.shape[0], held_batch, lambda idx: bound(critic(val_x[idx], val_y[idx])))

    fit = fit_critic(critic, critic_step, config.steps, config.lr, on_step=on_step, validate=validate,
                     patience=config.early_stopping.patience)
    critic.eval()
    estimate, stderr, batches = heldout_estimate(test_x.shape[0], batch, generator,
                                                 lambda idx: bound(critic(test_x[idx], test_y[idx])))
    # The kept critic on as many of its own training pairs as it is tested on: the gap shows memorising.
    seen = min(n, test_x.shape[0])
    train_estimate = batch_mean(seen, batch, lambda idx: bound(critic(fit_x[idx], fit_y[idx])))
    return MIResult(estimate, stderr, config.estimator, config.steps, batches, fit.curve, fit.steps_used,
                    fit.best_step, fit.stopped_improving, train_estimate, config.marginals)


def warning_for(result: MIResult) -> str | None:
    """What a reader of the estimate must know, in one sentence, or None. The estimate itself is never
    changed: a negative bound is reported as measured, with what it means."""
    rank = "" if result.marginals == "rank" else "--marginals rank, "
    if not math.isfinite(result.estimate):
        return f"the estimate is not finite: the critic's scores overflowed; try {rank}or a lower --lr"
    if result.estimate < 0:
        return ("the held-out estimate is negative: the critic found no dependence that holds on unseen pairs "
                f"(the MI may be near 0, or the critic learnt its training pairs); try {rank}more pairs, or "
                "--estimator ksg at low dimension")
    if result.train_estimate is not None and result.train_estimate - result.estimate > memorising_gap(result.estimate):
        return (f"the critic scores its training pairs {result.train_estimate:.3g} nats but unseen pairs "
                f"{result.estimate:.3g}: it has learnt its training pairs, and the estimate is likely low; "
                "more pairs would lift it")
    if result.stopped_improving is False and result.best_step == result.steps_used:
        return (f"the validation bound was still rising at the last of --steps {result.steps}: "
                "the estimate is likely low; raise --steps")
    return None


def memorising_gap(estimate: float) -> float:
    """How far the training pairs' bound may exceed the held-out one before it counts as memorising:
    0.1 nats, or a quarter of the estimate when that is larger."""
    return max(0.1, 0.25 * abs(estimate))


def selftest_band(estimator: str, truth: float) -> tuple[float, float]:
    """The estimates (nats) a working estimator gives on a task of the known-MI benchmark's fast
    subset (``known_mi.FAST_SUBSET``) at `dimctl mi`'s defaults on 10,000 + 10,000 pairs. The
    targets are max(0.1 nats, 15 %) for a critic and 0.05 nats for KSG (benchmarks/mi_known.py
    measures them on every task); the band adds room for a seed's spread: max(0.15, 25 %), and
    0.08 nats for KSG."""
    room = 0.08 if estimator == "ksg" else max(0.15, 0.25 * truth)
    return truth - room, truth + room
