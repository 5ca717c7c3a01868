"""Nearest neighbours in representation space (paper App. A.4, Figure 8).

For one randomly chosen test image of each class, order the test set by distance to it in a
layer's feature space and keep the n closest (the query itself left out). Whether the neighbours
share the query's class, or only its colours and strokes, shows the metric structure the
representation learned.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dimctl.errors import UsageError


def _l1(queries: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    return torch.cdist(queries, pool, p=1.0)


def _l2(queries: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    return torch.cdist(queries, pool, p=2.0)


def _cosine(queries: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    # 1 − cos: 0 for the same direction, 2 for opposite ones. A zero vector has no direction;
    # the epsilon makes it distance 1 from everything instead of NaN.
    q = queries / queries.norm(dim=1, keepdim=True).clamp_min(1e-12)
    p = pool / pool.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return 1.0 - q @ p.T


# (queries (q, D), pool (N, D)) → (q, N) distances, float64 so ties and orderings are stable.
DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": _l1,
    "l2": _l2,
    "cosine": _cosine,
}


@dataclass
class NeighborQuery:
    label: int  # the query's class
    query: int  # index of the query in the test split
    neighbors: list[int]  # test-split indices, nearest first
    distances: list[float]
    neighbor_labels: list[int]

    @property
    def same_class(self) -> float:
        """Fraction of the neighbours that share the query's class."""
        return sum(n == self.label for n in self.neighbor_labels) / len(self.neighbor_labels)


def pick_queries(labels: np.ndarray, seed: int) -> list[int]:
    """One random index per class present in ``labels``, in class order."""
    rng = np.random.default_rng(seed)
    return [int(rng.choice(np.flatnonzero(labels == c))) for c in np.unique(labels)]


def nearest_neighbors(features: np.ndarray, labels: np.ndarray, n: int, distance: str = "l1",
                      seed: int = 0) -> list[NeighborQuery]:
    """The ``n`` nearest neighbours of one random image per class, among all ``features`` but the query.

    ``features``: (N, D) float array of one split; ``labels``: (N,) class indices.
    """
    if distance not in DISTANCES:
        raise UsageError(f"--distance {distance!r} is not one of: {', '.join(DISTANCES)}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise UsageError("nearest neighbours need one class per image; this dataset has multi-label attributes")
    if (labels < 0).any():
        raise UsageError("nearest neighbours need a class for every test image (an unlabelled folder?)")
    if not 1 <= n < len(labels):
        raise UsageError(f"-n must be between 1 and {len(labels) - 1} (the test split has {len(labels)} images)")
    pool = torch.from_numpy(np.asarray(features, dtype=np.float64).reshape(len(labels), -1))
    queries = pick_queries(labels, seed)
    dist = DISTANCES[distance](pool[queries], pool)
    dist[torch.arange(len(queries)), torch.tensor(queries)] = float("inf")  # a query is not its own neighbour
    order = torch.sort(dist, dim=1, stable=True).indices[:, :n]
    out = []
    for row, q in enumerate(queries):
        idx = order[row].tolist()
        out.append(NeighborQuery(label=int(labels[q]), query=q, neighbors=idx,
                                 distances=[float(dist[row, i]) for i in idx],
                                 neighbor_labels=[int(labels[i]) for i in idx]))
    return out
