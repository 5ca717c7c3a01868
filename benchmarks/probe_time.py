"""Probe time on CIFAR-sized conv features: scikit-learn against batched torch, in one run.

    python benchmarks/probe_time.py                      # 50,000 × 4,096 Fashion-MNIST conv features
    python benchmarks/probe_time.py --train 10000        # a quicker look

Features: the `conv` tap (256×4×4 = 4,096 values, the size of CIFAR-10's conv features) of a
randomly initialised DCGAN encoder over Fashion-MNIST at 32×32 (the Debian package
dataset-fashion-mnist), the first --train training images and the 10,000 test images,
standardised once. Pairs timed on the same arrays:
  svm   scikit-learn LinearSVC (liblinear, 1,000 epochs: dimctl's `svm` above 20,000 samples until
        it was replaced)  vs  dimctl's `svm` there: the ADMM solver of dimctl.evaluate.linear_svm
  mlp   scikit-learn MLPClassifier (200 hidden, Adam, same epochs)      vs  dimctl's `mlp` probe (torch)
Prints seconds and test accuracy of each and the speed-up, and what the ADMM solver did (iterations,
convergence, relative gradient); the faster of a pair becomes the default when its accuracy is
within 0.5 points. --skip-reference times only dimctl's side (LinearSVC alone takes ~8 minutes).
"""

import argparse
import time
import warnings

import numpy as np
import torch

from dimctl.data.registry import load_dataset
from dimctl.evaluate.extract import iter_features
from dimctl.evaluate.linear_svm import linear_svm_probe
from dimctl.evaluate.probes import ProbeConfig, _standardise, mlp
from dimctl.models.encoders import EncoderConfig, build_encoder


def conv_features(train: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_dataset("fashion-mnist")
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(in_channels=1, image_size=32)).eval()
    out = {}
    for split in ("train", "test"):
        images, labels = data.split(split)
        if split == "train":
            images, labels = images[:train], labels[:train]
        feats = np.concatenate([b["conv"].reshape(len(b["conv"]), -1) for _, b in iter_features(encoder, images, ["conv"], 1000)])
        out[split] = (feats, labels.numpy())
    return out["train"][0], out["train"][1], out["test"][0], out["test"][1]


def timed(fn):
    start = time.perf_counter()
    accuracy = fn()
    return time.perf_counter() - start, accuracy


def sklearn_svm(xtr, ytr, xte, yte, config: ProbeConfig) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LinearSVC(C=config.svm_c, dual=True, tol=1e-3, max_iter=1000, random_state=config.seed).fit(xtr, ytr)
    return float((model.predict(xte) == yte).mean())


def sklearn_mlp(xtr, ytr, xte, yte, config: ProbeConfig) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(200,), batch_size=config.mlp_batch_size, learning_rate_init=config.mlp_lr,
                              max_iter=config.mlp_epochs, random_state=config.seed, early_stopping=False,
                              n_iter_no_change=config.mlp_epochs).fit(xtr, ytr)
    return float((model.predict(xte) == yte).mean())


def mlp_gemm_floor(xtr: np.ndarray, config: ProbeConfig) -> float:
    """Seconds the mlp probe's first layer alone needs over its epochs: per batch the forward
    (B, D) × (D, 200) and the weight gradient (D, B) × (B, 200), nothing else; the bound that
    no implementation of that model on this machine's fp32 GEMM can beat."""
    x = torch.from_numpy(xtr)
    w, g = torch.randn(x.shape[1], 200), torch.randn(config.mlp_batch_size, 200)
    order = torch.randperm(x.shape[0])
    start = time.perf_counter()
    for _ in range(config.mlp_epochs):
        for first in range(0, x.shape[0] - config.mlp_batch_size + 1, config.mlp_batch_size):
            batch = x[order[first:first + config.mlp_batch_size]]
            batch @ w
            batch.T @ g
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--mlp-epochs", type=int, default=20)
    parser.add_argument("--skip-reference", action="store_true", help="Time only dimctl's probes.")
    parser.add_argument("--probes", default="svm,mlp", help="Which pairs to time (comma-separated).")
    args = parser.parse_args()
    probes = args.probes.split(",")
    config = ProbeConfig(mlp_epochs=args.mlp_epochs)
    start = time.perf_counter()
    xtr, ytr, xte, yte = conv_features(args.train)
    raw_xte = xte
    xtr, xte = _standardise(xtr, xte)
    print(f"features: {xtr.shape[0]} train × {xtr.shape[1]} (test {raw_xte.shape[0]}), extracted and standardised "
          f"in {time.perf_counter() - start:.1f} s; threads={torch.get_num_threads()} torch={torch.__version__} "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}", flush=True)
    fits = []

    def admm():
        accuracy, fit = linear_svm_probe(xtr, ytr, xte, yte, config.svm_c, tol=config.svm_tol, max_iter=config.svm_max_iter)
        fits.append(fit)
        return accuracy

    rows = []
    for name, reference, candidate in (
            ("svm", ("sklearn LinearSVC", lambda: sklearn_svm(xtr, ytr, xte, yte, config)), ("dimctl svm (ADMM)", admm)),
            ("mlp", ("sklearn MLPClassifier", lambda: sklearn_mlp(xtr, ytr, xte, yte, config)),
             # dimctl's mlp standardises itself; on standardised input that is the identity.
             ("dimctl mlp (torch)", lambda: mlp(xtr, ytr, xte, yte, config).accuracy))):
        if name not in probes:
            continue
        cand_s, cand_acc = timed(candidate[1])
        ref_s, ref_acc = (float("nan"), float("nan")) if args.skip_reference else timed(reference[1])
        rows.append((name, reference[0], ref_s, ref_acc, candidate[0], cand_s, cand_acc))
        print(f"  {name}: {candidate[0]} {cand_s:.1f} s acc {cand_acc:.4f}; {reference[0]} {ref_s:.1f} s acc {ref_acc:.4f}",
              flush=True)
    print(f"{'probe':5s} {'reference':22s} {'s':>7s} {'acc':>7s}   {'candidate':20s} {'s':>7s} {'acc':>7s}  speed-up  Δacc(pts)")
    for name, rn, rs, ra, cn, cs, ca in rows:
        print(f"{name:5s} {rn:22s} {rs:7.1f} {ra:7.4f}   {cn:20s} {cs:7.1f} {ca:7.4f}  {rs / cs:7.2f}×  {100 * (ca - ra):+6.2f}")
    if "mlp" in probes:
        floor = mlp_gemm_floor(xtr, config)
        print(f"mlp: its first layer's GEMMs alone take {floor:.1f} s over {config.mlp_epochs} epochs "
              f"(batch {config.mlp_batch_size}); dimctl's mlp is {rows[-1][5] / floor:.2f}× that floor")
    for fit in fits:
        print(f"ADMM: {fit.iterations} iterations, converged={fit.converged} (tol {config.svm_tol:g}), "
              f"relative gradient {fit.rel_grad:.2e}, objective {fit.objective:.6g}, rho {fit.rho:.3g}")


if __name__ == "__main__":
    main()
