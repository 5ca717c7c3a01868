"""BiGAN, a.k.a. adversarially learned inference with a deterministic encoder (Donahue et al.
2016; Dumoulin et al. 2016), the paper's baseline of Tables 1 and 4.

A DCGAN generator G maps z ~ N(0, I) (of Y's size) to images; the encoder E maps images to Y. A
joint discriminator D(image, code) tells data pairs (x, E(x)) from generated pairs (G(z), z); E
and G learn to fool it (non-saturating losses, ``BiGAN.adversary_losses``). At the optimum E inverts G, so Y
is a code of the image. The generator is published as generator.safetensors (`dimctl generate
sample` draws from it).
"""

import torch
import torch.nn.functional as F
from torch import nn

from dimctl.io.artifacts import save_generator
from dimctl.methods.base import Companion, Method, MethodOutput
from dimctl.models.encoders import EncoderConfig
from dimctl.models.generators import DCGAN_WIDTH, GeneratorConfig, build_generator


class BiGANModel(nn.Module):
    def __init__(self, encoder: nn.Module, encoder_config: EncoderConfig):
        super().__init__()
        if encoder_config.image_size != 32:
            raise ValueError("the DCGAN generator makes 32×32 images: bigan needs a 32×32 encoder")
        self.encoder = encoder
        self.generator_config = GeneratorConfig(image_size=32, channels=encoder_config.in_channels,
                                                z_dim=encoder_config.y_dim, arch="dcgan",
                                                width=max(1, round(DCGAN_WIDTH * encoder_config.width)))
        self.generator = build_generator(self.generator_config)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> MethodOutput:
        y = self.encoder(x)["y"]
        z = torch.randn_like(y)
        return MethodOutput(y, {}, self.loss({}), adversary=((x, y), (self.generator(z), z)))

    def loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.zeros((), device=next(self.parameters()).device)  # all of BiGAN's loss is adversarial


class JointDiscriminator(nn.Module):
    """D(image, code) → logit (positive: a data pair). Image path: DCGAN discriminator convs 4×4/2
    to 64, 128, 256 channels with LeakyReLU(0.2) (no BatchNorm: its batch statistics would tell data
    batches from generated ones); code path: linear 512; joint: linear 1024 → 1."""

    def __init__(self, channels: int, z_dim: int, width: float = 1.0):
        super().__init__()
        c = [max(1, round(n * width)) for n in (64, 128, 256)]
        self.image = nn.Sequential(
            nn.Conv2d(channels, c[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c[0], c[1], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c[1], c[2], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        )
        self.code = nn.Sequential(nn.Linear(z_dim, 512), nn.LeakyReLU(0.2, inplace=True))
        self.joint = nn.Sequential(nn.Linear(c[2] * 4 * 4 + 512, 1024), nn.LeakyReLU(0.2, inplace=True), nn.Linear(1024, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.joint(torch.cat([self.image(x).flatten(1), self.code(z)], dim=1)).squeeze(-1)


def _save_generator(model: nn.Module, path, run) -> None:
    """RUN/generator.safetensors, which `dimctl generate sample` draws from."""
    save_generator(path, model.generator, model.generator_config, run.dataset, run.step, run.training)


class BiGAN(Method):
    name, label, help = "bigan", "BiGAN", "bigan"
    image_size = 32  # the paper's 32×32 DCGAN generator
    companions = (Companion("generator.safetensors", _save_generator),)

    def build(self, config, encoder, encoder_config, num_train):
        return BiGANModel(encoder, encoder_config), JointDiscriminator(encoder_config.in_channels, config.encoder.y_dim,
                                                                       encoder_config.width)

    def adversary_losses(self, out, model, discriminator, bare_discriminator, config):
        """Non-saturating: the encoder and generator make data pairs look generated and generated
        pairs look like data; the discriminator the opposite, on detached pairs."""
        (x, y), (fake, z) = out.adversary
        bare_discriminator.requires_grad_(False)
        fool = F.softplus(bare_discriminator(x, y.float())).mean() + F.softplus(-bare_discriminator(fake, z)).mean()
        bare_discriminator.requires_grad_(True)
        disc_loss = (F.softplus(-discriminator(x, y.detach().float())).mean()
                     + F.softplus(discriminator(fake.detach(), z)).mean())
        return fool, disc_loss, {"adversarial_encoder": fool, "adversarial_discriminator": disc_loss}
