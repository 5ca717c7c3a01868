"""Noise as targets (NAT, Bojanowski & Joulin 2017), the paper's baseline of Tables 1 and 4.

Every training image owns one fixed random target on the unit sphere of Y's size, drawn once from
the run's seed. Each step, the batch's images trade the targets they hold among themselves: the
Hungarian algorithm (scipy's ``linear_sum_assignment``) gives the permutation that minimises the
summed squared distance between the normalised features and the targets; the encoder then pulls
each normalised feature towards its newly assigned target (squared L2). The assignment persists
across steps (and checkpoints: it is a buffer of the module).

With several processes every process solves the same assignment on the gathered global batch, so
the assignments stay identical everywhere.
"""

import torch
import torch.nn.functional as F
from torch import nn

from dimctl.collectives import gather_with_grad
from dimctl.methods.base import Method, MethodOutput


def random_targets(n: int, dim: int, seed: int) -> torch.Tensor:
    """``n`` points uniform on the unit sphere in ``dim`` dimensions, the same for a given seed."""
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def best_permutation(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The permutation p minimising Σ_i ‖features[i] − targets[p[i]]‖² (unit vectors: maximising Σ cos)."""
    from scipy.optimize import linear_sum_assignment  # here, not at import: every pretrain would pay for scipy

    cost = -(features @ targets.T).double().cpu().numpy()
    rows, cols = linear_sum_assignment(cost)
    permutation = torch.empty(len(rows), dtype=torch.long)
    permutation[torch.from_numpy(rows)] = torch.from_numpy(cols)
    return permutation.to(features.device)


class NATModel(nn.Module):
    def __init__(self, encoder: nn.Module, y_dim: int, num_train: int, seed: int):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("targets", random_targets(num_train, y_dim, seed))
        # assignment[i]: the target image i holds; starts as the identity.
        self.register_buffer("assignment", torch.arange(num_train))

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None) -> MethodOutput:
        if index is None:
            raise ValueError("NAT needs the batch's indices in the training split")
        y = self.encoder(x)["y"]
        features = F.normalize(y.float(), dim=1)
        if self.training:
            self.reassign(gather_with_grad(features.detach()), gather_with_grad(index))
        target = self.targets[self.assignment[index]]
        terms = {"nat_l2": (features - target).pow(2).sum(dim=1).mean()}
        return MethodOutput(y, terms, self.loss(terms))

    @torch.no_grad()
    def reassign(self, features: torch.Tensor, index: torch.Tensor) -> None:
        """Let the images at ``index`` trade their targets so the summed distance is least."""
        held = self.assignment[index]
        self.assignment[index] = held[best_permutation(features, self.targets[held])]

    def loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return terms["nat_l2"]


class NAT(Method):
    name, label, help = "nat", "NAT", "nat (noise as targets)"

    def build(self, config, encoder, encoder_config, num_train):
        return NATModel(encoder, config.encoder.y_dim, num_train, config.run.seed), None
