"""What `dimctl pretrain --method` trains: Deep InfoMax and the paper's comparison methods.

``METHODS`` maps each name to a builder ``(config, encoder, encoder_config, num_train) → (model,
discriminator or None)``; the model follows methods/base.py, the discriminator is the adversary
the loop trains against it. Adding a method is adding one entry (and its module).

    dim       Deep InfoMax (objectives/dim.py), with prior matching when γ > 0
    ae        autoencoder                     vae, beta-vae   variational autoencoders
    aae       adversarial autoencoder         bigan           BiGAN / ALI with a deterministic encoder
    nat       noise as targets                cpc             contrastive predictive coding
"""

from collections.abc import Callable

from torch import nn

from dimctl.methods.autoencoders import AutoencoderModel
from dimctl.methods.base import MethodStep
from dimctl.methods.bigan import BiGANModel, JointDiscriminator
from dimctl.methods.cpc import CPCModel
from dimctl.methods.dim import DIMModel
from dimctl.methods.nat import NATModel
from dimctl.models.discriminators import PriorDiscriminator
from dimctl.models.encoders import EncoderConfig, build_encoder, tap_shapes
from dimctl.objectives.dim import DIMHeads
from dimctl.objectives.occlusion import block_size, receptive_field

# The paper's names, for reports and help.
METHOD_NAMES = {"dim": "DIM", "ae": "AE", "vae": "VAE", "beta-vae": "β-VAE", "aae": "AAE", "bigan": "BiGAN",
                "nat": "NAT", "cpc": "CPC"}
# Methods whose decoder or generator makes 32×32 images (the paper's DCGAN networks).
NEEDS_32PX = ("ae", "vae", "beta-vae", "aae", "bigan")
DEFAULT_BETA_VAE = 4.0  # Higgins et al.'s β for their 2-D shapes; --beta overrides


def _dim(config, encoder, encoder_config, num_train):
    block = 0
    if config.occlude:  # squares at least a local feature's receptive field wide (objectives/occlusion.py)
        field = receptive_field(build_encoder(encoder_config), encoder_config.in_channels, encoder_config.image_size)
        block = block_size(encoder_config.image_size, field)
    heads = DIMHeads(config.dim(), tap_shapes(encoder_config), occlusion_block=block)
    discriminator = PriorDiscriminator(config.y_dim) if config.gamma > 0 else None
    return DIMModel(encoder, heads), discriminator


def _ae(config, encoder, encoder_config, num_train):
    return AutoencoderModel(encoder, encoder_config), None


def _vae(config, encoder, encoder_config, num_train):
    return AutoencoderModel(encoder, encoder_config, variational=True, kl_weight=1.0), None


def _beta_vae(config, encoder, encoder_config, num_train):
    return AutoencoderModel(encoder, encoder_config, variational=True, kl_weight=config.beta), None


def _aae(config, encoder, encoder_config, num_train):
    return AutoencoderModel(encoder, encoder_config, prior="gaussian"), PriorDiscriminator(config.y_dim)


def _bigan(config, encoder, encoder_config, num_train):
    return BiGANModel(encoder, encoder_config), JointDiscriminator(encoder_config.in_channels, config.y_dim,
                                                                   encoder_config.width)


def _nat(config, encoder, encoder_config, num_train):
    return NATModel(encoder, config.y_dim, num_train, config.seed), None


def _cpc(config, encoder, encoder_config, num_train):
    return CPCModel(encoder, tap_shapes(encoder_config), config.cpc_rows, config.mi_units, config.estimator), None


Builder = Callable[..., tuple[nn.Module, nn.Module | None]]
METHODS: dict[str, Builder] = {
    "dim": _dim, "ae": _ae, "vae": _vae, "beta-vae": _beta_vae, "aae": _aae, "bigan": _bigan, "nat": _nat, "cpc": _cpc,
}


def build_method(config, encoder: nn.Module, encoder_config: EncoderConfig, num_train: int
                 ) -> tuple[nn.Module, nn.Module | None]:
    """The method's model (holding ``encoder``) and its adversary, for a PretrainConfig ``config``."""
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; known: {', '.join(METHODS)}")
    return METHODS[config.method](config, encoder, encoder_config, num_train)


__all__ = ["METHODS", "METHOD_NAMES", "MethodStep", "build_method"]
