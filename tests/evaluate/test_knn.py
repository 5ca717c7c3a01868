"""The cosine kNN classifier (evaluate/knn.py) against scikit-learn and a brute-force reference."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

from dimctl.evaluate.knn import knn_accuracy, knn_predict


def test_uniform_vote_equals_scikit_learn_on_digits():
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32) + np.random.default_rng(0).normal(0, 1e-3, x.shape).astype(np.float32)  # no exact ties
    reference = KNeighborsClassifier(n_neighbors=10, metric="cosine", algorithm="brute").fit(x[:1400], y[:1400])
    ours = knn_predict(torch.from_numpy(x[:1400]), torch.from_numpy(y[:1400]), torch.from_numpy(x[1400:]), 10,
                       weights="uniform", chunk=100).numpy()
    agree = (ours == reference.predict(x[1400:])).mean()
    assert agree > 0.99  # a vote tied between classes may break differently
    assert knn_accuracy(x[:1400], y[:1400], x[1400:], y[1400:], 10, "uniform") > 0.9


def test_distance_weights_equal_a_brute_force_reference():
    rng = np.random.default_rng(1)
    bank, queries = rng.normal(size=(300, 16)), rng.normal(size=(50, 16))
    labels = rng.integers(0, 4, 300)
    k, t = 20, 0.1
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    expected = []
    for q in queries / np.linalg.norm(queries, axis=1, keepdims=True):
        sim = b @ q
        top = np.argsort(-sim)[:k]
        expected.append(np.argmax(np.bincount(labels[top], weights=np.exp(sim[top] / t), minlength=4)))
    got = knn_predict(torch.tensor(bank, dtype=torch.float32), torch.tensor(labels), torch.tensor(queries, dtype=torch.float32),
                      k, "distance", t, chunk=7)
    assert got.tolist() == expected


def test_weights_decide_between_one_close_and_many_far_neighbours():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.2, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.05]])
    assert knn_predict(bank, labels, query, 3, "uniform").item() == 1
    assert knn_predict(bank, labels, query, 3, "distance", 0.07).item() == 0
    with pytest.raises(ValueError):
        knn_predict(bank, labels, query, 3, "nearest")
