"""How close generated images are to real ones: the Fréchet distance between Gaussians fitted to
their features, and the Inception score (paper App. A.9, Table 11).

**Fréchet distance** (Heusel et al. 2017) between N(μ₁, Σ₁) and N(μ₂, Σ₂):
‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr (Σ₁Σ₂)^½. The trace of the matrix square root is computed in a
stable, real form: (Σ₁Σ₂)^½ has the same eigenvalues as the symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½, so
tr (Σ₁Σ₂)^½ = Σᵢ √λᵢ(Σ₁^½ Σ₂ Σ₁^½), with two symmetric eigendecompositions (scipy.linalg.eigh) in
float64 and round-off negatives clipped to 0. It agrees with scipy.linalg.sqrtm's trace
(tests/evaluate/test_frechet.py) without its complex parts or failures on singular covariances
(fewer samples than dimensions). In the Inception network's pool features it is the FID; in any
other feature space it is a Fréchet distance in that space, and is named so.

**Inception score** (Salimans et al. 2016): exp(E_x KL(p(y|x) ‖ p(y))), the mean and standard
deviation over ``splits`` equal parts of the samples, as the original code does. 1 for a
classifier that says the same thing about every image; the number of classes for one that is
certain about each image and spreads the images evenly over the classes.

**The FID Inception network** is torchvision's Inception3 changed the way pytorch-fid does to match
the TensorFlow graph that defines FID (inception-2015-12-05): 1008 classes, no auxiliary head,
average pools that exclude the padding in the A, C and first E blocks, a max pool in the last E
block. Its weights come from a file the user supplies (pytorch-fid's
pt_inception-2015-12-05-6726825d.pth, or the same tensors as .safetensors), read with
``torch.load(weights_only=True)`` — tensors only, no pickled code runs — or safetensors. Nothing is
downloaded. Images are resized to 299×299 (bilinear), scaled to [-1, 1], and grey images repeated
to three channels. The network lives in evaluate/fid_inception.py, imported only when it is built:
torchvision pulls in torch._dynamo, sympy and triton, seconds of start-up that nothing else here needs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from dimctl.errors import ArtifactError, UsageError
from dimctl.io.reading import require_file

if TYPE_CHECKING:
    from dimctl.evaluate.fid_inception import FIDInception

DEFAULT_SPLITS = 10


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, unbiased) of (N, D) features, N ≥ 2."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if x.shape[0] < 2:
        raise UsageError(f"a Fréchet distance needs at least 2 samples, got {x.shape[0]}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    from scipy import linalg  # here, not at import: it adds half a second to every dimctl start

    values, vectors = linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr (Σ₁Σ₂)^½ for symmetric PSD Σ₁, Σ₂, via the eigenvalues of Σ₁^½ Σ₂ Σ₁^½."""
    from scipy import linalg

    root = _psd_sqrt(sigma1)
    middle = root @ sigma2 @ root
    middle = (middle + middle.T) / 2  # symmetric up to round-off; make it exactly so for eigh
    return float(np.sqrt(np.clip(linalg.eigvalsh(middle), 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature sizes differ: {mu1.shape} and {mu2.shape}")
    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2)
    return max(float(distance), 0.0)  # ≥ 0 in exact arithmetic; round-off can dip a hair below


def frechet_distance_of(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*gaussian_statistics(features_a), *gaussian_statistics(features_b))


def inception_score(probabilities: np.ndarray, splits: int = DEFAULT_SPLITS) -> tuple[float, float]:
    """(mean, std) over ``splits`` parts of exp(E_x KL(p(y|x) ‖ p(y))), from (N, K) class probabilities."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < splits or splits < 1:
        raise UsageError(f"an Inception score over {splits} splits needs at least {splits} samples, got {p.shape[0]}")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        # p·log(p/p_y) with 0·log 0 = 0; p_y > 0 wherever p > 0.
        kl = np.where(part > 0, part * (np.log(np.where(part > 0, part, 1)) - np.log(np.where(marginal > 0, marginal, 1))), 0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def as_unit_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) → float [0, 1] with three channels (grey images repeated)."""
    x = images.float() / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise UsageError(f"the Inception network reads grey or RGB images, not {x.shape[1]}-channel ones")
    return x


@torch.no_grad()
def network_outputs(network: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], images: torch.Tensor,
                    batch_size: int = 64, device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(features, class probabilities) of uint8 ``images`` from a network that maps [0, 1] RGB
    images to (features, logits): the FID Inception network, or a small stand-in."""
    if isinstance(network, nn.Module):
        network.eval()
    features, probabilities = [], []
    for start in range(0, images.shape[0], batch_size):
        x = as_unit_rgb(images[start:start + batch_size].to(device))
        feats, logits = network(x)
        features.append(feats.double().cpu().numpy())
        probabilities.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
    return np.concatenate(features), np.concatenate(probabilities)


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a torch state-dict file read with weights_only=True
    (only tensors and plain containers are unpickled; anything else is refused)."""
    path = Path(path)
    require_file(path)  # a FIFO or device is refused, never read (it would block or never end)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, SafetensorError, RuntimeError, EOFError, …: all mean "not usable"
        raise ArtifactError(f"{path} is not a readable weights file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ArtifactError(f"{path} does not hold a dictionary of tensors")
    return state


def load_fid_inception(path: str | Path, device: torch.device | str = "cpu") -> FIDInception:
    """The FID Inception network with the weights in ``path`` (pytorch-fid's pt_inception-2015-12-05-6726825d.pth)."""
    from dimctl.evaluate.fid_inception import FIDInception

    state = read_weights_file(path)
    model = FIDInception()
    try:
        model.net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{path} does not hold the FID Inception weights "
                            f"(pytorch-fid's pt_inception-2015-12-05-6726825d.pth): {str(e).splitlines()[0]}") from e
    return model.to(device).eval()


def __getattr__(name: str):
    if name == "FIDInception":  # `from dimctl.evaluate.frechet import FIDInception` imports torchvision only then
        from dimctl.evaluate.fid_inception import FIDInception

        return FIDInception
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
