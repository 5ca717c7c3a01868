"""The paper's reconstruction baselines: AE, VAE, β-VAE and AAE (Table 1, Table 4).

All four pair the encoder with the paper's DCGAN decoder (models/decoders.py) from Y and learn
by reconstructing the normalised image; the decoder is published beside the encoder, so
`dimctl reconstruct --decoder` can score it.

- ``ae``: Y is the code; loss = per-pixel MSE.
- ``vae`` / ``beta-vae`` (Kingma & Welling 2013; Higgins et al. 2016): Y is the posterior mean μ
  and a linear layer on the encoder's ``fc`` tap gives log σ² (trained here, not published: the
  published encoder's Y is μ). The decoder sees z = μ + σ·ε. Loss = the negative ELBO with a
  Gaussian decoder of variance ½, i.e. the per-image *sum* of squared errors, plus β·KL(q(z|x) ‖
  N(0, I)) in closed form; β = 1 for ``vae``, ``--beta`` (default 4) for ``beta-vae``.
- ``aae`` (Makhzani et al. 2015): the AE, plus Y matched to N(0, I) by a discriminator
  (the loop's prior adversary, weight ``--gamma``, default 1).
"""

import torch
import torch.nn.functional as F
from torch import nn

from dimctl.errors import UsageError
from dimctl.io.artifacts import save_decoder, sha256_of
from dimctl.methods.base import Companion, Method, MethodOutput
from dimctl.models.decoders import DecoderConfig, build_decoder
from dimctl.models.discriminators import PriorDiscriminator
from dimctl.models.encoders import EncoderConfig

DEFAULT_BETA_VAE = 4.0  # Higgins et al.'s β for their 2-D shapes; --beta overrides
LOG_VAR_RANGE = (-12.0, 8.0)  # keeps exp(log σ²) finite early in training


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per sample, in nats: ½ Σ (μ² + σ² − log σ² − 1)."""
    return 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1.0).sum(dim=1)


class AutoencoderModel(nn.Module):
    def __init__(self, encoder: nn.Module, encoder_config: EncoderConfig, variational: bool = False,
                 kl_weight: float = 1.0, prior: str | None = None):
        super().__init__()
        if encoder_config.image_size != 32:
            raise ValueError("the paper's decoder makes 32×32 images: reconstruction baselines need a 32×32 encoder")
        self.encoder = encoder
        self.variational = variational
        self.kl_weight = kl_weight
        self.prior = prior  # "gaussian" for the AAE's adversary on Y
        self.decoder_config = DecoderConfig(in_features=encoder_config.y_dim, out_channels=encoder_config.in_channels,
                                            image_size=32, source_layer="y", width=encoder_config.width)
        self.decoder = build_decoder(self.decoder_config)
        if variational:
            self.log_var = nn.Linear(encoder_config.fc_dim, encoder_config.y_dim)

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> MethodOutput:
        taps = self.encoder(x)
        y = taps["y"]
        terms = {}
        code = y
        if self.variational:
            log_var = self.log_var(taps["fc"]).float().clamp(*LOG_VAR_RANGE)
            code = y + torch.exp(0.5 * log_var).to(y.dtype) * torch.randn_like(y)
            terms["kl"] = gaussian_kl(y.float(), log_var).mean()
        reconstruction = self.decoder(code).float()
        terms["reconstruction_mse"] = F.mse_loss(reconstruction, x.float())
        return MethodOutput(y, terms, self.loss(terms))

    def loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.variational:
            return terms["reconstruction_mse"]
        pixels = self.decoder_config.out_channels * 32 * 32
        # -log N(x; x̂, ½I) summed over pixels (up to a constant) = Σ (x - x̂)²
        return terms["reconstruction_mse"] * pixels + self.kl_weight * terms["kl"]


def _save_decoder(model: nn.Module, path, run) -> None:
    """RUN/decoder.safetensors, bound to the run's encoder, which `dimctl reconstruct --decoder` scores."""
    save_decoder(path, model.decoder, model.decoder_config, sha256_of(run.encoder_path), run.encoder_path, "y",
                 run.dataset, run.step, run.training)


class AE(Method):
    name, label, help = "ae", "AE", "ae"
    image_size = 32  # the paper's 32×32 DCGAN decoder
    companions = (Companion("decoder.safetensors", _save_decoder),)

    def build(self, config, encoder, encoder_config, num_train):
        return AutoencoderModel(encoder, encoder_config), None


class VAE(AE):
    name, label, help = "vae", "VAE", "vae"

    def build(self, config, encoder, encoder_config, num_train):
        return AutoencoderModel(encoder, encoder_config, variational=True, kl_weight=1.0), None


class BetaVAE(AE):
    name, label, help = "beta-vae", "β-VAE", f"beta-vae (KL weight --beta, default {DEFAULT_BETA_VAE:g})"
    weights = {"beta": DEFAULT_BETA_VAE}

    def build(self, config, encoder, encoder_config, num_train):
        return AutoencoderModel(encoder, encoder_config, variational=True, kl_weight=config.objective.beta), None

    def validate(self, config) -> None:
        if config.objective.beta <= 0:
            raise UsageError("--method beta-vae needs --beta > 0 (the KL weight)")

    def describe(self, settings, weight=str):
        return f"{self.label} β={weight(settings.get('beta'))}"


class AAE(AE):
    name, label, help = "aae", "AAE", "aae (Y matched to N(0, I), weight --gamma, default 1)"
    weights = {"gamma": 1.0}

    def build(self, config, encoder, encoder_config, num_train):
        return AutoencoderModel(encoder, encoder_config, prior="gaussian"), PriorDiscriminator(config.encoder.y_dim)

    def validate(self, config) -> None:
        if config.objective.gamma <= 0:
            raise UsageError("--method aae needs --gamma > 0 (the weight of matching Y to N(0, I))")

    def describe(self, settings, weight=str):
        return f"{self.label} γ={weight(settings.get('gamma'))}"
