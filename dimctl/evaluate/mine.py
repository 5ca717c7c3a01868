"""MINE's I(X; Y) between images and their representation (paper §4.2, Table 4).

A statistics network T(x, y): a small conv net embeds the image, its output is concatenated
with Y, and fully connected layers give a score. Positives pair each image with its own Y;
negatives pair it with another image's Y (a random derangement of the batch). T is trained with
the Donsker-Varadhan bound and MINE's moving-average gradient correction, with a learning rate
that decays (cosine) to zero; the DV bound on held-out test pairs is the estimate, in nats.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from dimctl.data.transforms import normalise
from dimctl.evaluate.critic_fit import (CriticFitSettings, batch_mean, batch_size_for, fit_critic, heldout_estimate,
                                        validation_split)
from dimctl.objectives.bounds import DVMovingAverage, dv_samples
from dimctl.settings import setting


@dataclass(frozen=True)
class MINEConfig(CriticFitSettings):
    """Settings of a MINE estimate, each with its option's help (`dimctl mine`'s options are derived from these)."""

    steps: int = setting(2000, "Most statistics-network training steps; training stops earlier when the validation "
                               "estimate stops rising.", positive=True)
    batch_size: int = setting(64, "Image/representation pairs per step.", minimum=2)
    lr: float = setting(1e-4, "Initial Adam learning rate (decays to 0 on a cosine).", positive=True)
    seed: int = setting(0, "Seed of the network and the batches.")
    ema_rate: float = setting(0.01, "Rate of MINE's moving average.", cli=False, positive=True)


@dataclass
class MINEResult:
    estimate: float
    stderr: float
    steps: int
    eval_batches: int
    curve: list[dict] = field(default_factory=list)
    steps_used: int = 0
    best_step: int = 0
    stopped_improving: bool = False


class StatisticsNetwork(nn.Module):
    """T(x, y): conv 4×4/2 → 64, conv 4×4/2 → 128 on the image, flattened, joined with y,
    then fully connected 512 → 512 → 1 (ReLU)."""

    def __init__(self, channels: int, image_size: int, y_dim: int):
        super().__init__()
        self.image = nn.Sequential(
            nn.Conv2d(channels, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2, 1), nn.ReLU(),
            nn.Flatten(),
        )
        flat = 128 * (image_size // 4) ** 2
        self.joint = nn.Sequential(nn.Linear(flat + y_dim, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                   nn.Linear(512, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of (x_i, y_i) and of (x_i, y_π(i)) for a derangement π (here: shift by one)."""
        h = self.image(x)
        positives = self.joint(torch.cat([h, y], 1)).squeeze(-1)
        negatives = self.joint(torch.cat([h, y.roll(1, dims=0)], 1)).squeeze(-1)
        return positives, negatives


def estimate_image_mi(train_images: torch.Tensor, train_y: torch.Tensor, test_images: torch.Tensor,
                      test_y: torch.Tensor, config: MINEConfig = MINEConfig(),
                      on_step: Callable[[int, float], None] | None = None,
                      device: torch.device | str = "cpu") -> MINEResult:
    """I(X; Y) from uint8 images (N, C, H, W) and their (standardised) representations (N, d).

    Batches are drawn without repeats, so rolling the batch by one pairs each image with the Y
    of a random other image.
    """
    fit_idx, val_idx = validation_split(train_images.shape[0], config.early_stopping.fraction, config.seed)
    held_images, held_y = train_images[val_idx.to(train_images.device)], train_y[val_idx.to(train_y.device)]
    train_images, train_y = train_images[fit_idx.to(train_images.device)], train_y[fit_idx.to(train_y.device)]
    n = train_images.shape[0]
    batch = batch_size_for(config.batch_size, n, test_images.shape[0])
    held_batch = min(batch, held_images.shape[0])  # validation_split holds out at least two
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    network = StatisticsNetwork(train_images.shape[1], train_images.shape[2], train_y.shape[1]).to(device)
    objective = DVMovingAverage(config.ema_rate)

    def critic_step():
        idx = torch.randperm(n, generator=generator)[:batch]  # distinct samples: no negative is a positive
        value = objective.samples(*network(normalise(train_images[idx]), train_y[idx]))
        return -value, lambda: {"train_estimate": value.item()}

    def validate() -> float:
        return batch_mean(held_images.shape[0], held_batch,
                          lambda idx: dv_samples(*network(normalise(held_images[idx]), held_y[idx])))

    fit = fit_critic(network, critic_step, config.steps, config.lr, cosine_lr=True, on_step=on_step,
                     validate=validate, patience=config.early_stopping.patience)
    network.eval()
    estimate, stderr, batches = heldout_estimate(
        test_images.shape[0], batch, generator,
        lambda idx: dv_samples(*network(normalise(test_images[idx]), test_y[idx])))
    return MINEResult(estimate, stderr, config.steps, batches, fit.curve, fit.steps_used, fit.best_step,
                      fit.stopped_improving)
