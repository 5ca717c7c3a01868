"""Objectives for training an image generator: the paper's implicit prior matching (App. A.8) and
the two GANs it is compared with (App. A.9, Table 11), on identical networks.

**IE, implicit prior matching (Eq. 13–15).** An encoder E maps images to one number. It is
trained so that E(real) follows N(μ_real, 1) and E(generated) follows N(μ_fake, 1) (Eq. 13): each
of the two pushes is the prior matching of DIM (Eq. 7), estimated by its own 1-D discriminator
with the JSD f-GAN lower bound (Eq. 14),

    JSD(target ‖ encoded) ≥ 2·log 2 − E_target[softplus(−T(t))] − E_encoded[softplus(T(E(x)))],

which the discriminator T maximises and the encoder minimises — in the non-saturating form
E_encoded[softplus(−T(E(x)))], as dimctl's prior matching does (objectives/prior.py). It has the
same fixed point, but its push fades once T is fooled: the bound's own form,
−E[softplus(T(E(x)))], pushes harder the further the encodings move, and on digits it drove them
out to −300 within 100 steps. The generator does not play this game: it only moves the first
moment of the encoder's output on its samples to the real mode (Eq. 15), (E_z[E(G(z))] − μ_real)².
The two modes must overlap for the generator's gradient to be useful (App. A.8; ``mode_overlap``
tracks it). As App. A.9 says, the encoder carries the contractive penalty and the 1-D
discriminators have their gradients clipped (by the training loop, at ``clip_norm``). They also
carry a contractive penalty of their own (``critic_penalty``; the authors' code penalises them
too) and the loop trains them at a higher learning rate: on a toy problem, slower or unpenalised
ones lag the encoder, whose outputs then oscillate instead of settling on the two modes
(tests/objectives/test_generative.py trains the settled case).

**NS-GAN-CP.** The non-saturating GAN (Goodfellow et al. 2014): the critic minimises
softplus(−D(real)) + softplus(D(fake)) plus the contractive penalty; the generator minimises
softplus(−D(G(z))).

**WGAN-GP** (Gulrajani et al. 2017): the critic minimises D(fake) − D(real) + λ·(‖∇D(x̂)‖ − 1)²
at random interpolates x̂ of real and generated images; the generator minimises −D(G(z)).

**The contractive penalty** (Rifai et al. 2011; Mescheder et al. 2018's R1, on both real and
generated images as the authors' code does): E_real‖∇ₓf(x)‖² + E_fake‖∇ₓf(x)‖², the squared norm of
the network output's gradient with respect to its input image.

Each objective is one module holding every network on the critic side. Its ``forward(real,
fake)`` returns the critic side's whole loss; every parameter gets the gradient of its own
player's loss from one backward pass, because where one player's loss goes through the other
player's network, that network is called with detached weights (``frozen``) or on detached
inputs. ``generator_loss(fake)`` goes through the critic side with frozen weights.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dimctl.models.generators import CriticConfig, build_critic

LOG_4 = 2 * math.log(2)


def frozen(module: nn.Module) -> Callable[..., torch.Tensor]:
    """``module`` as a function of its input only: its weights are detached, so a loss through it
    trains whatever produced the input and leaves the module's own gradients untouched."""
    params = {name: p.detach() for name, p in module.named_parameters()}

    def call(*args):
        return functional_call(module, params, args)

    return call


def input_gradients(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """∂(Σ outputs)/∂inputs, kept in the graph (the penalty is differentiated again), flattened per sample."""
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.reshape(grad.shape[0], -1)


def contractive_penalty(outputs: torch.Tensor, inputs: torch.Tensor, n_real: int) -> torch.Tensor:
    """E_real‖∇ₓf‖² + E_fake‖∇ₓf‖² where ``inputs`` (requiring grad) is real images then generated
    ones, ``n_real`` of the first, and ``outputs`` is f(inputs), one row per image."""
    squared = input_gradients(outputs, inputs).pow(2).sum(dim=1)
    return squared[:n_real].mean() + squared[n_real:].mean()


def jsd_lower_bound(target_scores: torch.Tensor, encoded_scores: torch.Tensor) -> torch.Tensor:
    """f-GAN's Jensen-Shannon lower bound, shifted by log 4 so that a critic that cannot tell the
    two apart (T ≡ 0) scores 0: 2·log 2 − E[softplus(−T(target))] − E[softplus(T(encoded))]."""
    return LOG_4 - F.softplus(-target_scores).mean() - F.softplus(encoded_scores).mean()


def mode_overlap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How much two 1-D samples overlap: the Bhattacharyya coefficient of the normal distributions
    fitted to them, 1 for identical ones, → 0 as they separate. For N(μ_real, 1) and N(μ_fake, 1)
    targets the intended value is exp(−(μ_real − μ_fake)²/8) (0.88 for the defaults 0 and 1)."""
    a, b = a.detach().float().flatten(), b.detach().float().flatten()
    var_a, var_b = a.var().clamp_min(1e-12), b.var().clamp_min(1e-12)
    total = var_a + var_b
    return torch.sqrt(2 * torch.sqrt(var_a * var_b) / total) * torch.exp(-(a.mean() - b.mean()) ** 2 / (4 * total))


class ScalarCritic(nn.Module):
    """A 1-D discriminator of App. A.8 (Eq. 14): 1 → 64 → 1 with a leaky ReLU, as in the authors' code."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(-1)).squeeze(-1)


class ImplicitPriorMatching(nn.Module):
    """IE (App. A.8): the encoder and its two 1-D JSD critics."""

    def __init__(self, encoder: nn.Module, penalty: float, mu_real: float = 0.0, mu_fake: float = 1.0,
                 critic_penalty: float = 1.0):
        """``encoder``: images → (N, 1), the ResNet critic of models/generators.py in training."""
        super().__init__()
        self.encoder = encoder
        self.real_critic = ScalarCritic()  # N(μ_real, 1) against E(real images)
        self.fake_critic = ScalarCritic()  # N(μ_fake, 1) against E(generated images)
        self.penalty, self.mu_real, self.mu_fake, self.critic_penalty = penalty, mu_real, mu_fake, critic_penalty

    def prior_critic_parameters(self) -> list[nn.Parameter]:
        """The 1-D discriminators: the loop clips their gradients (App. A.9) and trains them at their own rate."""
        return [*self.real_critic.parameters(), *self.fake_critic.parameters()]

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = real.shape[0]
        x = torch.cat([real, fake]).detach().requires_grad_(True)
        encoded = self.encoder(x).squeeze(-1)
        e_real, e_fake = encoded[:n], encoded[n:]
        t_real = self.mu_real + torch.randn_like(e_real)
        t_fake = self.mu_fake + torch.randn_like(e_fake)

        # The critics maximise the bounds on detached encodings ...
        v_real = torch.cat([t_real, e_real.detach()]).requires_grad_(True)
        v_fake = torch.cat([t_fake, e_fake.detach()]).requires_grad_(True)
        s_real, s_fake = self.real_critic(v_real), self.fake_critic(v_fake)
        critic_penalty = (contractive_penalty(s_real.unsqueeze(-1), v_real, n)
                          + contractive_penalty(s_fake.unsqueeze(-1), v_fake, fake.shape[0]))
        jsd_real = jsd_lower_bound(s_real[:n], s_real[n:])
        jsd_fake = jsd_lower_bound(s_fake[:fake.shape[0]], s_fake[fake.shape[0]:])
        # ... and the encoder works against them through the critics' frozen weights, in the
        # non-saturating form (see the module docstring).
        encoder_real = F.softplus(-frozen(self.real_critic)(e_real)).mean()
        encoder_fake = F.softplus(-frozen(self.fake_critic)(e_fake)).mean()
        penalty = contractive_penalty(encoded, x, n)
        loss = (-(jsd_real + jsd_fake) + self.critic_penalty * critic_penalty
                + (encoder_real + encoder_fake) + self.penalty * penalty)
        return loss, {
            "jsd_real": jsd_real, "jsd_fake": jsd_fake, "penalty": penalty,
            "encoded_real_mean": e_real.mean(), "encoded_fake_mean": e_fake.mean(),
            "mode_overlap": mode_overlap(e_real, e_fake),
        }

    def generator_loss(self, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 15: (E_z[E(G(z))] − μ_real)²."""
        encoded = frozen(self.encoder)(fake).squeeze(-1)
        return (encoded.mean() - self.mu_real) ** 2, {}


class NonSaturatingGAN(nn.Module):
    """NS-GAN-CP: the non-saturating GAN with the contractive penalty on its critic."""

    def __init__(self, critic: nn.Module, penalty: float):
        super().__init__()
        self.critic = critic
        self.penalty = penalty

    def prior_critic_parameters(self) -> list[nn.Parameter]:
        return []  # no 1-D discriminators

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = real.shape[0]
        x = torch.cat([real, fake]).detach().requires_grad_(True)
        logits = self.critic(x).squeeze(-1)
        gan = F.softplus(-logits[:n]).mean() + F.softplus(logits[n:]).mean()
        penalty = contractive_penalty(logits, x, n)
        return gan + self.penalty * penalty, {
            "gan_loss": gan, "penalty": penalty, "critic_real_mean": logits[:n].mean(),
            "critic_fake_mean": logits[n:].mean(), "mode_overlap": mode_overlap(logits[:n], logits[n:]),
        }

    def generator_loss(self, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return F.softplus(-frozen(self.critic)(fake)).mean(), {}


class WassersteinGANGP(nn.Module):
    """WGAN-GP: the Wasserstein critic with the gradient penalty at interpolates."""

    def __init__(self, critic: nn.Module, penalty: float):
        super().__init__()
        self.critic = critic
        self.penalty = penalty

    def prior_critic_parameters(self) -> list[nn.Parameter]:
        return []  # no 1-D discriminators

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = real.shape[0]
        eps = torch.rand(n, *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
        between = real + eps * (fake - real)
        # One forward pass over real, generated and interpolated images (one forward per step is
        # what DistributedDataParallel expects); the critic has no batch norm, so this is the same
        # as three passes.
        x = torch.cat([real, fake, between]).detach().requires_grad_(True)
        scores = self.critic(x).squeeze(-1)
        s_real, s_fake = scores[:n], scores[n:2 * n]
        slopes = input_gradients(scores, x)[2 * n:].norm(dim=1)
        penalty = (slopes - 1).pow(2).mean()
        wasserstein = s_real.mean() - s_fake.mean()
        return -wasserstein + self.penalty * penalty, {
            "wasserstein": wasserstein, "penalty": penalty, "critic_real_mean": s_real.mean(),
            "critic_fake_mean": s_fake.mean(), "mode_overlap": mode_overlap(s_real, s_fake),
        }

    def generator_loss(self, fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return -frozen(self.critic)(fake).mean(), {}


@dataclass(frozen=True)
class GeneratorObjective:
    """One `generate train --method`: how to build its critic side, and its defaults."""

    name: str
    # (critic network, penalty, mu_real, mu_fake, prior_critic_penalty) → the critic side; the GANs
    # use only the first two (the means and the 1-D critics' penalty are IE's).
    build: Callable[[nn.Module, float, float, float, float], nn.Module]
    default_penalty: float
    default_critic_steps: int  # critic updates per generator update


# The penalty weights: the contractive penalty's 0.5 is the authors' code's encoder penalty (also
# used for NS-GAN-CP: "identical training procedures"); λ = 10 is Gulrajani et al.'s. Critic steps:
# Gulrajani et al.'s 5 for WGAN-GP, 1 for the others.
GENERATOR_OBJECTIVES: dict[str, GeneratorObjective] = {o.name: o for o in (
    GeneratorObjective("ie", ImplicitPriorMatching, default_penalty=0.5, default_critic_steps=1),
    GeneratorObjective("nsgan-cp", lambda critic, penalty, *ie_only: NonSaturatingGAN(critic, penalty),
                       default_penalty=0.5, default_critic_steps=1),
    GeneratorObjective("wgan-gp", lambda critic, penalty, *ie_only: WassersteinGANGP(critic, penalty),
                       default_penalty=10.0, default_critic_steps=5),
)}

# Views of the registry by facet, for train/generate.py's settings and help.
GENERATOR_METHODS = tuple(GENERATOR_OBJECTIVES)
DEFAULT_PENALTY = {name: o.default_penalty for name, o in GENERATOR_OBJECTIVES.items()}
DEFAULT_CRITIC_STEPS = {name: o.default_critic_steps for name, o in GENERATOR_OBJECTIVES.items()}


def build_objective(method: str, critic_config: CriticConfig, penalty: float,
                    mu_real: float = 0.0, mu_fake: float = 1.0, prior_critic_penalty: float = 1.0) -> nn.Module:
    """The method's critic side around a fresh ResNet critic (the IE encoder is the same network)."""
    if critic_config.out_features != 1:
        raise ValueError("the critic and the IE encoder have one output")
    if method not in GENERATOR_OBJECTIVES:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(GENERATOR_OBJECTIVES)}")
    return GENERATOR_OBJECTIVES[method].build(build_critic(critic_config), penalty, mu_real, mu_fake,
                                              prior_critic_penalty)
