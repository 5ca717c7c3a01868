"""Neural Dependency Measure (paper §4.1, App. A.6): how far a representation's coordinates are
from independent.

Samples of the product of the marginals are made by shuffling every dimension independently
across the batch. A discriminator (fully connected 1000 → 200 → 1) learns to tell joint samples
from shuffled ones with the JSD (logistic) objective, whose optimum is the log density ratio;
the Donsker-Varadhan bound evaluated with it on held-out data estimates KL(joint ‖ product of
marginals) in nats: about 0 for independent factors, larger the more they depend on each other.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from dimctl.evaluate.critic_fit import (CriticFitSettings, batch_mean, batch_size_for, fit_critic, heldout_estimate,
                                        validation_split)
from dimctl.models.discriminators import PriorDiscriminator
from dimctl.objectives.bounds import dv_samples
from dimctl.settings import setting


@dataclass(frozen=True)
class NDMConfig(CriticFitSettings):
    """Settings of an NDM estimate, each with its option's help (`dimctl ndm`'s options are derived from these)."""

    # the ceiling: training stops earlier once the validation estimate stops rising
    steps: int = setting(2000, "Most discriminator training steps; training stops earlier when the validation "
                               "estimate stops rising.", positive=True)
    batch_size: int = setting(128, "Samples per step (each shuffled per dimension for the negatives).", minimum=2)
    lr: float = setting(1e-4, "Adam learning rate of the discriminator.", positive=True)
    seed: int = setting(0, "Seed of the discriminator and the shuffles.")


@dataclass
class NDMResult:
    ndm: float
    stderr: float
    steps: int
    eval_batches: int
    curve: list[dict] = field(default_factory=list)
    steps_used: int = 0
    best_step: int = 0
    stopped_improving: bool = False


def shuffle_dimensions(y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Permute each column independently: keeps every marginal, destroys every dependence."""
    order = torch.rand(y.shape, generator=generator).argsort(dim=0)
    return y.gather(0, order)


def neural_dependency(train: torch.Tensor, test: torch.Tensor, config: NDMConfig = NDMConfig(),
                      on_step: Callable[[int, float], None] | None = None) -> NDMResult:
    """NDM of (N, d) features: trained on ``train``, evaluated on ``test`` (both standardised)."""
    fit_idx, val_idx = validation_split(train.shape[0], config.early_stopping.fraction, config.seed)
    train, held = train[fit_idx], train[val_idx]
    n, d = train.shape
    batch = batch_size_for(config.batch_size, n, test.shape[0])
    held_batch = min(batch, held.shape[0])  # validation_split holds out at least two
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    # Same shape as the prior discriminator of App. A.2: fully connected 1000 → 200 → 1.
    discriminator = PriorDiscriminator(d)

    def critic_step():
        joint = train[torch.randint(0, n, (batch,), generator=generator)]
        marginals = shuffle_dimensions(joint, generator)
        t_joint, t_marg = discriminator(joint), discriminator(marginals)
        loss = F.softplus(-t_joint).mean() + F.softplus(t_marg).mean()
        return loss, lambda: {"train_ndm": dv_samples(t_joint.detach(), t_marg.detach()).item(), "loss": loss.item()}

    def validate() -> float:
        shuffles = torch.Generator().manual_seed(config.seed)  # the same shuffles at every check

        def bound_of(idx: torch.Tensor) -> torch.Tensor:
            joint = held[idx]
            return dv_samples(discriminator(joint), discriminator(shuffle_dimensions(joint, shuffles)))
        return batch_mean(held.shape[0], held_batch, bound_of)

    fit = fit_critic(discriminator, critic_step, config.steps, config.lr, on_step=on_step, validate=validate,
                     patience=config.early_stopping.patience)
    discriminator.eval()

    def bound_of(idx: torch.Tensor) -> torch.Tensor:
        joint = test[idx]
        return dv_samples(discriminator(joint), discriminator(shuffle_dimensions(joint, generator)))

    estimate, stderr, batches = heldout_estimate(test.shape[0], batch, generator, bound_of)
    return NDMResult(estimate, stderr, config.steps, batches, fit.curve, fit.steps_used, fit.best_step,
                     fit.stopped_improving)
