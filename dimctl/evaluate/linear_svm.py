"""A linear SVM solved in the primal with batched tensor ops (the ``svm-torch`` probe).

Same model as scikit-learn's LinearSVC (one-vs-rest, squared hinge, L2 penalty):

    minimise over W, b   ½(‖W‖² + ‖b‖²) + C · Σ_i Σ_k max(0, 1 - t_ik (w_k·x_i + b_k))²,   t_ik = ±1

(the bias is penalised too, as liblinear does with its intercept feature; on digits the
weights agree with LinearSVC's to 0.008 on a scale of 1.4).

The objective is smooth and convex, so full-batch L-BFGS converges in a few hundred matrix
products over the whole feature matrix, one (N, D) × (D, K) product each. That runs at the
machine's matmul speed (and on a GPU when one is there), where liblinear's coordinate descent
walks the data one sample at a time. benchmarks/probe_time.py compares the two.
"""

import numpy as np
import torch


def fit_linear_svm(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float = 1.0,
                   max_iter: int = 500, tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (D, K) and biases (K,) for standardised features ``x`` (N, D) and labels ``y`` (N,)."""
    n, d = x.shape
    targets = torch.full((n, num_classes), -1.0, dtype=x.dtype, device=x.device)
    targets[torch.arange(n, device=x.device), y] = 1.0
    weights = torch.zeros(d, num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], lr=1.0, max_iter=max_iter, tolerance_grad=tol,
                                  tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")
    # Dividing the objective by C·N keeps its scale independent of the sample count, so the
    # solver's tolerances mean the same on 1,000 and 1,000,000 samples; the minimiser is unchanged.
    scale = 1.0 / (c * n)

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        margins = (1.0 - targets * (x @ weights + bias)).clamp_min(0.0)
        loss = 0.5 * (weights.pow(2).sum() + bias.pow(2).sum()) * scale + margins.pow(2).sum() / n
        loss.backward()
        return loss

    optimiser.step(objective)
    return weights.detach(), bias.detach()


def linear_svm_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                        c: float = 1.0, device: str | torch.device = "cpu") -> float:
    """Train on standardised float32 features, return test accuracy."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    xtr = torch.as_tensor(train_x, dtype=torch.float32, device=device)
    xte = torch.as_tensor(test_x, dtype=torch.float32, device=device)
    weights, bias = fit_linear_svm(xtr, torch.as_tensor(train_y, dtype=torch.int64, device=device), num_classes, c)
    predicted = (xte @ weights + bias).argmax(1).cpu().numpy()
    return float((predicted == test_y).mean())
