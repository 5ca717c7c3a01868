"""MI estimates against distributions whose MI is known in closed form (dimctl.evaluate.known_mi):
the fast subset of the known-MI benchmark at `dimctl mi`'s defaults, the warnings, the rank
marginals and KSG against brute-force references."""

import numpy as np
import pytest
from scipy import special, stats

from dimctl.cli.mi import KSG_SELFTEST_DIMS
from dimctl.evaluate import ksg as ksg_module
from dimctl.evaluate.known_mi import FAST_SUBSET, TASKS, additive_uniform_mi, spiral
from dimctl.evaluate.marginals import normal_scores
from dimctl.evaluate.mi import MIConfig, estimate_mi, selftest_band

PAIRS = 10_000  # the benchmark's and the self-test's: 10,000 training and 10,000 test pairs


def split(task_name: str, pairs: int = PAIRS, seed: int = 0):
    x, y = TASKS[task_name].pairs(2 * pairs, seed)
    return x[:pairs], y[:pairs], x[pairs:], y[pairs:]


# --- the tasks' closed forms ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["normal-1-1", "dense-5-5", "student-1-1-dof1", "student-5-5-dof2"])
def test_closed_form_mi_matches_a_monte_carlo_of_the_log_density_ratio(name):
    # I = E[log p(x, y) − log p(x) − log p(y)], with scipy's densities (marginals of a multivariate
    # Student-t are Student-t with the same degrees of freedom): independent of the closed forms.
    task = TASKS[name]
    x, y = task.pairs(200_000, seed=3)
    dof = {"student-1-1-dof1": 1, "student-5-5-dof2": 2}.get(name)
    covariance = np.cov(np.hstack([x, y]).T) if dof is None else None
    if dof is None:
        joint = stats.multivariate_normal(np.zeros(len(covariance)), covariance)
        px = stats.multivariate_normal(np.zeros(task.x_dim), covariance[:task.x_dim, :task.x_dim])
        py = stats.multivariate_normal(np.zeros(task.y_dim), covariance[task.x_dim:, task.x_dim:])
    else:
        joint = stats.multivariate_t(np.zeros(task.x_dim + task.y_dim), np.eye(task.x_dim + task.y_dim), df=dof)
        px, py = (stats.multivariate_t(np.zeros(d), np.eye(d), df=dof) for d in (task.x_dim, task.y_dim))
    ratio = joint.logpdf(np.hstack([x, y])) - px.logpdf(x) - py.logpdf(y)
    assert ratio.mean() == pytest.approx(task.mi, abs=4 * ratio.std() / np.sqrt(len(ratio)) + 0.005)


@pytest.mark.parametrize("epsilon", [0.1, 0.75])
def test_additive_uniform_mi_is_the_entropy_of_the_trapezoid_minus_the_noise(epsilon):
    grid = np.linspace(-epsilon, 1 + epsilon, 400_001)
    density = np.clip((np.minimum(grid + epsilon, 1) - np.maximum(grid - epsilon, 0)) / (2 * epsilon), 0, None)
    entropy = -np.trapezoid(special.xlogy(density, density), grid)
    assert additive_uniform_mi(epsilon) == pytest.approx(entropy - np.log(2 * epsilon), abs=1e-6)


def test_transformed_tasks_are_invertible_maps_of_their_base():
    v = np.random.default_rng(0).standard_normal((1000, 5))
    turned = spiral(v, (0, 1))
    angle = (v ** 2).sum(1) / 5  # the norm is kept, so the angle can be read back and turned away
    undone = turned.copy()
    undone[:, 0] = np.cos(angle) * turned[:, 0] + np.sin(angle) * turned[:, 1]
    undone[:, 1] = -np.sin(angle) * turned[:, 0] + np.cos(angle) * turned[:, 1]
    np.testing.assert_allclose(undone, v, atol=1e-12)
    assert not np.allclose(turned, v)
    bases = {"half-cube-sparse-5-5": "sparse-5-5", "normal-cdf-sparse-25-25": "sparse-25-25",
             "spiral-sparse-5-5": "sparse-5-5", "asinh-student-1-1-dof1": "student-1-1-dof1",
             "bimodal-1-1": "normal-1-1"}
    for name, base in bases.items():
        assert TASKS[name].mi == TASKS[base].mi
        (x, _), (bx, _) = TASKS[name].pairs(50, 4), TASKS[base].pairs(50, 4)
        assert not np.allclose(x, bx) and x.shape == bx.shape


# --- the fast subset at the defaults -----------------------------------------------------------

@pytest.fixture(scope="module")
def fast_subset():
    """{(task, estimator): MIResult} on the fast subset at `dimctl mi`'s defaults (KSG on the 1 + 1
    tasks, as `dimctl mi --selftest` checks it)."""
    return {(name, estimator): estimate_mi(*split(name), MIConfig(estimator=estimator))
            for name in FAST_SUBSET for estimator in ("smile", "infonce", "ksg")
            if estimator != "ksg" or TASKS[name].x_dim + TASKS[name].y_dim <= KSG_SELFTEST_DIMS}


@pytest.mark.parametrize("name", FAST_SUBSET)
def test_the_fast_subset_lands_within_the_targets(fast_subset, name):
    truth = TASKS[name].mi
    for estimator in ("smile", "infonce", "ksg"):
        if (name, estimator) not in fast_subset:
            continue
        result = fast_subset[(name, estimator)]
        tolerance = 0.05 if estimator == "ksg" else max(0.1, 0.15 * truth)  # the benchmark's targets
        assert result.estimate == pytest.approx(truth, abs=tolerance), (estimator, result.estimate)
        assert result.estimate <= 1.5 * truth and result.warning is None
        low, high = selftest_band(estimator, truth)
        assert low <= result.estimate <= high


def test_critics_stop_when_the_validation_estimate_stops_rising(fast_subset):
    for name in FAST_SUBSET:
        result = fast_subset[(name, "smile")]
        assert result.stopped_improving and result.steps_used < result.steps
        assert 0 < result.best_step < result.steps_used
        assert result.curve[-1]["step"] == result.steps_used and "validation_estimate" in result.curve[-1]
        best = max(point["validation_estimate"] for point in result.curve)
        assert [p["step"] for p in result.curve if p["validation_estimate"] == best][0] == result.best_step


def test_heavy_tails_no_longer_inflate_smile(fast_subset):
    # Standardised Cauchy pairs gave SMILE 15× the truth: rank marginals tame the tails.
    assert fast_subset[("student-1-1-dof1", "smile")].estimate < 1.5 * TASKS["student-1-1-dof1"].mi


def test_twenty_five_dimensions_keep_at_least_sixty_percent():
    result = estimate_mi(*split("sparse-25-25"), MIConfig(estimator="infonce"))
    assert 0.6 * TASKS["sparse-25-25"].mi <= result.estimate <= 1.5 * TASKS["sparse-25-25"].mi
    assert result.warning is None


# --- warnings ------------------------------------------------------------------------------------

def test_a_critic_that_memorises_is_reported_with_a_warning_not_a_clipped_number():
    # Independent 20-dimensional arrays, 300 training pairs: every critic learns its training pairs.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((600, 20)), rng.standard_normal((600, 20))
    result = estimate_mi(x[:300], y[:300], x[300:], y[300:], MIConfig(estimator="infonce", batch_size=64, steps=400))
    assert result.warning is not None
    assert result.train_estimate - result.estimate > 0.1
    if result.estimate < 0:  # reported as measured
        assert "negative" in result.warning
    else:
        assert "learnt its training pairs" in result.warning


def test_a_ceiling_reached_while_still_rising_says_so():
    result = estimate_mi(*split("sparse-5-5", pairs=2000), MIConfig(estimator="smile", steps=100))
    assert result.steps_used == result.best_step == 100 and result.stopped_improving is False
    assert "still rising" in result.warning


# --- rank marginals ------------------------------------------------------------------------------

def test_rank_marginals_are_the_explicit_copula_transform():
    rng = np.random.default_rng(1)
    a = rng.standard_t(1, size=(500, 3))
    explicit = np.empty_like(a)
    for j in range(a.shape[1]):  # the i-th smallest value of a column becomes Φ⁻¹(i / (n + 1))
        explicit[np.argsort(a[:, j]), j] = stats.norm.ppf(np.arange(1, 501) / 501)
    np.testing.assert_allclose(normal_scores(a), explicit, atol=1e-12)
    ties = np.array([[0.0], [1.0], [0.0], [1.0]])  # tied values share their average rank
    np.testing.assert_allclose(normal_scores(ties)[:, 0], stats.norm.ppf(np.array([1.5, 3.5, 1.5, 3.5]) / 5))


def test_rank_marginals_make_the_estimate_blind_to_monotone_maps():
    tx, ty, ex, ey = split("normal-1-1", pairs=2000)
    config = MIConfig(estimator="smile", steps=300)
    plain = estimate_mi(tx, ty, ex, ey, config)
    mapped = estimate_mi(np.exp(tx), np.arcsinh(ty) ** 3, np.exp(ex), np.arcsinh(ey) ** 3, config)
    assert mapped.estimate == plain.estimate


# --- KSG -----------------------------------------------------------------------------------------

def brute_force_ksg(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Kraskov et al.'s algorithm 1, one point at a time, every distance computed."""
    n, terms = len(x), []
    for i in range(n):
        dx = np.abs(x - x[i]).max(1)
        dy = np.abs(y - y[i]).max(1)
        joint = np.maximum(dx, dy)
        joint[i] = np.inf
        eps = np.sort(joint)[k - 1]
        n_x, n_y = (dx < eps).sum() - 1, (dy < eps).sum() - 1
        terms.append(special.digamma(k) + special.digamma(n) - special.digamma(n_x + 1) - special.digamma(n_y + 1))
    return float(np.mean(terms))


@pytest.mark.parametrize("dims", [2, 8])  # 2 + 2 on the KD-tree, 8 + 8 on chunked distances
def test_ksg_equals_a_brute_force_reference(dims):
    rng = np.random.default_rng(dims)
    x = rng.standard_normal((300, dims))
    y = 0.6 * x + 0.8 * rng.standard_normal((300, dims))
    for k in (1, 3):
        estimate, stderr = ksg_module.ksg(x, y, k)
        jittered = ksg_module._jitter(x, 0), ksg_module._jitter(y, 1)
        assert estimate == pytest.approx(brute_force_ksg(*jittered, k), abs=1e-12)
        assert stderr > 0
    by_tree = ksg_module._counts_by_tree(*jittered, 3)
    by_distances = ksg_module._counts_by_distances(*jittered, 3)
    assert all((a == b).all() for a, b in zip(by_tree, by_distances))


def test_ksg_finds_independence():
    rng = np.random.default_rng(2)
    independent = estimate_mi(*(rng.standard_normal((3000, 2)) for _ in range(4)), MIConfig(estimator="ksg"))
    assert abs(independent.estimate) < 0.03 and independent.steps_used is None
