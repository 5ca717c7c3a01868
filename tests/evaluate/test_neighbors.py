"""Nearest neighbours (App. A.4): one query per class, distances computed by hand, the query left out."""

import numpy as np
import pytest

from dimctl.errors import UsageError
from dimctl.evaluate.neighbors import DISTANCES, nearest_neighbors, pick_queries


def _by_hand(a: np.ndarray, b: np.ndarray, distance: str) -> float:
    if distance == "l1":
        return float(np.abs(a - b).sum())
    if distance == "l2":
        return float(np.sqrt(((a - b) ** 2).sum()))
    return float(1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("distance", list(DISTANCES))
def test_neighbours_are_the_nearest_by_each_distance(distance):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(60, 5))
    labels = np.repeat(np.arange(3), 20)
    found = nearest_neighbors(features, labels, n=4, distance=distance, seed=3)
    assert [q.label for q in found] == [0, 1, 2]
    for q in found:
        assert labels[q.query] == q.label and q.query not in q.neighbors
        everyone = sorted((_by_hand(features[q.query], features[i], distance), i) for i in range(60) if i != q.query)
        assert q.neighbors == [i for _, i in everyone[:4]]
        assert q.distances == pytest.approx([d for d, _ in everyone[:4]], abs=1e-9)
        assert q.neighbor_labels == [int(labels[i]) for i in q.neighbors]


def test_clusters_give_same_class_neighbours_and_a_seed_fixes_the_queries():
    # Three tight clusters far apart: every neighbour of a query is of its class.
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = np.repeat([0, 1, 2], 10)
    features = centres[labels] + rng.normal(scale=0.1, size=(30, 2))
    found = nearest_neighbors(features, labels, n=3, distance="l2", seed=7)
    assert all(q.same_class == 1.0 for q in found)
    assert pick_queries(labels, 7) == [q.query for q in found] == pick_queries(labels, 7)
    assert len({tuple(pick_queries(labels, s)) for s in range(10)}) > 1  # the seed does choose


def test_query_is_left_out_even_with_duplicates_and_ties_keep_index_order():
    features = np.array([[0.0], [0.0], [0.0], [5.0]])
    labels = np.array([0, 0, 1, 1])
    found = nearest_neighbors(features, labels, n=2, distance="l1", seed=0)
    for q in found:
        expected = sorted((abs(features[q.query, 0] - features[i, 0]), i) for i in range(4) if i != q.query)[:2]
        assert q.neighbors == [i for _, i in expected]  # equal distances: lower index first


def test_bad_requests_are_usage_errors():
    features, labels = np.zeros((5, 2)), np.array([0, 0, 1, 1, 1])
    with pytest.raises(UsageError, match="--distance"):
        nearest_neighbors(features, labels, 2, "hamming")
    with pytest.raises(UsageError, match="-n"):
        nearest_neighbors(features, labels, 5)
    with pytest.raises(UsageError, match="multi-label"):
        nearest_neighbors(features, np.zeros((5, 3)), 2)
    with pytest.raises(UsageError, match="class for every"):
        nearest_neighbors(features, np.array([0, -1, 1, 1, 0]), 2)
