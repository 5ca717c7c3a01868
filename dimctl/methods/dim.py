"""Deep InfoMax as a method: the encoder and its MI heads (objectives/dim.py)."""

import torch
from torch import nn

from dimctl.collectives import gather_with_grad
from dimctl.errors import UsageError
from dimctl.methods.base import WEIGHTS, Method, MethodOutput
from dimctl.models.discriminators import PriorDiscriminator
from dimctl.models.encoders import build_encoder, tap_shapes
from dimctl.objectives.dim import PRESETS, DIMHeads
from dimctl.objectives.occlusion import block_size, receptive_field


class DIMModel(nn.Module):
    """Encoder and MI heads as one module, so one forward (and one DDP wrapper) covers both.
    Prior matching (γ) is the loop's adversary on Y."""

    prior = "uniform"  # sigmoid(Y) against U(0, 1), paper §3.3

    def __init__(self, encoder: nn.Module, heads: DIMHeads):
        super().__init__()
        self.encoder = encoder
        self.heads = heads

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> MethodOutput:
        # Negatives from the global batch: embeddings are gathered across processes, with gradient.
        y, terms = self.heads.terms(self.encoder, x, gather_with_grad)
        return MethodOutput(y, terms)

    def loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.heads.mi_loss(terms)


class DIM(Method):
    name, label = "dim", "DIM"
    help = "dim (Deep InfoMax)"
    dim_options = True
    weights = dict(PRESETS["dim-l"])

    def build(self, config, encoder, encoder_config, num_train):
        block = 0
        if config.objective.occlude:  # squares at least a local feature's receptive field wide (objectives.occlusion)
            field = receptive_field(build_encoder(encoder_config), encoder_config.in_channels,
                                    encoder_config.image_size)
            block = block_size(encoder_config.image_size, field)
        heads = DIMHeads(config.objective, tap_shapes(encoder_config), occlusion_block=block)
        discriminator = PriorDiscriminator(config.encoder.y_dim) if config.objective.gamma > 0 else None
        return DIMModel(encoder, heads), discriminator

    def validate(self, config) -> None:
        if config.objective.alpha == 0 and config.objective.beta == 0:
            raise UsageError("--alpha and --beta are both 0: there is no MI term to train (try --preset dim-l)")
        if config.objective.globals and config.objective.beta == 0:
            raise UsageError("--globals adds less-global features to the local MI term: it needs --beta > 0")

    def resolve_weights(self, preset, given):
        """A preset's weights (default dim-l), each overridden by an explicitly given --alpha/--beta/--gamma."""
        if preset is not None and preset not in PRESETS:
            raise UsageError(f"--preset {preset!r} is not one of: {', '.join(PRESETS)}")
        weights = dict(PRESETS[preset or "dim-l"])
        return {k: given[k] if given.get(k) is not None else weights[k] for k in WEIGHTS}
