"""Classifiers trained on frozen features to measure what a representation makes linearly
(or shallowly) decodable. Each takes train/test arrays and returns test accuracy.

- ``svm``: linear SVM on standardised features (paper Table 4): libsvm's exact solver up to
  ``svm_exact_max`` training samples (fast while the support set is small), liblinear's
  LinearSVC with a capped iteration count above that (it scales linearly in the sample count).
- ``svm-torch``: the same linear SVM as LinearSVC (one-vs-rest, squared hinge) solved by full-batch
  L-BFGS in torch (benchmarks/probe_time.py times it against scikit-learn).
- ``logreg``: multinomial logistic regression on standardised features.
- ``knn``: k-nearest neighbours by cosine distance.
- ``mlp``: the paper's non-linear probe: linear 200 → dropout 0.1 → BN → ReLU → linear,
  Adam with a step-decayed learning rate (App. A.2).

Multi-label data ((N, K) 0/1 labels) is probed one binary classifier per attribute
(``probe_attributes``).
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# scikit-learn is imported inside the functions that use it: it costs about a second at start-up,
# which every other dimctl command would pay for nothing.


@dataclass(frozen=True)
class ProbeConfig:
    seed: int = 0
    svm_c: float = 1.0
    svm_exact_max: int = 20_000
    knn_k: int = 10
    mlp_epochs: int = 50
    mlp_lr: float = 1e-3
    mlp_batch_size: int = 128


def _standardise(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    return scaler.transform(train_x).astype(np.float32), scaler.transform(test_x).astype(np.float32)


def _accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float((predicted == truth).mean())


def svm(train_x, train_y, test_x, test_y, config: ProbeConfig) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import SVC, LinearSVC

    train_x, test_x = _standardise(train_x, test_x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a capped solver still gives a fair score
        if train_x.shape[0] <= config.svm_exact_max:
            model = SVC(kernel="linear", C=config.svm_c)
        else:
            model = LinearSVC(C=config.svm_c, dual=True, tol=1e-3, max_iter=1000, random_state=config.seed)
        model.fit(train_x, train_y)
    return _accuracy(model.predict(test_x), test_y)


def logreg(train_x, train_y, test_x, test_y, config: ProbeConfig) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    train_x, test_x = _standardise(train_x, test_x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(max_iter=500, random_state=config.seed).fit(train_x, train_y)
    return _accuracy(model.predict(test_x), test_y)


def knn(train_x, train_y, test_x, test_y, config: ProbeConfig) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    k = min(config.knn_k, train_x.shape[0])  # a training set smaller than k still has neighbours
    model = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(train_x, train_y)
    return _accuracy(model.predict(test_x), test_y)


def mlp(train_x, train_y, test_x, test_y, config: ProbeConfig) -> float:
    train_x, test_x = _standardise(train_x, test_x)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    model = nn.Sequential(
        nn.Linear(train_x.shape[1], 200), nn.Dropout(0.1), nn.BatchNorm1d(200), nn.ReLU(),
        nn.Linear(200, num_classes),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=config.mlp_lr)
    # Step decay: ×0.1 at half and at three quarters of training.
    milestones = [config.mlp_epochs // 2, (3 * config.mlp_epochs) // 4]
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=milestones, gamma=0.1)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y.astype(np.int64))
    n = x.shape[0]
    for _ in range(config.mlp_epochs):
        model.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.mlp_batch_size):
            batch = order[start:start + config.mlp_batch_size]
            if batch.numel() < 2:  # BatchNorm needs two samples
                continue
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(test_x)).argmax(1).numpy()
    return _accuracy(predicted, test_y)


def svm_torch(train_x, train_y, test_x, test_y, config: ProbeConfig) -> float:
    """LinearSVC's model solved in the primal with batched tensor ops (evaluate/linear_svm.py)."""
    from dimctl.evaluate.linear_svm import linear_svm_accuracy

    train_x, test_x = _standardise(train_x, test_x)
    return linear_svm_accuracy(train_x, train_y, test_x, test_y, config.svm_c)


CLASSIFIERS: dict[str, Callable[..., float]] = {"svm": svm, "svm-torch": svm_torch, "mlp": mlp, "logreg": logreg,
                                                "knn": knn}


def probe_attributes(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                     classifier: str, config: ProbeConfig = ProbeConfig()) -> list[float]:
    """Multi-label data, (N, K) 0/1 labels (CelebA's 40 attributes): one binary ``classifier`` per
    attribute; the test accuracy of each. An attribute constant over the training split gets that
    constant as its prediction (no classifier can be fitted to one class)."""
    if train_y.ndim != 2 or test_y.ndim != 2 or train_y.shape[1] != test_y.shape[1]:
        raise ValueError(f"need (N, K) labels in both splits, got {train_y.shape} and {test_y.shape}")
    accuracies = []
    for k in range(train_y.shape[1]):
        train_k, test_k = train_y[:, k], test_y[:, k]
        if np.unique(train_k).size < 2:
            accuracies.append(_accuracy(np.full_like(test_k, train_k[0]), test_k))
        else:
            accuracies.append(probe(train_x, train_k, test_x, test_k, classifier, config))
    return accuracies


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
          classifier: str, config: ProbeConfig = ProbeConfig()) -> float:
    """Test accuracy of ``classifier`` trained on (train_x, train_y); features are flattened."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; known: {', '.join(CLASSIFIERS)}")
    train_x = train_x.reshape(train_x.shape[0], -1)
    test_x = test_x.reshape(test_x.shape[0], -1)
    return CLASSIFIERS[classifier](train_x, train_y, test_x, test_y, config)
