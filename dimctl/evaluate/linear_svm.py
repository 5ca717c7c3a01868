"""The linear SVM probe: scikit-learn LinearSVC's model, solved by ADMM with batched tensor ops.

The model is LinearSVC's (one-vs-rest, squared hinge, L2 penalty, the bias penalised as liblinear
does with its intercept feature):

    minimise over W, b   ½(‖W‖² + ‖b‖²) + C · Σ_i Σ_k max(0, 1 - t_ik (w_k·x_i + b_k))²,   t_ik = ±1

one independent problem per class k, all K solved at once. Below x̃ = [x, 1], w̃_k = [w_k, b_k],
X̃ the (N, D+1) matrix of the x̃ and G = X̃ᵀX̃ its Gram matrix.

Why it is fast. With C = 1 on 50,000 samples the regularisation is weak: the problem is very
ill-conditioned (Hessian eigenvalues from 1 to ~10⁷) and piecewise quadratic with thousands of
samples on the margin. That defeats gradient methods (full-batch L-BFGS: 500 iterations, 531 s),
liblinear's dual coordinate descent (1,000 epochs, 497 s, not converged), Gram-preconditioned
Newton-CG (the active set is 5-20 % of the samples, so G is a poor model of the Hessian: hundreds
of CG steps per Newton step) and exact Newton (every margin crossing is a rank-one change of a
D × D Hessian; on the 50k × 4,096 features 13 Newton steps took 14 minutes and still moved hundreds
of samples each). ADMM splits the margins off the weights,

    minimise ½‖W̃‖² + C Σ max(0, 1 - t∘Z)²   subject to   Z = X̃ W̃,

    W̃ ← (I + ρG)⁻¹ ρ X̃ᵀ(Z − U)            the ill-conditioned part, solved exactly with one
                                            Cholesky factorisation shared by every class and
                                            every iteration
    Z ← prox of the squared hinge at X̃W̃ + U  elementwise, in closed form: the combinatorial part
    U ← U + X̃W̃ − Z

(over-relaxed by 1.6; Anderson acceleration over the last 5 iterates). The Gram matrix costs one
pass of N·D² multiply-adds; each iteration then costs one (N, D) × (D, K) and one (K, N) × (N, D)
product for all K classes at once, and ~100-300 iterations reach the tolerance. On CPUs both
products, and the (D+1)² × (D+1, K) ones, run through oneDNN on copies of the matrices converted
once (2-4× MKL's speed at K = 10 columns here). (I + ρG)⁻¹ is applied as an explicit inverse plus
one step of iterative refinement: LAPACK's triangular solves are 10× slower at 10 right-hand sides,
and the inverse alone leaves a residual ~κ·ε that stalls the iteration at a relative gradient ~1e-4.
bf16 products were measured and rejected: their rounding stalls ADMM at 3× the optimal objective.

Convergence: relative gradient norm, per class, ‖∇f_k(w̃_k)‖ ≤ tol · ‖∇f_k(0)‖ (the form of the
criterion liblinear's primal solver uses), checked every ``check_every`` iterations on the exact
fp32 gradient. Measured on Fashion-MNIST conv features (4,096-d): tol = 1e-4 leaves the objective
0.6 % above its optimum at 10,000 samples (40 iterations), 0.3 % at 20,000 (100) and ~0.1 % at
50,000 (~280); tol = 1e-5 leaves < 0.03 % (130 iterations at 10,000). The result records the
iterations and whether the criterion was met within ``max_iter``; nothing is printed or warned.
"""

from dataclasses import dataclass

import numpy as np
import torch

from dimctl import progress

from dimctl.errors import UsageError
from dimctl.io.memory import usable_memory

SOLVER = "admm"


@dataclass(frozen=True)
class LinearSVMFit:
    weights: torch.Tensor   # (D, K)
    bias: torch.Tensor      # (K,)
    iterations: int
    converged: bool
    rel_grad: float         # max over classes of ‖∇f_k‖ / ‖∇f_k(0)‖ at the returned weights
    objective: float        # the objective above, summed over classes
    rho: float              # the final ADMM penalty
    solver: str = SOLVER

    def info(self) -> dict:
        """The fields a probe result records (JSON-friendly)."""
        return {"solver": self.solver, "solver_iterations": self.iterations, "solver_converged": self.converged,
                "solver_rel_grad": float(f"{self.rel_grad:.3g}")}


class _Products:
    """X̃ W and X̃ᵀ U for X̃ = [x, 1], through oneDNN on CPU when it is there (checked once against
    the plain product), otherwise torch.matmul in the orientation MKL runs fast (Uᵀx, never xᵀU)."""

    def __init__(self, x: torch.Tensor):
        self.x = x
        self.onednn = False
        if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
            try:
                self._linear = torch._C._nn.mkldnn_linear
                self._xm = x.to_mkldnn()
                self._xtm = x.T.contiguous().to_mkldnn()
                self.onednn = True
                probe = torch.linspace(-1, 1, 2 * x.shape[1], dtype=x.dtype).view(x.shape[1], 2)
                ours, plain = self._x_w(probe)[:64], x[:64] @ probe
                if float((ours - plain).norm()) > 1e-4 * float(plain.norm()) + 1e-30:
                    raise RuntimeError("oneDNN product disagrees")
            except Exception:  # private API or no oneDNN: the plain products are correct, only slower
                self.onednn = False
                self._xm = self._xtm = None

    def _x_w(self, w: torch.Tensor) -> torch.Tensor:
        if self.onednn:
            return self._linear(self._xm, w.T.contiguous()).to_dense()
        return self.x @ w

    def forward(self, wb: torch.Tensor) -> torch.Tensor:
        """X̃ W̃: (N, K) from (D+1, K)."""
        return self._x_w(wb[:-1]) + wb[-1]

    def backward(self, u: torch.Tensor) -> torch.Tensor:
        """X̃ᵀ U: (D+1, M) from (N, M)."""
        if self.onednn:
            xtu = self._linear(u.T.contiguous().to_mkldnn(), self._xtm).to_dense().T
        else:
            xtu = (u.T @ self.x).T
        return torch.cat([xtu, u.sum(0, keepdim=True)], 0)


def _gram(x: torch.Tensor) -> torch.Tensor:
    """X̃ᵀX̃, (D+1)², computing only the blocks on and above the diagonal (5/8 of the full product)."""
    n, d = x.shape
    g = torch.empty(d + 1, d + 1, dtype=x.dtype, device=x.device)
    edges = np.linspace(0, d, 5).astype(int) if d >= 1024 else np.array([0, d])
    for i0, i1 in zip(edges[:-1], edges[1:]):
        block = x[:, i0:i1].T @ x[:, i0:]
        g[i0:i1, i0:d] = block
        g[i0:d, i0:i1] = block.T
    s = x.sum(0)
    g[:d, d] = s
    g[d, :d] = s
    g[d, d] = n
    return g


def _inverse(g: torch.Tensor, rho: float) -> torch.Tensor:
    """(I + ρG)⁻¹ from its Cholesky factor. Applied by one matrix product per iteration: LAPACK's
    triangular solves with 10 right-hand sides ran ten times slower than that product here."""
    m = rho * g
    m.diagonal().add_(1.0)
    factor, info = torch.linalg.cholesky_ex(m)
    if int(info) == 0:
        return torch.cholesky_inverse(factor)
    m = m.double()  # fp32 lost positive definiteness (never seen): factor in fp64 instead
    return torch.cholesky_inverse(torch.linalg.cholesky(m)).to(g.dtype)


class _ADMM:
    """The iteration, all classes at once: state W̃ (D+1, K), Z and U (N, K)."""

    def __init__(self, x: torch.Tensor, t: torch.Tensor, c: float, rho: float, w: torch.Tensor,
                 z: torch.Tensor, u: torch.Tensor):
        self.ops = _Products(x)
        self.gram = _gram(x)
        self.inverse = _inverse(self.gram, rho)
        if self.ops.onednn:  # (D+1)² × (D+1, K) products: oneDNN 4 ms, MKL 16 ms here
            self._linear = torch._C._nn.mkldnn_linear
            self._onednn = {id(self.inverse): self.inverse.to_mkldnn(), id(self.gram): self.gram.to_mkldnn()}
        self.t, self.c, self.rho = t, c, rho
        self.w, self.z, self.u = w, z, u
        self.xw = self.ops.forward(w)
        # Anderson's memory: the last _MEMORY differences of the mapped iterates and of their
        # residuals, one row each, written in turn (the least-squares mix does not depend on the
        # rows' order), and the previous step's pair they are taken from. Differences are kept, not
        # iterates, so no step stacks copies: the fit's peak fell from 65 to 37 (N, K) arrays, and
        # an iteration takes 0.3-0.6× the time it did (20,000 × 256, K = 10 to 1,000).
        self.d_x = self.d_f = None
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None
        self.steps_mixed = 0

    def _square(self, matrix: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.ops.onednn:
            return self._linear(self._onednn[id(matrix)], v.T.contiguous()).to_dense()
        return matrix @ v

    def objective(self) -> float:
        xi = (1 - self.t * self.xw).clamp_min(0)
        return float(0.5 * self.w.pow(2).sum() + self.c * xi.pow(2).sum())

    def gradient(self, rhs_too: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """∇f at W (one pass over the features; with the next w-step's right side fused in)."""
        xi = (1 - self.t * self.xw).clamp_min(0)
        k = self.t.shape[1]
        columns = torch.cat([self.t * xi, self.z - self.u], 1) if rhs_too else self.t * xi
        fused = self.ops.backward(columns)
        return self.w - 2 * self.c * fused[:, :k], (fused[:, k:] if rhs_too else None)

    def step(self, rhs: torch.Tensor | None = None) -> None:
        t, rho = self.t, self.rho
        if rhs is None:
            rhs = self.ops.backward(self.z - self.u)
        right = rho * rhs  # w = (I + ρG)⁻¹ right, with one step of iterative refinement
        w = self._square(self.inverse, right)
        self.w = w + self._square(self.inverse, right - w - rho * self._square(self.gram, w))
        self.xw = self.ops.forward(self.w)
        v = _RELAX * self.xw + (1 - _RELAX) * self.z
        q = v + self.u
        tq = t * q
        a = 2 * self.c / rho  # prox of (C/ρ)·max(0, 1 - t z)²: closed form where the hinge is active
        z_new = torch.where(tq >= 1, q, t * (tq + a) / (1 + a))
        u_new = self.u + v - z_new
        # Anderson acceleration (type II, last _MEMORY steps) of the fixed-point map (Z, U) → (Z_new, U_new).
        n, k = t.shape
        mapped = torch.cat([z_new.flatten(), u_new.flatten()])
        del z_new, u_new, v, q, tq
        residual = mapped - torch.cat([self.z.flatten(), self.u.flatten()])
        if self.previous is not None:
            if self.d_x is None:
                self.d_x = mapped.new_empty(_MEMORY, mapped.numel())
                self.d_f = mapped.new_empty(_MEMORY, mapped.numel())
            row = self.steps_mixed % _MEMORY
            torch.sub(mapped, self.previous[0], out=self.d_x[row])
            torch.sub(residual, self.previous[1], out=self.d_f[row])
            self.steps_mixed += 1
        self.previous = (mapped, residual)
        if self.steps_mixed:
            used = min(self.steps_mixed, _MEMORY)
            d_f, d_x = self.d_f[:used], self.d_x[:used]
            normal = d_f @ d_f.T
            normal.diagonal().add_(1e-8 * float(normal.diagonal().max()) + 1e-30)
            mapped = mapped - torch.linalg.solve(normal, d_f @ residual) @ d_x
        self.z, self.u = mapped[: n * k].view(n, k), mapped[n * k:].view(n, k)


_RELAX, _MEMORY = 1.6, 5


def _rel_grad(grad: torch.Tensor, grad0: torch.Tensor) -> float:
    return float((grad.norm(dim=0) / grad0).max())


def fit_linear_svm(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float = 1.0, tol: float = 1e-4,
                   max_iter: int = 1000, rho: float | None = None, check_every: int = 10,
                   trace: list | None = None) -> LinearSVMFit:
    """LinearSVC's one-vs-rest model for features ``x`` (N, D) (standardise them first) and labels
    ``y`` (N,) in [0, num_classes). Stops when the relative gradient of every class is at most
    ``tol`` (checked every ``check_every`` iterations) or after ``max_iter`` iterations. ``rho``:
    the ADMM penalty (default: see ``default_rho``). ``trace``: a list that gets one dict per check
    (iteration, rel_grad), for benchmarks."""
    n, d = x.shape
    k = num_classes
    _check_memory(n, d, k, x.device)
    x = x.contiguous()
    t = torch.full((n, k), -1.0, dtype=x.dtype, device=x.device)
    t[torch.arange(n, device=x.device), y] = 1.0
    rho = float(rho) if rho is not None else default_rho(n, d + 1, c)
    zeros = torch.zeros(n, k, dtype=x.dtype, device=x.device)
    solver = _ADMM(x, t, c, rho, torch.zeros(d + 1, k, dtype=x.dtype, device=x.device), zeros, zeros.clone())
    grad0 = (2 * c * solver.ops.backward(t)).norm(dim=0).clamp_min(torch.finfo(x.dtype).tiny)
    iterations, converged, rel_grad = 0, False, 1.0
    with progress.activity("linear svm (admm)", total=max_iter, unit="iter") as task:
        while True:
            task.update(iterations)
            rhs = None
            if iterations > 0 and (iterations % check_every == 0 or iterations == max_iter):
                grad, rhs = solver.gradient(rhs_too=iterations < max_iter)
                rel_grad = _rel_grad(grad, grad0)
                if trace is not None:
                    trace.append({"iteration": iterations, "rel_grad": rel_grad, "objective": solver.objective()})
                if rel_grad <= tol:
                    converged = True
                    break
            if iterations >= max_iter:
                break
            solver.step(rhs)
            iterations += 1
    w = solver.w
    objective = solver.objective()
    return LinearSVMFit(weights=w[:d].contiguous(), bias=w[d].contiguous(), iterations=iterations, converged=converged,
                        rel_grad=rel_grad, objective=objective, rho=rho)


# Peak memory of a fit in (N, K) float32 arrays: the margins, duals, targets and products, and
# Anderson's 5 differences of (Z, U) pairs (measured: 37 at N = 20,000, K = 500 and 1,000).
PEAK_NK_ARRAYS = 40


def _check_memory(n: int, d: int, k: int, device: torch.device) -> None:
    """Refuse before allocating a fit the machine cannot hold: K comes from the labels, and rows ×
    classes can ask for more than any machine has (50,000 rows of 50,000 classes: 660 GB)."""
    memory = usable_memory() if device.type == "cpu" else None
    needed = 4 * (PEAK_NK_ARRAYS * n * k + 3 * (d + 1) * (d + 1 + k))
    if memory is not None and needed > memory.bytes:
        raise UsageError(f"the linear SVM on {n} rows × {k} classes needs about {needed / 2**30:.1f} GiB, more than "
                         f"{memory.describe(f'{memory.bytes / 2**30:.1f} GiB')}; probe fewer classes or rows, "
                         f"or use --classifier mlp")


def default_rho(n: int, d: int, c: float = 1.0) -> float:
    """The ADMM penalty, 2C · 6e-4 · N / (D+1). Measured (C = 1): digits (1,400 × 64) needs the
    fewest iterations near 5e-2 (this rule: 2.6e-2, 240 iterations to 1e-5); Fashion-MNIST conv
    features (× 4,096) near 1e-3 at 10,000 samples (rule 2.9e-3), 2.5e-3 at 20,000 (5.9e-3) and
    1e-2-1.5e-2 at 50,000 (1.5e-2). Off by 2-4× the iteration count grows by < 2×; off by 30×,
    by 5-10×."""
    return 2 * c * 6e-4 * max(n, 1) / max(d, 1)


def linear_svm_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                     c: float = 1.0, device: str | torch.device = "cpu", **solver) -> tuple[float, LinearSVMFit]:
    """Train on standardised float32 features; test accuracy and the fit (solver, iterations, convergence)."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    xtr = torch.as_tensor(train_x, dtype=torch.float32, device=device)
    fit = fit_linear_svm(xtr, torch.as_tensor(train_y, dtype=torch.int64, device=device), num_classes, c, **solver)
    del xtr
    xte = torch.as_tensor(test_x, dtype=torch.float32, device=device)
    predicted = (xte @ fit.weights + fit.bias).argmax(1).cpu().numpy()
    return float((predicted == test_y).mean()), fit
