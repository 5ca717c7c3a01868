"""k-nearest-neighbour classification by cosine similarity, the protocol self-supervised papers
report (InstDisc, Wu et al. 2018; solo-learn and lightly use it for their online accuracy):
features are L2-normalised, each query takes its ``k`` most similar training samples, and each
neighbour votes for its class with weight exp(similarity / temperature) (``distance``) or 1
(``uniform``: a plain majority vote). The class with the largest total wins; ties go to the
smallest class index.

`dimctl probe --classifier knn --knn-weights distance --knn-k 200 --knn-bank N` and
`dimctl pretrain --eval-every N --eval-images N` (train/online_eval.py) run this one function on
the same bank (the first N training images), so their numbers agree.
"""

import numpy as np
import torch
from torch.nn import functional as F

from dimctl import progress
from dimctl.evaluate.probe_settings import KNN_WEIGHTS as WEIGHTS  # declared with the probe settings

PAPER_K, PAPER_TEMPERATURE = 200, 0.07  # the weighted protocol's usual settings


def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int,
                weights: str = "distance", temperature: float = PAPER_TEMPERATURE, num_classes: int | None = None,
                chunk: int = 1024) -> torch.Tensor:
    """Predicted class of each query row, (Q,) int64. ``bank`` (N, D) and ``queries`` (Q, D) are
    flattened features (float32 on any device); ``bank_labels`` (N,) class indices. ``k`` is capped
    at N. Queries go ``chunk`` at a time, so memory is chunk × N similarities."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    bank = F.normalize(bank.reshape(bank.shape[0], -1).float(), dim=1)
    queries = F.normalize(queries.reshape(queries.shape[0], -1).float(), dim=1)
    bank_labels = bank_labels.to(bank.device).long()
    num_classes = num_classes or int(bank_labels.max()) + 1
    k = min(k, bank.shape[0])
    predicted = []
    with progress.activity("knn", total=-(-queries.shape[0] // chunk), unit="batch") as task:
        for start in range(0, queries.shape[0], chunk):
            similarity, index = (queries[start:start + chunk] @ bank.T).topk(k, dim=1)
            votes = (similarity / temperature).exp() if weights == "distance" else torch.ones_like(similarity)
            scores = torch.zeros(similarity.shape[0], num_classes, device=bank.device)
            scores.scatter_add_(1, bank_labels[index], votes)
            predicted.append(scores.argmax(1))
            task.update()
    return torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.long)


def knn_accuracy(train_x: np.ndarray | torch.Tensor, train_y, test_x, test_y, k: int, weights: str = "distance",
                 temperature: float = PAPER_TEMPERATURE) -> float:
    """Test accuracy of ``knn_predict`` with the training split as the bank."""
    as_tensor = lambda a: a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    train_y, test_y = as_tensor(train_y).long(), as_tensor(test_y).long()
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    predicted = knn_predict(as_tensor(train_x), train_y, as_tensor(test_x), k, weights, temperature, num_classes)
    return float((predicted.cpu() == test_y.cpu()).float().mean())


def protocol(k: int, weights: str, temperature: float, bank: int | None = None) -> str:
    """The protocol in words, for a result line: "cosine k=200 weights=distance T=0.07"; with
    " bank=N" when only the first N training samples were the bank (online evaluation's)."""
    return (f"cosine k={k} weights={weights}" + (f" T={temperature:g}" if weights == "distance" else "")
            + (f" bank={bank}" if bank is not None else ""))
