"""What `dimctl pretrain --method` trains: Deep InfoMax and the paper's comparison methods.

``METHODS`` maps each name to its ``Method`` (methods/base.py), which owns everything about it:
label, help, input size, objective weights, default estimator, run name, checks, networks,
adversary, companions, report names. Adding a
method is its module plus one ``register_method`` call — here, or in the user's own code before
`dimctl pretrain` runs (tests/methods/test_registry.py trains one defined in a test file).

    dim       Deep InfoMax (objectives/dim.py), with prior matching when γ > 0
    ae        autoencoder                     vae, beta-vae   variational autoencoders
    aae       adversarial autoencoder         bigan           BiGAN / ALI with a deterministic encoder
    nat       noise as targets                cpc             contrastive predictive coding
"""

from torch import nn

from dimctl.methods.autoencoders import AAE, AE, VAE, BetaVAE
from dimctl.methods.base import WEIGHTS, Companion, Method, MethodOutput, PublishedRun
from dimctl.methods.bigan import BiGAN
from dimctl.methods.cpc import CPC
from dimctl.methods.dim import DIM
from dimctl.methods.nat import NAT
from dimctl.models.encoders import EncoderConfig

METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Make ``method`` available as `--method NAME` (a name already taken is replaced)."""
    METHODS[method.name] = method
    return method


for _method in (DIM(), AE(), VAE(), BetaVAE(), AAE(), BiGAN(), NAT(), CPC()):
    register_method(_method)


def build_method(config, encoder: nn.Module, encoder_config: EncoderConfig, num_train: int
                 ) -> tuple[nn.Module, nn.Module | None]:
    """The method's model (holding ``encoder``) and its adversary, for a PretrainConfig ``config``."""
    if config.objective.method not in METHODS:
        raise ValueError(f"unknown method {config.objective.method!r}; known: {', '.join(METHODS)}")
    return METHODS[config.objective.method].build(config, encoder, encoder_config, num_train)


def companion_files() -> set[str]:
    """The file of every registered method's companion network (RUN/decoder.safetensors, …)."""
    return {companion.file for method in METHODS.values() for companion in method.companions}


def companion_help() -> str:
    """Which methods publish which network beside the encoder, from their entries' ``companions``."""
    by_file: dict[str, list[str]] = {}
    for method in METHODS.values():
        for companion in method.companions:
            by_file.setdefault(companion.file, []).append(method.name)
    return "; ".join(f"{'/'.join(names)} also publish{'es' if len(names) == 1 else ''} RUN/{file}"
                     for file, names in by_file.items())


__all__ = ["METHODS", "WEIGHTS", "Companion", "Method", "MethodOutput", "PublishedRun", "build_method",
           "companion_files", "companion_help", "register_method"]
