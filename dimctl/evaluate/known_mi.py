"""Distributions whose mutual information is known in closed form, to check MI estimators against.

The families are those the MI-estimation literature benchmarks with (Czyż et al., "Beyond Normal",
NeurIPS 2023): Gaussians with dense or sparse interactions, multivariate Student-t, additive
uniform noise, and invertible maps of them. An invertible map of X (or of Y) leaves I(X; Y)
unchanged, so a transformed task has its base task's MI: an estimator that moves under the map is
wrong by exactly its move. Everything is numpy, seeded, and torch-free.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class KnownMITask:
    """One distribution of pairs (X, Y): its name, its true MI in nats and a sampler of n pairs."""
    name: str
    x_dim: int
    y_dim: int
    mi: float
    sample: Sampler
    description: str

    def pairs(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """n pairs as float64 arrays (n, x_dim) and (n, y_dim), the same for the same seed."""
        return self.sample(np.random.default_rng(seed), n)


# --- Gaussians --------------------------------------------------------------------------------

def gaussian_mi_of(covariance: np.ndarray, x_dim: int) -> float:
    """I(X; Y) = ½ (log det Σ_X + log det Σ_Y − log det Σ) for a joint Gaussian of covariance Σ."""
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731 - three uses on one line below
    return 0.5 * (logdet(covariance[:x_dim, :x_dim]) + logdet(covariance[x_dim:, x_dim:]) - logdet(covariance))


def dense_covariance(x_dim: int, y_dim: int, correlation: float) -> np.ndarray:
    """Every pair of the x_dim + y_dim coordinates correlated by ``correlation``, within X and Y too."""
    d = x_dim + y_dim
    return np.full((d, d), correlation) + (1 - correlation) * np.eye(d)


def sparse_covariance(x_dim: int, y_dim: int, interacting: int, correlation: float) -> np.ndarray:
    """Coordinate i of X correlated with coordinate i of Y for the first ``interacting`` i; all
    other coordinates independent."""
    covariance = np.eye(x_dim + y_dim)
    for i in range(interacting):
        covariance[i, x_dim + i] = covariance[x_dim + i, i] = correlation
    return covariance


def _gaussian_sampler(covariance: np.ndarray, x_dim: int) -> Sampler:
    factor = np.linalg.cholesky(covariance)

    def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        z = rng.standard_normal((n, covariance.shape[0])) @ factor.T
        return z[:, :x_dim], z[:, x_dim:]
    return sample


def gaussian_task(name: str, covariance: np.ndarray, x_dim: int, description: str) -> KnownMITask:
    return KnownMITask(name, x_dim, covariance.shape[0] - x_dim, float(gaussian_mi_of(covariance, x_dim)),
                       _gaussian_sampler(covariance, x_dim), description)


# --- Student-t --------------------------------------------------------------------------------

def student_t_correction(dof: float, x_dim: int, y_dim: int) -> float:
    """What a multivariate Student-t adds to the MI of its scale matrix's Gaussian (Arellano-Valle,
    Contreras-Reyes & Genton 2013): positive, and zero only in the limit dof → ∞."""
    def g(a: float) -> float:
        return special.gammaln(a) - a * special.digamma(a)
    half = dof / 2
    return g(half) + g(half + (x_dim + y_dim) / 2) - g(half + x_dim / 2) - g(half + y_dim / 2)


def student_t_task(name: str, covariance: np.ndarray, x_dim: int, dof: float, description: str) -> KnownMITask:
    gaussian = _gaussian_sampler(covariance, x_dim)
    y_dim = covariance.shape[0] - x_dim

    def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = gaussian(rng, n)
        scale = np.sqrt(dof / rng.chisquare(dof, size=(n, 1)))  # one mixing variable shared by X and Y
        return x * scale, y * scale
    truth = float(gaussian_mi_of(covariance, x_dim) + student_t_correction(dof, x_dim, y_dim))
    return KnownMITask(name, x_dim, y_dim, truth, sample, description)


# --- Additive uniform noise -------------------------------------------------------------------

def additive_uniform_mi(epsilon: float) -> float:
    """I(X; X + N) for X ~ U(0, 1), N ~ U(−ε, ε): h(X + N) − log 2ε, with the trapezoidal density
    of X + N integrated in closed form: ε − log 2ε for ε ≤ ½, and 1/(4ε) beyond."""
    return epsilon - math.log(2 * epsilon) if epsilon <= 0.5 else 1 / (4 * epsilon)


def additive_uniform_task(epsilon: float) -> KnownMITask:
    def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(0, 1, (n, 1))
        return x, x + rng.uniform(-epsilon, epsilon, (n, 1))
    return KnownMITask(f"additive-{epsilon:g}", 1, 1, additive_uniform_mi(epsilon), sample,
                       f"Y = X + U(−{epsilon:g}, {epsilon:g}), X ~ U(0, 1)")


# --- Invertible maps (MI unchanged) -----------------------------------------------------------

def half_cube(v: np.ndarray) -> np.ndarray:
    return v * np.sqrt(np.abs(v))


def normal_cdf(v: np.ndarray) -> np.ndarray:
    return stats.norm.cdf(v)


def mixture_quantiles(weights: tuple[float, ...], means: tuple[float, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """A standard normal coordinate mapped to a mixture of unit-variance Gaussians by the mixture's
    quantile function (read off a fine grid): monotone, so invertible."""
    grid = np.linspace(min(means) - 9, max(means) + 9, 40_001)
    cdf = sum(w * stats.norm.cdf(grid, m, 1.0) for w, m in zip(weights, means))

    def transform(v: np.ndarray) -> np.ndarray:
        return np.interp(stats.norm.cdf(v), cdf, grid)
    return transform


def bimodal(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X to 0.3·N(0, 1) + 0.7·N(5, 1) and Y to ½·N(−1, 1) + ½·N(3, 1), as "Beyond Normal" does."""
    return mixture_quantiles((0.3, 0.7), (0.0, 5.0))(x), mixture_quantiles((0.5, 0.5), (-1.0, 3.0))(y)


def spiral(v: np.ndarray, axes: tuple[int, int]) -> np.ndarray:
    """Rotate coordinates ``axes`` by the angle ‖v‖²/dim (exp(‖v‖²/dim · A)·v, A the generator of that
    plane's rotations, as "Beyond Normal" does). The norm is kept, so rotating back by the same angle
    inverts it: invertible, but not coordinate-wise, so a rank (copula) transform cannot undo it."""
    angle = (v ** 2).sum(1) / v.shape[1]
    i, j = axes
    out = v.copy()
    out[:, i] = np.cos(angle) * v[:, i] - np.sin(angle) * v[:, j]
    out[:, j] = np.sin(angle) * v[:, i] + np.cos(angle) * v[:, j]
    return out


def spirals(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return spiral(x, (0, 1)), spiral(y, (1, 2))


def each_coordinate(transform: Callable[[np.ndarray], np.ndarray]) -> Callable:
    return lambda x, y: (transform(x), transform(y))


def mapped(task: KnownMITask, name: str, transform: Callable, what: str) -> KnownMITask:
    """``task`` with ``transform(x, y)`` (invertible in x and in y) applied: the same MI."""
    def sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        return transform(*task.sample(rng, n))
    return KnownMITask(name, task.x_dim, task.y_dim, task.mi, sample, f"{task.description}, then {what}")


# --- The benchmark's tasks ---------------------------------------------------------------------

def _tasks() -> dict[str, KnownMITask]:
    normal = gaussian_task("normal-1-1", sparse_covariance(1, 1, 1, 0.75), 1, "Gaussian, ρ = 0.75")
    sparse5 = gaussian_task("sparse-5-5", sparse_covariance(5, 5, 2, 0.8), 5, "Gaussian, 2 interacting pairs (ρ = 0.8)")
    sparse25 = gaussian_task("sparse-25-25", sparse_covariance(25, 25, 2, 0.8), 25,
                             "Gaussian, 2 interacting pairs (ρ = 0.8)")
    student1 = student_t_task("student-1-1-dof1", np.eye(2), 1, 1, "Student-t, 1 dof, identity scale")
    tasks = [
        normal,
        gaussian_task("dense-5-5", dense_covariance(5, 5, 0.5), 5, "Gaussian, every pair ρ = 0.5"),
        gaussian_task("dense-25-25", dense_covariance(25, 25, 0.5), 25, "Gaussian, every pair ρ = 0.5"),
        sparse5,
        sparse25,
        student1,
        student_t_task("student-5-5-dof2", np.eye(10), 5, 2, "Student-t, 2 dof, identity scale"),
        additive_uniform_task(0.1),
        additive_uniform_task(0.75),
        mapped(normal, "bimodal-1-1", bimodal, "each coordinate to a bimodal mixture"),
        mapped(student1, "asinh-student-1-1-dof1", each_coordinate(np.arcsinh), "asinh"),
        mapped(sparse5, "half-cube-sparse-5-5", each_coordinate(half_cube), "x·|x|^½"),
        mapped(sparse25, "normal-cdf-sparse-25-25", each_coordinate(normal_cdf),
               "each coordinate through the normal CDF"),
        mapped(sparse5, "spiral-sparse-5-5", spirals, "X and Y rotated by a norm-dependent angle"),
    ]
    return {task.name: task for task in tasks}


TASKS: dict[str, KnownMITask] = _tasks()

# The self-test's fast subset: one task per failure the benchmark guards against — a plain
# Gaussian, heavy tails, many dimensions with few interacting, and a marginal map.
FAST_SUBSET = ("normal-1-1", "student-1-1-dof1", "sparse-5-5", "half-cube-sparse-5-5")
