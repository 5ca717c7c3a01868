"""AE, VAE, β-VAE and AAE: the KL term, the losses, and that reconstruction is learned."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from dimctl.data.registry import load_dataset
from dimctl.data.transforms import normalise
from dimctl.methods.autoencoders import AutoencoderModel, gaussian_kl
from dimctl.models.encoders import EncoderConfig, build_encoder

SMALL = EncoderConfig(in_channels=1, image_size=32, width=0.25, fc_dim=64, y_dim=16)


def model(**kwargs):
    torch.manual_seed(0)
    return AutoencoderModel(build_encoder(SMALL), SMALL, **kwargs)


def test_kl_matches_torch_distributions():
    torch.manual_seed(0)
    mu, log_var = torch.randn(32, 16) * 2, torch.randn(32, 16)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * log_var)), Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(gaussian_kl(mu, log_var), expected, rtol=1e-5, atol=1e-5)
    assert gaussian_kl(torch.zeros(3, 8), torch.zeros(3, 8)).abs().max() == 0  # the prior itself


def test_vae_loss_is_the_negative_elbo_with_beta():
    x = torch.rand(8, 1, 32, 32) * 2 - 1
    vae, beta_vae = model(variational=True, kl_weight=1.0), model(variational=True, kl_weight=4.0)
    step = vae(x)
    assert set(step.terms) == {"kl", "reconstruction_mse"} and step.y.shape == (8, 16)
    pixels = 32 * 32
    torch.testing.assert_close(vae.loss(step.terms), step.terms["reconstruction_mse"] * pixels + step.terms["kl"])
    torch.testing.assert_close(beta_vae.loss(step.terms), step.terms["reconstruction_mse"] * pixels + 4 * step.terms["kl"])
    ae = model()
    assert set(ae(x).terms) == {"reconstruction_mse"} and ae.prior is None
    assert model(prior="gaussian").prior == "gaussian"


def test_vae_samples_codes_around_the_mean():
    vae = model(variational=True).eval()
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        vae.log_var.weight.zero_()
        vae.log_var.bias.fill_(-30.0)  # σ → 0 (clamped to the floor): the code is μ itself
        mu = vae.encoder(x)["y"]
        torch.testing.assert_close(vae(x).y, mu)


def test_autoencoder_learns_to_reconstruct_digits():
    images = normalise(load_dataset("digits").train_images[:256])
    ae = model()
    optimiser = torch.optim.Adam(ae.parameters(), lr=2e-3)
    losses = []
    for step in range(60):
        x = images[(step * 64) % 256:(step * 64) % 256 + 64]
        loss = ae.loss(ae(x).terms)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_decoder_needs_32px_encoder():
    alex = EncoderConfig(arch="alexnet", in_channels=1, image_size=64, width=0.1, fc_dim=32)
    with pytest.raises(ValueError, match="32×32"):
        AutoencoderModel(build_encoder(alex), alex)
