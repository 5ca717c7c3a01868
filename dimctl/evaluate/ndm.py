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

from dimctl.models.discriminators import PriorDiscriminator
from dimctl.evaluate.heldout import batch_size_for, mean_and_stderr
from dimctl.objectives.bounds import dv_samples


@dataclass(frozen=True)
class NDMConfig:
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-4
    seed: int = 0


@dataclass
class NDMResult:
    ndm: float
    stderr: float
    steps: int
    eval_batches: int
    curve: list[dict] = field(default_factory=list)


def shuffle_dimensions(y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Permute each column independently: keeps every marginal, destroys every dependence."""
    order = torch.rand(y.shape, generator=generator).argsort(dim=0)
    return y.gather(0, order)


def neural_dependency(train: torch.Tensor, test: torch.Tensor, config: NDMConfig = NDMConfig(),
                      on_step: Callable[[int, float], None] | None = None) -> NDMResult:
    """NDM of (N, d) features: trained on ``train``, evaluated on ``test`` (both standardised)."""
    n, d = train.shape
    batch = batch_size_for(config.batch_size, n, test.shape[0])
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    # Same shape as the prior discriminator of App. A.2: fully connected 1000 → 200 → 1.
    discriminator = PriorDiscriminator(d)
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=config.lr, fused=True)
    curve = []
    for step in range(1, config.steps + 1):
        joint = train[torch.randint(0, n, (batch,), generator=generator)]
        marginals = shuffle_dimensions(joint, generator)
        t_joint, t_marg = discriminator(joint), discriminator(marginals)
        loss = F.softplus(-t_joint).mean() + F.softplus(t_marg).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 100 == 0 or step == config.steps:
            value = dv_samples(t_joint.detach(), t_marg.detach()).item()
            curve.append({"step": step, "train_ndm": value, "loss": loss.item()})
            if on_step is not None:
                on_step(step, value)
    discriminator.eval()
    values = []
    with torch.no_grad():
        order = torch.randperm(test.shape[0], generator=generator)
        for start in range(0, test.shape[0] - batch + 1, batch):
            joint = test[order[start:start + batch]]
            values.append(dv_samples(discriminator(joint), discriminator(shuffle_dimensions(joint, generator))).item())
    return NDMResult(*mean_and_stderr(values), config.steps, len(values), curve)
