"""The ADMM linear SVM solves LinearSVC's problem (same weights, objective and accuracy), and says
what it did: iterations, whether it met its tolerance."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from dimctl.evaluate.linear_svm import fit_linear_svm
from dimctl.evaluate.probes import ProbeConfig, probe, probe_result


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x, y = d.data.astype(np.float32), d.target
    scaler = StandardScaler().fit(x[:1400])
    return scaler.transform(x[:1400]).astype(np.float32), y[:1400], scaler.transform(x[1400:]).astype(np.float32), y[1400:]


@pytest.fixture(scope="module")
def liblinear(digits):
    xtr, ytr, _, _ = digits
    return LinearSVC(C=1.0, dual=True, tol=1e-6, max_iter=100_000).fit(xtr, ytr)


def _objective(x, y, weights, bias, c=1.0):
    """LinearSVC's primal (squared hinge, one-vs-rest, bias penalised), summed over classes."""
    t = np.where(y[:, None] == np.arange(weights.shape[1]), 1.0, -1.0)
    margins = np.clip(1 - t * (x @ weights + bias), 0, None)
    return 0.5 * ((weights ** 2).sum() + (bias ** 2).sum()) + c * (margins ** 2).sum()


def test_weights_and_objective_match_liblinear_at_convergence(digits, liblinear):
    xtr, ytr, _, _ = digits
    fit = fit_linear_svm(torch.from_numpy(xtr), torch.from_numpy(ytr), 10, c=1.0, tol=1e-6, max_iter=5000)
    assert fit.converged and fit.rel_grad <= 1e-6 and fit.solver == "admm"
    weights, bias = fit.weights.numpy(), fit.bias.numpy()
    scale = np.abs(liblinear.coef_).max()
    # A wrong loss, penalty or C misses by 0.3 of the scale or more.
    assert np.abs(weights.T - liblinear.coef_).max() < 0.03 * scale
    assert np.abs(bias - liblinear.intercept_).max() < 0.03 * max(1.0, np.abs(liblinear.intercept_).max())
    ours = _objective(xtr, ytr, weights, bias)
    theirs = _objective(xtr, ytr, liblinear.coef_.T, liblinear.intercept_)
    assert abs(fit.objective - ours) < 1e-3 * ours  # the fit reports the objective it reached
    assert ours <= theirs * (1 + 1e-4), (ours, theirs)


def test_iteration_cap_is_reported_as_not_converged(digits):
    xtr, ytr, _, _ = digits
    fit = fit_linear_svm(torch.from_numpy(xtr), torch.from_numpy(ytr), 10, tol=1e-8, max_iter=7)
    assert fit.iterations == 7 and not fit.converged and fit.rel_grad > 1e-8
    assert fit.info() == {"solver": "admm", "solver_iterations": 7, "solver_converged": False,
                          "solver_rel_grad": pytest.approx(fit.rel_grad, rel=1e-2)}


def test_svm_torch_probe_accuracy_matches_liblinear(digits, liblinear):
    xtr, ytr, xte, yte = digits
    ours = probe(xtr, ytr, xte, yte, "svm-torch")
    theirs = float((liblinear.predict(xte) == yte).mean())
    # Measured 0.884 and 0.887 (one test image apart).
    assert ours > 0.85 and abs(ours - theirs) < 0.01, (ours, theirs)


def test_svm_names_the_solver_each_size_gets(digits):
    xtr, ytr, xte, yte = digits
    exact = probe_result(xtr, ytr, xte, yte, "svm")
    assert exact.info["solver"] == "libsvm" and exact.info["solver_converged"] is True
    large = probe_result(xtr, ytr, xte, yte, "svm", ProbeConfig(svm_exact_max=1000))  # 1,400 samples: above
    assert large.info["solver"] == "admm" and large.info["solver_converged"] is True
    assert large.info["solver_iterations"] > 0 and large.accuracy > 0.85


def test_a_fit_the_machine_cannot_hold_is_refused_before_allocating(digits, monkeypatch):
    # Rows × classes from the labels: 1,400 rows of 10 classes need ~3.7 MB; on a "machine" of 1 MB
    # it is refused by name, before the (N, K) arrays exist.
    from dimctl.errors import UsageError
    from dimctl.evaluate import linear_svm
    from dimctl.io.memory import MemoryLimit

    xtr, ytr, _, _ = digits
    monkeypatch.setattr(linear_svm, "usable_memory", lambda: MemoryLimit(1 << 20, from_cgroup=False))
    monkeypatch.setattr(linear_svm.torch, "full", lambda *a, **k: pytest.fail("allocated before the check"))
    with pytest.raises(UsageError, match=r"1400 rows × 10 classes needs about .* --classifier mlp"):
        fit_linear_svm(torch.from_numpy(xtr), torch.from_numpy(ytr), 10)
    monkeypatch.undo()
    assert fit_linear_svm(torch.from_numpy(xtr), torch.from_numpy(ytr), 10, max_iter=5).iterations == 5
