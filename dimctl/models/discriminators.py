"""Discriminators that are trained adversarially against the encoder."""

import torch
from torch import nn


class PriorDiscriminator(nn.Module):
    """Tells samples of the prior from encoded images: fully connected 1000 → 200 → 1, ReLU (App. A.2).

    Returns logits: positive means "from the prior".
    """

    def __init__(self, in_features: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, 1000),
            nn.ReLU(inplace=True),
            nn.Linear(1000, 200),
            nn.ReLU(inplace=True),
            nn.Linear(200, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)
