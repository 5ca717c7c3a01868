"""Prior matching is a game: two losses, two optimisers, opposite goals."""

import torch

from dimctl.models.discriminators import PriorDiscriminator
from dimctl.objectives import prior


def test_adversarial_game_pulls_encoded_distribution_to_the_prior():
    # A one-parameter "encoder": sigmoid(z + shift). Starting far from U(0,1) (mean ≈ 0.95),
    # alternating discriminator (maximise) and encoder (minimise) steps must bring the mean near 0.5.
    torch.manual_seed(0)
    shift = torch.nn.Parameter(torch.tensor(3.0))
    disc = PriorDiscriminator(1)
    enc_opt = torch.optim.Adam([shift], lr=0.05)
    disc_opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    for _ in range(300):
        encoded = prior.encode_for_prior(torch.randn(256, 1) * 1.5 + shift)
        disc_opt.zero_grad()
        disc.requires_grad_(False)
        enc_loss = prior.encoder_prior_loss(disc, encoded)
        disc.requires_grad_(True)
        enc_opt.zero_grad()
        enc_loss.backward()
        enc_opt.step()
        assert all(p.grad is None for p in disc.parameters())  # the encoder's loss never trains D
        disc_loss = prior.discriminator_loss(disc, encoded.detach(), gradient_penalty=1.0)
        disc_opt.zero_grad()
        disc_loss.backward()
        disc_opt.step()
    with torch.no_grad():
        mean = prior.encode_for_prior(torch.randn(4096, 1) * 1.5 + shift).mean().item()
    assert abs(mean - 0.5) < 0.1, mean


def test_discriminator_step_lowers_its_own_loss():
    torch.manual_seed(0)
    disc = PriorDiscriminator(4)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    encoded = torch.full((128, 4), 0.9)  # far from uniform: easy to tell apart
    before = prior.discriminator_loss(disc, encoded).item()
    for _ in range(50):
        loss = prior.discriminator_loss(disc, encoded)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert prior.discriminator_loss(disc, encoded).item() < before - 0.3
