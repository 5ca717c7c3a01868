"""BiGAN: networks, and that one backward gives each side exactly its own loss's gradient."""

import torch
import torch.nn.functional as F

from dimctl.methods import build_method
from dimctl.methods.bigan import BiGANModel, JointDiscriminator
from dimctl.models.encoders import EncoderConfig, build_encoder
from dimctl.train.config import PretrainConfig
from dimctl.train.pretrain import make_accelerator, step_losses

SMALL = EncoderConfig(in_channels=1, image_size=32, width=0.25, fc_dim=32, y_dim=8)


def test_generator_and_discriminator_shapes():
    torch.manual_seed(0)
    model = BiGANModel(build_encoder(SMALL), SMALL)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    out = model(x)
    (data_x, y), (fake, z) = out.adversary
    assert data_x is x and y.shape == z.shape == (4, 8) and fake.shape == x.shape
    assert fake.abs().max() <= 1  # tanh
    assert JointDiscriminator(1, 8, 0.25)(x, y).shape == (4,)
    assert model.generator_config.arch == "dcgan" and model.generator_config.z_dim == 8


def test_one_backward_gives_each_network_its_own_gradient():
    config = PretrainConfig.of(method="bigan", preset=None, width=0.25, fc_dim=32, y_dim=8, cpu=True, gamma=0.0,
                            precision="fp32")  # compared below with the same losses computed in fp32
    accelerator = make_accelerator(config)
    torch.manual_seed(0)
    model, disc = build_method(config, build_encoder(SMALL), SMALL, num_train=0)
    x = torch.rand(6, 1, 32, 32) * 2 - 1

    torch.manual_seed(1)
    loss, terms, _ = step_losses(model, disc, x, config, accelerator)
    loss.backward()
    combined = {n: p.grad.clone() for n, p in [*model.named_parameters(), *disc.named_parameters()] if p.grad is not None}
    model.zero_grad(), disc.zero_grad()

    # The same step as two separate losses: encoder+generator vs discriminator.
    torch.manual_seed(1)
    (x_, y), (fake, z) = model(x).adversary
    fool = F.softplus(disc(x_, y)).mean() + F.softplus(-disc(fake, z)).mean()
    model_grads = torch.autograd.grad(fool, list(model.parameters()), allow_unused=True)
    disc_loss = F.softplus(-disc(x_, y.detach())).mean() + F.softplus(disc(fake.detach(), z)).mean()
    disc_grads = torch.autograd.grad(disc_loss, list(disc.parameters()))
    torch.testing.assert_close(terms["adversarial_encoder"], fool)
    torch.testing.assert_close(terms["adversarial_discriminator"], disc_loss)
    for (name, _), g in zip(model.named_parameters(), model_grads):
        if g is not None:
            torch.testing.assert_close(combined[name], g, rtol=1e-4, atol=1e-6)
    for (name, _), g in zip(disc.named_parameters(), disc_grads):
        torch.testing.assert_close(combined[name], g, rtol=1e-4, atol=1e-6)
