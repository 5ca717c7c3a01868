"""The Deep InfoMax objective (paper Eq. 8): α·global MI + β·local MI, with γ·prior matching, and
the paper's extensions: the concat-and-convolve local critic, occlusion, coordinate prediction and
multiple less-global features.

``DIMHeads`` owns the critics and predictors; ``DIMHeads.terms`` scores the encoder's features of
a batch (methods/dim.py runs the encoder) and returns every term. The encoder's loss is ``DIMHeads.loss(terms)`` (−α·I_global − β·I_local +
coordinate cross-entropies) + γ·prior; the prior discriminator is trained separately
(``objectives.prior``).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dimctl.models.heads import ConcatCritic, CoordinatePredictor, LocalEmbedding, MapEmbedding, VectorEmbedding, dot_scores
from dimctl.objectives import coordinates
from dimctl.objectives.bounds import ESTIMATORS, PAIRED_ESTIMATORS
from dimctl.settings import setting

LOCAL_CRITICS = ("dot", "concat")
COORDS = ("none", "abs", "rel", "both")
SCORE_SCALES = ("sqrt", "none")
SHORTCUT_INITS = ("default", "identity")
CONCAT_NEGATIVES = 1  # other images each global meets in the concat critic (the paper's one shuffle)


@dataclass(frozen=True)
class DIMConfig:
    """The objective's settings (train/config.py's ``ObjectiveSettings`` extends them with the method's)."""

    PANEL = "DIM family"  # the --help heading of these settings

    alpha: float = setting(0.0, "Global MI weight (overrides the preset).", unset=True, minimum=0)
    beta: float = setting(1.0, "Local MI weight (overrides the preset); with --method beta-vae, the KL weight.",
                          unset=True, minimum=0)
    gamma: float = setting(0.1, "Prior-matching weight (overrides the preset); with --method aae, the weight of "
                                "matching Y to N(0, I).", unset=True, minimum=0)
    estimator: str = setting("jsd", f"MI estimator: {', '.join(ESTIMATORS)}. Default jsd (cpc: infonce, as in the "
                                    f"paper's Table 3).", unset=True, choices=tuple(ESTIMATORS))
    mi_units: int = setting(2048, "Width of the MI heads' embeddings (paper: 2048; smaller is much faster on CPU).",
                            positive=True)
    local_critic: str = setting("dot", "Local MI critic: dot (encode-and-dot-product, every pair in the batch) or "
                                       "concat (Y tiled and concatenated to the local map, 1×1 convs 512-512-1; one "
                                       "shuffled negative image, as in the paper).", choices=LOCAL_CRITICS)
    occlude: bool = setting(False, "Compute the global feature from a randomly occluded copy of each image (blocks "
                                   "the size of a local feature's receptive field; locals see the full image).",
                            flags=("--occlude",))
    coord: str = setting("none", "Coordinate prediction from local + global features: none, abs (where a local "
                                 "feature is), rel (offset between two), both.")
    coord_abs_weight: float = setting(1.0, "Weight of the absolute-coordinate cross-entropy.", minimum=0)
    coord_rel_weight: float = setting(1.0, "Weight of the relative-coordinate cross-entropy.", minimum=0)
    globals: int = setting(0, "Extra less-global features, each summarising a random block of the local map, scored "
                              "by the same local estimator (paper Table 3; best with the folded encoders).",
                           minimum=0)
    # Where dimctl departs from the authors' code, a switch to their choice (the default is dimctl's).
    score_scale: str = setting("sqrt", "Divide the dot-product critics' scores by sqrt(--mi-units) (sqrt, an AMDIM "
                                       "practice: LayerNorm'd embeddings' raw products grow like sqrt(units) and "
                                       "saturate the bounds at 2048) or use raw products (none, as the authors' code).",
                               choices=SCORE_SCALES)
    shortcut_init: str = setting("default", "Init of the MI heads' linear shortcuts: default (PyTorch's, with bias) "
                                            "or identity (the authors': weights U(-0.01, 0.01) with ones on the "
                                            "diagonal, no bias).", choices=SHORTCUT_INITS)


# The options only DIM's objective reads, each with the value that leaves it off (its default):
# another --method refuses any other value. The first four are the paper's variants (§4.3, Table 3);
# the last two switch dimctl's departures back to the authors' code.
_DEFAULTS = DIMConfig()
DIM_ONLY_OPTIONS: dict[str, object] = {name: getattr(_DEFAULTS, name) for name in (
    "occlude", "coord", "globals", "local_critic", "score_scale", "shortcut_init")}

# The paper's settings. dim-lg's α is the common ports' choice; the paper's pair is lost.
PRESETS: dict[str, dict[str, float]] = {
    "dim-g": {"alpha": 1.0, "beta": 0.0, "gamma": 1.0},
    "dim-l": {"alpha": 0.0, "beta": 1.0, "gamma": 0.1},
    "dim-lg": {"alpha": 0.5, "beta": 1.0, "gamma": 0.1},
}

Gather = Callable[[torch.Tensor], torch.Tensor]


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


class DIMHeads(nn.Module):
    """Critics and predictors for the enabled terms.

    Local term: each location of the ``local`` map against Y (dot-product embeddings, or the
    concat-and-convolve critic). Global term: the whole ``local`` map (through the global
    discriminator's convs) against Y. Each term has its own Y embedding. ``occlusion_block`` is the
    side of the occluded squares (objectives/occlusion.py), needed only with ``occlude``.
    """

    def __init__(self, config: DIMConfig, tap_shapes: dict[str, tuple[int, ...]], occlusion_block: int = 0):
        super().__init__()
        if config.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {config.estimator!r}; known: {', '.join(ESTIMATORS)}")
        if config.local_critic not in LOCAL_CRITICS or config.coord not in COORDS:
            raise ValueError(f"local critic {config.local_critic!r} / coord {config.coord!r} not known")
        if config.globals and config.beta == 0:
            raise ValueError("multiple globals share the local estimator: they need β > 0")
        if config.occlude and occlusion_block < 1:
            raise ValueError("occlusion needs the block size")
        self.config = config
        self.occlusion_block = occlusion_block
        channels, height, width = tap_shapes["local"]
        (y_dim,) = tap_shapes["y"]
        units, identity = config.mi_units, config.shortcut_init == "identity"
        if config.beta > 0 and config.local_critic == "dot":
            self.local_map = LocalEmbedding(channels, units, identity_shortcut=identity)
            self.local_y = VectorEmbedding(y_dim, units, identity_shortcut=identity)
        if config.beta > 0 and config.local_critic == "concat":
            self.concat = ConcatCritic(channels, y_dim)
        if config.alpha > 0:
            self.global_map = MapEmbedding(channels, height, units, identity_shortcut=identity)
            self.global_y = VectorEmbedding(y_dim, units, identity_shortcut=identity)
        if config.coord in ("abs", "both"):
            self.coord_abs = CoordinatePredictor(channels + y_dim, height, width)
        if config.coord in ("rel", "both"):
            self.coord_rel = CoordinatePredictor(2 * channels + y_dim, 2 * height - 1, 2 * width - 1)

    def terms(self, local: torch.Tensor, y_global: torch.Tensor, summaries: list[torch.Tensor],
              gather: Gather | None = None) -> dict[str, torch.Tensor]:
        """The named terms (MI estimates to maximise, ``coord_*`` cross-entropies to minimise) of
        the local map, the global feature Y (of an occluded copy with ``occlude``) and the
        ``globals`` less-global summaries of the map (the method's model runs the encoder for them:
        methods/dim.py). ``gather`` (multi-process training) concatenates embeddings from every
        process, so negatives come from the global batch (dimctl/collectives.py)."""
        config, gather = self.config, gather or _same
        globals_ = [y_global, *summaries]
        terms = {}
        if config.beta > 0:
            local_emb = self._local_embedding(local, gather)  # once: every global meets the same locals
            terms["local_mi"] = torch.stack([self._local_mi(g, local_emb, gather) for g in globals_]).mean()
        if config.alpha > 0:
            terms["global_mi"] = ESTIMATORS[config.estimator](
                self._scores(gather(self.global_y(y_global)), gather(self.global_map(local))))
        if config.coord in ("abs", "both"):
            terms["coord_abs_ce"] = coordinates.absolute_loss(self.coord_abs, local, y_global)
        if config.coord in ("rel", "both"):
            terms["coord_rel_ce"] = coordinates.relative_loss(self.coord_rel, local, y_global)
        return terms

    def _local_embedding(self, local: torch.Tensor, gather: Gather) -> torch.Tensor:
        """The locals as the local critic takes them: the map itself (concat) or its embedding (dot)."""
        return local if self.config.local_critic == "concat" else gather(self.local_map(local))

    def _local_mi(self, y: torch.Tensor, local_emb: torch.Tensor, gather: Gather) -> torch.Tensor:
        if self.config.local_critic == "concat":
            y_part, map_part = self.concat.project(y, local_emb)
            positives, negatives = self.concat.score_shifted(gather(y_part), gather(map_part), CONCAT_NEGATIVES)
            return PAIRED_ESTIMATORS[self.config.estimator](positives.float(), negatives.float())
        return ESTIMATORS[self.config.estimator](self._scores(gather(self.local_y(y)), local_emb))

    def _scores(self, global_emb: torch.Tensor, local_emb: torch.Tensor) -> torch.Tensor:
        # The bounds' softplus and log-sum-exp run in float32 even under bf16/fp16 autocast.
        return dot_scores(global_emb, local_emb, scaled=self.config.score_scale == "sqrt").float()

    def mi_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = 0.0
        if "local_mi" in terms:
            loss = loss - self.config.beta * terms["local_mi"]
        if "global_mi" in terms:
            loss = loss - self.config.alpha * terms["global_mi"]
        if "coord_abs_ce" in terms:
            loss = loss + self.config.coord_abs_weight * terms["coord_abs_ce"]
        if "coord_rel_ce" in terms:
            loss = loss + self.config.coord_rel_weight * terms["coord_rel_ce"]
        return loss
