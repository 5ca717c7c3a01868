"""Deep InfoMax as a method: the encoder and its MI heads (objectives/dim.py)."""

import torch
from torch import nn

from dimctl.collectives import gather_with_grad
from dimctl.errors import UsageError
from dimctl.methods.base import WEIGHTS, Method, MethodOutput
from dimctl.models.discriminators import PriorDiscriminator
from dimctl.models.encoders import build_encoder, tap_shapes
from dimctl.objectives.bounds import display_name
from dimctl.objectives.dim import DIM_ONLY_OPTIONS, PRESETS, DIMHeads
from dimctl.objectives.blocks import random_blocks
from dimctl.objectives.occlusion import block_size, occlude, receptive_field


# The paper's names of the presets' weights.
FAMILIES = {"dim-g": "DIM(G)", "dim-l": "DIM(L)", "dim-lg": "DIM(L+G)"}
# How a report's label shows each of the paper's DIM variants (§4.3, Table 3) a run turned on; their
# off values are DIM_ONLY_OPTIONS'. Its other two options, score_scale and shortcut_init, are left out
# on purpose: they switch dimctl's departures to the authors' code, so a run with them is still the
# paper's objective (and is still set beside the paper's numbers, which a variant would stop).
VARIANT_LABELS = {"local_critic": "+{} critic", "occlude": "+occlusion", "coord": "+coord {}", "globals": "+{} globals"}


class DIMModel(nn.Module):
    """Encoder and MI heads as one module, so one forward (and one DDP wrapper) covers both.
    Prior matching (γ) is the loop's adversary on Y."""

    prior = "uniform"  # sigmoid(Y) against U(0, 1), paper §3.3

    def __init__(self, encoder: nn.Module, heads: DIMHeads):
        super().__init__()
        self.encoder = encoder
        self.heads = heads

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> MethodOutput:
        config, encoder = self.heads.config, self.encoder
        taps = encoder(x)
        y, local = taps["y"], taps["local"]
        # The global feature: of an occluded copy (locals always come from the full image).
        y_global = encoder(occlude(x, self.heads.occlusion_block))["y"] if config.occlude else y
        h, w = local.shape[-2:]  # less-global features: Y of the map with random blocks kept (paper Table 3)
        summaries = [encoder.summarise(local * random_blocks(local.shape[0], h, w, local.device).to(local.dtype))["y"]
                     for _ in range(config.globals)]
        # Negatives from the global batch: embeddings are gathered across processes, with gradient.
        terms = self.heads.terms(local, y_global, summaries, gather_with_grad)
        return MethodOutput(y, terms, self.loss(terms))

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

    def resolve(self, preset, estimator, given):
        """A run records its preset when it was named or no weight was given, and the weights are
        still the preset's; with a weight of its own it records none (its weights say what it is).
        So a resumed run's saved preset and weights resolve to themselves."""
        weights, chosen = self.resolve_weights(preset, given), preset or "dim-l"
        named = preset is not None or all(value is None for value in given.values())
        keeps = named and all(weights[k] == PRESETS[chosen][k] for k in WEIGHTS)
        return {**weights, "preset": chosen if keeps else None, "estimator": estimator or self.default_estimator}

    def run_name(self, settings, dataset_label):
        return f"{settings.get('preset') or 'custom'}-{settings.get('estimator')}-{dataset_label}"

    def family(self, settings):
        """DIM(G), DIM(L) or DIM(L+G) when the weights are a preset's, else None."""
        weights = tuple(float(settings.get(k, -1)) for k in WEIGHTS)
        for preset, w in PRESETS.items():
            if weights == tuple(w[k] for k in WEIGHTS):
                return FAMILIES.get(preset, preset)
        return None

    def describe(self, settings, weight=str):
        """`DIM(L) JSD +occlusion`, or the weights when they are no preset's: `α=0.5 β=1 γ=0 infoNCE`."""
        name = self.family(settings) or " ".join(f"{s}={weight(settings.get(k))}" for s, k in zip("αβγ", WEIGHTS))
        estimator = settings.get("estimator")
        name = f"{name} {display_name(estimator)}" if estimator else name
        return " ".join([name, *self.variants(settings)])

    def paper_name(self, settings):
        """Table 1 names DIM(L) and DIM(L+G) by estimator; DIM(G) has one row."""
        family = self.family(settings)
        if family is None or family == "DIM(G)":
            return family
        return f"{family} {display_name(settings.get('estimator'))}"

    def variants(self, settings):
        return [shown.format(settings[key]) for key, shown in VARIANT_LABELS.items()
                if key in settings and settings[key] != DIM_ONLY_OPTIONS[key]]
