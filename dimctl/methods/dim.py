"""Deep InfoMax as a method: the encoder and its MI heads (objectives/dim.py)."""

import torch
from torch import nn

from dimctl.methods.base import MethodStep
from dimctl.objectives.dim import DIMHeads
from dimctl.train.distributed import gather_with_grad


class DIMModel(nn.Module):
    """Encoder and MI heads as one module, so one forward (and one DDP wrapper) covers both.
    Prior matching (γ) is the loop's adversary on Y."""

    prior = "uniform"  # sigmoid(Y) against U(0, 1), paper §3.3

    def __init__(self, encoder: nn.Module, heads: DIMHeads):
        super().__init__()
        self.encoder = encoder
        self.heads = heads

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> MethodStep:
        # Negatives from the global batch: embeddings are gathered across processes, with gradient.
        y, terms = self.heads.terms(self.encoder, x, gather_with_grad)
        return MethodStep(y, terms)

    def loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.heads.mi_loss(terms)
