"""Prior matching (paper §3.3): make the distribution of sigmoid(Y) indistinguishable from U(0, 1).

The adversarial autoencoder baseline (``--method aae``) matches Y itself to N(0, I) instead
(Makhzani et al. 2015); ``PRIORS`` holds both: how Y is encoded for the prior and how the prior
is sampled.

This is a two-player game. The discriminator *maximises* its ability to tell
prior samples from encoded images; the encoder *minimises* it. Summing both into one loss and
minimising it for every parameter (a common mistake) makes the discriminator help the encoder
instead of opposing it. So each network gets only its own loss's gradient: the encoder's term
goes through the discriminator with its weights' gradients off, and the discriminator's term sees
Y detached. Then one backward of the sum and one Adam step over two parameter groups is exact.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def encode_for_prior(y: torch.Tensor) -> torch.Tensor:
    """The paper's code squashes Y with a sigmoid so its support matches the uniform prior's."""
    return torch.sigmoid(y)


def sample_prior(like: torch.Tensor) -> torch.Tensor:
    return torch.rand_like(like)


@dataclass(frozen=True)
class Prior:
    encode: Callable[[torch.Tensor], torch.Tensor]  # Y → the space the prior lives in
    sample: Callable[[torch.Tensor], torch.Tensor]  # a batch of prior samples shaped like the encoded batch


PRIORS: dict[str, Prior] = {
    "uniform": Prior(encode_for_prior, sample_prior),  # DIM: sigmoid(Y) against U(0, 1)
    "gaussian": Prior(lambda y: y, torch.randn_like),  # AAE: Y against N(0, I)
}


PENALTY_ON = ("prior", "both")  # where the discriminator's gradient penalty is taken


def discriminator_loss(
    discriminator: nn.Module, encoded: torch.Tensor, gradient_penalty: float = 0.0,
    sample: Callable[[torch.Tensor], torch.Tensor] = sample_prior, penalty_on: str = "prior",
) -> torch.Tensor:
    """Loss the discriminator minimises: the negated GAN value, -E_prior[log D] - E_enc[log(1 - D)].

    ``encoded`` must be detached from the encoder. With ``gradient_penalty`` > 0 adds
    weight · E‖∇D(v)‖², which keeps the discriminator smooth: on prior samples v (``penalty_on``
    "prior", dimctl's default), or the mean of that and the same on the encoded samples ("both",
    what the authors' code intends; through an indexing slip it penalises one sample per batch).
    """
    if penalty_on not in PENALTY_ON:
        raise ValueError(f"penalty_on {penalty_on!r} is not one of: {', '.join(PENALTY_ON)}")
    real = sample(encoded)
    penalised = [real, encoded] if penalty_on == "both" else [real]
    if gradient_penalty > 0:
        for t in penalised:
            t.requires_grad_(True)
    real_logits = discriminator(real)
    fake_logits = discriminator(encoded)
    loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if gradient_penalty > 0:
        outputs = [real_logits.sum(), fake_logits.sum()][:len(penalised)]
        grads = [torch.autograd.grad(o, t, create_graph=True)[0] for o, t in zip(outputs, penalised)]
        loss = loss + gradient_penalty * torch.stack([g.pow(2).sum(dim=1).mean() for g in grads]).mean()
    return loss


def encoder_prior_loss(discriminator: nn.Module, encoded: torch.Tensor) -> torch.Tensor:
    """Loss the encoder minimises: the non-saturating form -E_enc[log D(E(x))].

    It has the same fixed point as minimising E[log(1 - D)] but does not vanish when the
    discriminator wins early in training.
    """
    return F.softplus(-discriminator(encoded)).mean()
