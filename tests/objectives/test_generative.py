"""The generator objectives by hand: bounds, penalties, which player each gradient reaches, and the
IE encoder's two modes on a toy problem."""

import math

import pytest
import torch
from torch import nn

from dimctl.models.generators import CriticConfig
from dimctl.objectives.generative import (ImplicitPriorMatching, NonSaturatingGAN, WassersteinGANGP,
                                          build_objective, contractive_penalty, frozen, jsd_lower_bound,
                                          mode_overlap)


def test_jsd_bound_is_zero_for_a_blind_critic_and_approaches_log_4_for_a_perfect_one():
    zeros = torch.zeros(100)
    assert jsd_lower_bound(zeros, zeros).item() == pytest.approx(0.0, abs=1e-6)
    perfect = jsd_lower_bound(torch.full((100,), 30.0), torch.full((100,), -30.0))
    assert perfect.item() == pytest.approx(2 * math.log(2), abs=1e-6)
    # A critic that has it backwards scores below zero: the bound is a lower bound, not a distance.
    assert jsd_lower_bound(torch.full((10,), -3.0), torch.full((10,), 3.0)).item() < 0


def test_mode_overlap_is_the_bhattacharyya_coefficient():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, generator=g)
    b = torch.randn(200_000, generator=g)
    assert mode_overlap(a, b).item() == pytest.approx(1.0, abs=1e-3)
    assert mode_overlap(a, b + 1).item() == pytest.approx(math.exp(-1 / 8), abs=2e-3)  # N(0,1) vs N(1,1)
    assert mode_overlap(a, b + 20).item() < 1e-20  # separated modes: App. A.8's sign of failing training
    # Unequal spreads: sqrt(2·1·2 / 5) for σ = 1 and 2 at the same mean.
    assert mode_overlap(a, 2 * b).item() == pytest.approx(math.sqrt(4 / 5), abs=2e-3)


def test_contractive_penalty_of_a_linear_map_is_its_squared_norm_on_each_half():
    w = torch.tensor([[3.0, -4.0]], requires_grad=True)  # ‖w‖² = 25 for every input
    x = torch.randn(6, 2).requires_grad_(True)
    penalty = contractive_penalty(x @ w.T, x, n_real=2)
    assert penalty.item() == pytest.approx(50.0)  # E_real 25 + E_fake 25
    penalty.backward()  # differentiable (create_graph), as a training loss must be
    torch.testing.assert_close(w.grad, 4 * w.detach())  # ∂(2‖w‖²)/∂w


def test_wgan_gradient_penalty_vanishes_for_a_unit_slope_critic():
    for slope, expected in ((1.0, 0.0), (3.0, 40.0)):  # λ·(‖∇‖ − 1)², λ = 10
        critic = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            critic.weight.copy_(torch.tensor([[slope, 0.0, 0.0, 0.0]]))
        _, terms = WassersteinGANGP(critic, penalty=10.0)(torch.randn(8, 4), torch.randn(8, 4))
        assert (10.0 * terms["penalty"]).item() == pytest.approx(expected, abs=1e-5)


def test_frozen_passes_gradient_to_the_input_only():
    net = nn.Linear(3, 1)
    x = torch.randn(4, 3, requires_grad=True)
    frozen(net)(x).sum().backward()
    assert x.grad is not None and net.weight.grad is None
    torch.testing.assert_close(x.grad, net.weight.detach().expand(4, 3))


def test_the_generator_loss_reaches_the_generator_only():
    for method in ("ie", "nsgan-cp", "wgan-gp"):
        objective = build_objective(method, CriticConfig(width=4), penalty=1.0)
        fake = torch.randn(4, 1, 32, 32, requires_grad=True)
        loss, _ = objective.generator_loss(fake)
        loss.backward()
        assert fake.grad is not None and fake.grad.abs().sum() > 0, method
        assert all(p.grad is None for p in objective.parameters()), method


def test_ie_critics_maximise_the_bound_and_the_encoder_minimises_it():
    """One backward gives each player its own loss's gradient: the 1-D critics that of −bound
    (+ their penalty), the encoder that of its matching terms + contractive penalty."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    objective = ImplicitPriorMatching(encoder, penalty=0.0, critic_penalty=0.0)
    real, fake = torch.randn(16, 4), torch.randn(16, 4) + 1
    torch.manual_seed(1)
    loss, terms = objective(real, fake)
    loss.backward()
    critic_grads = [p.grad.clone() for p in objective.real_critic.parameters()]
    objective.zero_grad()
    torch.manual_seed(1)  # the same target samples
    _, terms = objective(real, fake)
    (-terms["jsd_real"]).backward()
    for got, want in zip(critic_grads, [p.grad for p in objective.real_critic.parameters()]):
        torch.testing.assert_close(got, want)
    assert set(terms) >= {"jsd_real", "jsd_fake", "penalty", "encoded_real_mean", "encoded_fake_mean", "mode_overlap"}


def _train_toy(mu_real: float, mu_fake: float, seed: int, steps: int = 400):
    """Real samples around +0.5, generated ones around -0.5 (8-D); a small MLP encoder."""
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(8, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    objective = ImplicitPriorMatching(encoder, penalty=0.0, mu_real=mu_real, mu_fake=mu_fake)
    critics = objective.prior_critic_parameters()
    ids = {id(p) for p in critics}
    optimiser = torch.optim.Adam([{"params": [p for p in objective.parameters() if id(p) not in ids]},
                                  {"params": critics, "lr": 5e-3}], lr=1e-3, betas=(0.0, 0.9))
    for _ in range(steps):
        loss, _ = objective(0.5 + torch.randn(64, 8), -0.5 + torch.randn(64, 8))
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(critics, 1.0)
        optimiser.step()
    with torch.no_grad():
        return encoder(0.5 + torch.randn(4000, 8)).squeeze(1), encoder(-0.5 + torch.randn(4000, 8)).squeeze(1)


@pytest.mark.parametrize("mu_real,mu_fake", [(0.0, 1.0), (1.0, 0.0)])
def test_ie_encoder_maps_real_and_generated_to_their_own_modes(mu_real, mu_fake):
    # Eq. 13: E(real) ~ N(μ_real, 1), E(generated) ~ N(μ_fake, 1). Swapping the targets swaps the
    # direction, so it is the objective, not the data, that decides which way the modes separate.
    real, fake = _train_toy(mu_real, mu_fake, seed=0)
    assert (fake.mean() - real.mean()).item() * (mu_fake - mu_real) > 0.6
    assert real.mean().item() == pytest.approx(mu_real, abs=0.25)
    assert fake.mean().item() == pytest.approx(mu_fake, abs=0.25)
    assert 0.7 < real.std().item() < 1.3 and 0.7 < fake.std().item() < 1.3
    assert mode_overlap(real, fake).item() == pytest.approx(math.exp(-1 / 8), abs=0.1)


def test_ie_generator_loss_pulls_the_generated_mode_to_the_real_one():
    # Eq. 15: (E[E(G(z))] − μ_real)²; its gradient moves generated encodings towards μ_real.
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        encoder[1].weight.copy_(torch.tensor([[1.0, 0.0]]))
    objective = ImplicitPriorMatching(encoder, penalty=0.0, mu_real=0.0, mu_fake=1.0)
    fake = torch.tensor([[1.0, 5.0], [2.0, -5.0]], requires_grad=True)  # encodings 1 and 2, mean 1.5
    loss, _ = objective.generator_loss(fake)
    assert loss.item() == pytest.approx(1.5 ** 2)
    loss.backward()
    torch.testing.assert_close(fake.grad, torch.tensor([[1.5, 0.0], [1.5, 0.0]]))  # descent lowers the encodings


def test_nsgan_losses_by_hand():
    critic = nn.Sequential(nn.Flatten(), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.fill_(2.0)
    objective = NonSaturatingGAN(critic, penalty=0.5)
    real, fake = torch.ones(3, 1), -torch.ones(3, 1)  # logits +2 and -2
    loss, terms = objective(real, fake)
    softplus = math.log1p(math.exp(-2.0))
    assert terms["gan_loss"].item() == pytest.approx(2 * softplus)
    assert terms["penalty"].item() == pytest.approx(8.0)  # ‖∇‖² = 4 on each half
    assert loss.item() == pytest.approx(2 * softplus + 0.5 * 8.0)
    g_loss, _ = objective.generator_loss(fake)
    assert g_loss.item() == pytest.approx(math.log1p(math.exp(2.0)))  # softplus(-D(G(z))) = softplus(2)
