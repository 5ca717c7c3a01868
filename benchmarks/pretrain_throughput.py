"""Throughput of `dimctl pretrain` against a bare loop of the same model step, in one run.

    python benchmarks/pretrain_throughput.py                      # digits, mi-units 256, 5 epochs
    python benchmarks/pretrain_throughput.py --mi-units 2048 --epochs 1

Three measurements on the same data, seed, model and batches:
  bare      plain PyTorch: the DIM step (forward, MI + prior losses, two optimiser steps), nothing else;
  loop      dimctl's training loop called in-process (Accelerate, metrics, checkpoint, artifact);
  command   `dimctl pretrain` as a user runs it (interpreter start, imports, data loading included).
Prints images/s of each and the ratios loop/bare and command/bare (target ≥ 0.9 for loop/bare).
Each is run --repeats times, alternating, and the best time kept (the least disturbed run).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dimctl.data.registry import load_dataset
from dimctl.data.transforms import normalise
from dimctl.objectives import prior
from dimctl.train.config import PretrainConfig
from dimctl.train.loop import _epoch_order, build_models, pretrain


def bare_loop(config: PretrainConfig, images: torch.Tensor) -> tuple[float, int]:
    """The reference: the same step with nothing around it. Returns (seconds, images)."""
    _, model, disc = build_models(config, images.shape[1], images.shape[2])
    model.train()
    betas = (config.adam_beta1, config.adam_beta2)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr, betas=betas)
    n, b = images.shape[0], config.batch_size
    steps_per_epoch = n // b
    start = time.perf_counter()
    for epoch in range(config.epochs):
        order = _epoch_order(n, config.seed, epoch, images.device)
        for step in range(steps_per_epoch):
            x = normalise(images[order[step * b:(step + 1) * b]])
            y, terms = model(x)
            encoded = prior.encode_for_prior(y)
            disc.requires_grad_(False)
            loss = model.heads.mi_loss(terms) + config.gamma * prior.encoder_prior_loss(disc, encoded)
            disc.requires_grad_(True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            d_loss = prior.discriminator_loss(disc, encoded.detach(), config.prior_gradient_penalty)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
    return time.perf_counter() - start, config.epochs * steps_per_epoch * b


def dimctl_loop(config: PretrainConfig, data, run_dir: Path) -> tuple[float, int]:
    start = time.perf_counter()
    result = pretrain(config, data, run_dir)
    return time.perf_counter() - start, result.steps * config.batch_size


def dimctl_command(args, run_dir: Path) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "dimctl", "pretrain", "--dataset", args.dataset, "--mi-units", str(args.mi_units),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--checkpoint-every", "0",
           "--out", str(run_dir), "--force"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "DIMCTL_NO_PROGRESS": "1"})
    elapsed = time.perf_counter() - start
    steps = json.loads((run_dir / "config.json").read_text())["total_steps"]
    return elapsed, steps * args.batch_size


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--mi-units", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    data = load_dataset(args.dataset)
    config = PretrainConfig(dataset=args.dataset, mi_units=args.mi_units, epochs=args.epochs,
                            batch_size=args.batch_size, checkpoint_every=0, cpu=True)
    images = data.train_images
    best = {"bare": float("inf"), "loop": float("inf"), "command": float("inf")}
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, fn in (("bare", lambda: bare_loop(config, images)),
                             ("loop", lambda: dimctl_loop(config, data, Path(tmp) / f"loop{r}")),
                             ("command", lambda: dimctl_command(args, Path(tmp) / f"cmd{r}"))):
                seconds, count = fn()
                best[name], counts[name] = min(best[name], seconds), count
    rate = {k: counts[k] / best[k] for k in best}
    print(f"settings: dataset={args.dataset} mi_units={args.mi_units} epochs={args.epochs} batch={args.batch_size} "
          f"preset=dim-l estimator=jsd device=cpu threads={torch.get_num_threads()} torch={torch.__version__}")
    for k in best:
        print(f"{k:8s} {rate[k]:8.1f} images/s  ({counts[k]} images in {best[k]:.2f} s, best of {args.repeats})")
    print(f"ratio loop/bare    {rate['loop'] / rate['bare']:.3f}")
    print(f"ratio command/bare {rate['command'] / rate['bare']:.3f}")


if __name__ == "__main__":
    main()
