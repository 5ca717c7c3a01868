"""Classifiers trained on frozen features to measure what a representation makes linearly
(or shallowly) decodable. Each takes train/test arrays and returns a ``ProbeResult``: test
accuracy plus, for iterative solvers, what the solver did (its name, iterations, convergence).

- ``svm``: linear SVM on standardised features (paper Table 4). Up to ``svm_exact_max`` training
  samples libsvm's exact solver (``SVC(kernel="linear")``: hinge loss, one-vs-one; on digits 10×
  faster than the alternative and 4 points more accurate, at 10,000 conv features 3 points more
  accurate but 13× slower, 61 s); above that LinearSVC's model (one-vs-rest, squared hinge) solved
  by ADMM in torch (evaluate/linear_svm.py: 109 s at 50,000 × 4,096 on a 2-core AVX2 CPU, where
  liblinear had taken 497 s on a faster one).
  The result names the solver (``libsvm`` or ``admm``), so the change of model is on record.
- ``svm-torch``: LinearSVC's model by the ADMM solver at every size (the name is kept for old
  Makefiles; it was a full-batch L-BFGS, 531 s at 50,000 × 4,096).
- ``logreg``: multinomial logistic regression on standardised features.
- ``knn``: k-nearest neighbours by cosine similarity (evaluate/knn.py): a majority vote of 10 by
  default, or the weighted protocol of self-supervised papers (k=200, votes exp(cos / 0.07));
  ``knn_bank`` N keeps the first N training samples as the bank, as `pretrain --eval-every` does.
- ``mlp``: the paper's non-linear probe network (linear 200 → dropout 0.1 → BN → ReLU → linear,
  App. A.2), trained dimctl's way: Adam 1e-3 for 50 epochs, ×0.1 at half and three quarters. The
  paper trains it with 1e-4 and step decay over a longer run; at equal epochs 1e-3 reads as well
  or better (Fashion-MNIST, DIM(L) encoder, 50 epochs, 2 probe seeds: conv 90.57 vs 90.54 %, fc
  89.06 vs 88.97, Y 87.00 vs 85.57), so it stays the default (``--mlp-lr 1e-4`` for the paper's).

Multi-label data ((N, K) 0/1 labels) is probed one binary classifier per attribute
(``probe_attributes``).
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dimctl import progress
from dimctl.evaluate.probe_settings import ProbeConfig
from dimctl.models.classifier import paper_classifier

# scikit-learn is imported inside the functions that use it: it costs about a second at start-up,
# which every other dimctl command would pay for nothing.


def _standardise(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    return scaler.transform(train_x).astype(np.float32), scaler.transform(test_x).astype(np.float32)


def _accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float((predicted == truth).mean())


@dataclass(frozen=True)
class ProbeResult:
    """Test accuracy and, for classifiers fitted by an iterative solver, what it did:
    ``{"solver": name, "solver_iterations": n, "solver_converged": bool, ...}`` (JSON-ready); and
    the settings the accuracy depends on (``svm_c``, ``mlp_epochs``, ``probe_seed``, knn's
    ``"knn"`` protocol, …), so that `dimctl report` pools only results of one protocol."""
    accuracy: float
    info: dict = field(default_factory=dict)


def _svm_admm(train_x, train_y, test_x, test_y, config: ProbeConfig) -> ProbeResult:
    from dimctl.evaluate.linear_svm import linear_svm_probe

    accuracy, fit = linear_svm_probe(train_x, train_y, test_x, test_y, config.svm_c, tol=config.svm_tol,
                                     max_iter=config.svm_max_iter)
    return ProbeResult(accuracy, {**fit.info(), "svm_c": config.svm_c, "svm_tol": config.svm_tol,
                                  "svm_max_iter": config.svm_max_iter})


def svm(train_x, train_y, test_x, test_y, config: ProbeConfig) -> ProbeResult:
    train_x, test_x = _standardise(train_x, test_x)
    if train_x.shape[0] > config.svm_exact_max:
        return _svm_admm(train_x, train_y, test_x, test_y, config)
    from sklearn.svm import SVC

    # libsvm runs to its tolerance (no iteration cap), so it always converges.
    model = SVC(kernel="linear", C=config.svm_c).fit(train_x, train_y)
    iterations = int(np.max(getattr(model, "n_iter_", [0])))
    return ProbeResult(_accuracy(model.predict(test_x), test_y),
                       {"solver": "libsvm", "solver_iterations": iterations, "solver_converged": True,
                        "svm_c": config.svm_c})


def logreg(train_x, train_y, test_x, test_y, config: ProbeConfig) -> ProbeResult:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    train_x, test_x = _standardise(train_x, test_x)
    max_iter = 500
    with warnings.catch_warnings():  # reported in the result instead
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(max_iter=max_iter, random_state=config.seed).fit(train_x, train_y)
    iterations = int(np.max(model.n_iter_))
    return ProbeResult(_accuracy(model.predict(test_x), test_y),
                       {"solver": "lbfgs", "solver_iterations": iterations, "solver_converged": iterations < max_iter})


def knn(train_x, train_y, test_x, test_y, config: ProbeConfig) -> ProbeResult:
    from dimctl.evaluate.knn import knn_accuracy, protocol

    # A bank as large as the split is the whole split: the same protocol, named the same way.
    bank = config.knn_bank if 0 < config.knn_bank < train_x.shape[0] else None
    if bank is not None:
        train_x, train_y = train_x[:bank], train_y[:bank]
    accuracy = knn_accuracy(train_x, train_y, test_x, test_y, config.knn_k, config.knn_weights, config.knn_temperature)
    return ProbeResult(accuracy, {"knn": protocol(config.knn_k, config.knn_weights, config.knn_temperature, bank)})


def mlp(train_x, train_y, test_x, test_y, config: ProbeConfig) -> ProbeResult:
    train_x, test_x = _standardise(train_x, test_x)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    model = paper_classifier(train_x.shape[1], num_classes)
    # fused: one kernel per step instead of ~10 elementwise passes per tensor (6 % of the step at 4,096 inputs)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.mlp_lr, fused=True)
    # Step decay: ×0.1 at half and at three quarters of training.
    milestones = [config.mlp_epochs // 2, (3 * config.mlp_epochs) // 4]
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=milestones, gamma=0.1)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y.astype(np.int64))
    n = x.shape[0]
    with progress.activity("mlp", total=config.mlp_epochs, unit="epoch") as task:
        for epoch in range(config.mlp_epochs):
            task.update(epoch)
            model.train()
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, config.mlp_batch_size):
                batch = order[start:start + config.mlp_batch_size]
                if batch.numel() < 2:  # BatchNorm needs two samples
                    continue
                # index_select: the same rows as x[batch], by a kernel without advanced indexing's overhead
                loss = nn.functional.cross_entropy(model(x.index_select(0, batch)), y[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            schedule.step()
        task.update(config.mlp_epochs)
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(test_x)).argmax(1).numpy()
    return ProbeResult(_accuracy(predicted, test_y), {"mlp_epochs": config.mlp_epochs, "mlp_lr": config.mlp_lr,
                                                      "mlp_batch_size": config.mlp_batch_size,
                                                      "probe_seed": config.seed})


def svm_torch(train_x, train_y, test_x, test_y, config: ProbeConfig) -> ProbeResult:
    """LinearSVC's model by the ADMM solver (evaluate/linear_svm.py) at every training-set size."""
    train_x, test_x = _standardise(train_x, test_x)
    return _svm_admm(train_x, train_y, test_x, test_y, config)


CLASSIFIERS: dict[str, Callable[..., ProbeResult]] = {"svm": svm, "svm-torch": svm_torch, "mlp": mlp,
                                                              "logreg": logreg, "knn": knn}


def probe_attribute_results(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                            classifier: str, config: ProbeConfig = ProbeConfig()) -> list[ProbeResult]:
    """Multi-label data, (N, K) 0/1 labels (CelebA's 40 attributes): one binary ``classifier`` per
    attribute; the result of each. An attribute constant over the training split gets that
    constant as its prediction (no classifier can be fitted to one class; no solver info)."""
    if train_y.ndim != 2 or test_y.ndim != 2 or train_y.shape[1] != test_y.shape[1]:
        raise ValueError(f"need (N, K) labels in both splits, got {train_y.shape} and {test_y.shape}")
    results = []
    for k in range(train_y.shape[1]):
        train_k, test_k = train_y[:, k], test_y[:, k]
        if np.unique(train_k).size < 2:
            results.append(ProbeResult(_accuracy(np.full_like(test_k, train_k[0]), test_k)))
        else:
            results.append(probe_result(train_x, train_k, test_x, test_k, classifier, config))
    return results


def probe_attributes(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                     classifier: str, config: ProbeConfig = ProbeConfig()) -> list[float]:
    """The test accuracy of each attribute's classifier (``probe_attribute_results``)."""
    return [r.accuracy for r in probe_attribute_results(train_x, train_y, test_x, test_y, classifier, config)]


def probe_result(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 classifier: str, config: ProbeConfig = ProbeConfig()) -> ProbeResult:
    """Test accuracy of ``classifier`` trained on (train_x, train_y), with its solver's report;
    features are flattened."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}; known: {', '.join(CLASSIFIERS)}")
    train_x = train_x.reshape(train_x.shape[0], -1)
    test_x = test_x.reshape(test_x.shape[0], -1)
    return CLASSIFIERS[classifier](train_x, train_y, test_x, test_y, config)


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
          classifier: str, config: ProbeConfig = ProbeConfig()) -> float:
    """Test accuracy of ``classifier`` trained on (train_x, train_y); features are flattened."""
    return probe_result(train_x, train_y, test_x, test_y, classifier, config).accuracy
