"""The Deep InfoMax objective (paper Eq. 8): α·global MI + β·local MI, with γ·prior matching.

``DIMHeads`` owns the critics' embedding networks; ``DIMHeads.mi_terms`` turns an encoder's taps
into the MI estimates. The encoder's loss is ``-(α·I_global + β·I_local) + γ·prior``; the prior
discriminator is trained separately (``objectives.prior``).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dimctl.models.heads import LocalEmbedding, MapEmbedding, VectorEmbedding, dot_scores
from dimctl.objectives.bounds import ESTIMATORS


@dataclass(frozen=True)
class DIMConfig:
    alpha: float = 0.0  # global MI weight
    beta: float = 1.0  # local MI weight
    gamma: float = 0.1  # prior matching weight
    estimator: str = "jsd"
    mi_units: int = 2048


# The paper's settings (FACTS.md). dim-lg's α is the common ports' choice; the paper's pair is lost.
PRESETS: dict[str, dict[str, float]] = {
    "dim-g": {"alpha": 1.0, "beta": 0.0, "gamma": 1.0},
    "dim-l": {"alpha": 0.0, "beta": 1.0, "gamma": 0.1},
    "dim-lg": {"alpha": 0.5, "beta": 1.0, "gamma": 0.1},
}


class DIMHeads(nn.Module):
    """Critic embeddings for the enabled terms.

    Local term: each location of the ``local`` map against Y. Global term: the whole ``local``
    map (through the global discriminator's convs) against Y. Each term has its own Y embedding.
    """

    def __init__(self, config: DIMConfig, tap_shapes: dict[str, tuple[int, ...]]):
        super().__init__()
        if config.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {config.estimator!r}; known: {', '.join(ESTIMATORS)}")
        self.config = config
        channels, height, _ = tap_shapes["local"]
        (y_dim,) = tap_shapes["y"]
        units = config.mi_units
        if config.beta > 0:
            self.local_map = LocalEmbedding(channels, units)
            self.local_y = VectorEmbedding(y_dim, units)
        if config.alpha > 0:
            self.global_map = MapEmbedding(channels, height, units)
            self.global_y = VectorEmbedding(y_dim, units)

    def mi_terms(self, taps: dict[str, torch.Tensor],
                 gather: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The MI estimates. ``gather`` (multi-process training) concatenates embeddings from
        every process, so negatives come from the global batch (train/distributed.py)."""
        bound = ESTIMATORS[self.config.estimator]
        gather = gather or (lambda t: t)
        terms = {}
        if self.config.beta > 0:
            terms["local_mi"] = bound(_scores(gather(self.local_y(taps["y"])), gather(self.local_map(taps["local"]))))
        if self.config.alpha > 0:
            terms["global_mi"] = bound(_scores(gather(self.global_y(taps["y"])), gather(self.global_map(taps["local"]))))
        return terms

    def mi_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = 0.0
        if "local_mi" in terms:
            loss = loss - self.config.beta * terms["local_mi"]
        if "global_mi" in terms:
            loss = loss - self.config.alpha * terms["global_mi"]
        return loss


def _scores(global_emb: torch.Tensor, local_emb: torch.Tensor) -> torch.Tensor:
    # The bounds' softplus and log-sum-exp run in float32 even under bf16/fp16 autocast.
    return dot_scores(global_emb, local_emb).float()
