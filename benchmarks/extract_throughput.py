"""Throughput of `dimctl extract` against a bare forward pass of the same encoder, in one run.

    python benchmarks/extract_throughput.py                       # Fashion-MNIST, 70,000 images
    python benchmarks/extract_throughput.py --dataset digits

  bare      the encoder's forward over the same uint8 images in batches (normalise included), no output;
  command   `dimctl extract ENCODER --layers conv,fc,y -o FILE.h5` as a user runs it: start-up,
            dataset loading, every split, the HDF5 file written and sealed.
  pipe      `dimctl extract … | cat > FILE.h5`: the same through stdout.
Prints images/s of each and command/bare. Best of --repeats, alternating.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dimctl.data.registry import load_dataset
from dimctl.data.transforms import normalise
from dimctl.io.artifacts import save_encoder
from dimctl.models.encoders import EncoderConfig, build_encoder


def bare_forward(encoder, images: torch.Tensor, batch_size: int) -> tuple[float, int]:
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch_size):
            encoder(normalise(images[i:i + batch_size]))
    return time.perf_counter() - start, images.shape[0]


def command(args, encoder_path: Path, out: Path, pipe: bool) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "dimctl", "extract", str(encoder_path), "--dataset", args.dataset,
           "--layers", "conv,fc,y", "--batch-size", str(args.batch_size)]
    env = {**os.environ, "DIMCTL_NO_PROGRESS": "1"}
    start = time.perf_counter()
    if pipe:
        with open(out, "wb") as f:
            subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.PIPE, env=env)
    else:
        subprocess.run(cmd + ["-o", str(out)], check=True, capture_output=True, env=env)
    return time.perf_counter() - start, args.count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data = load_dataset(args.dataset)
    images = torch.cat([data.train_images, data.test_images])
    args.count = images.shape[0]
    config = EncoderConfig(in_channels=data.channels, image_size=data.image_size)
    torch.manual_seed(0)
    encoder = build_encoder(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        encoder_path = Path(tmp) / "encoder.safetensors"
        save_encoder(encoder_path, encoder, config, data.describe(), step=0, training={})
        runs = {"bare": lambda: bare_forward(encoder, images, args.batch_size),
                "command": lambda: command(args, encoder_path, Path(tmp) / "f.h5", False),
                "pipe": lambda: command(args, encoder_path, Path(tmp) / "p.h5", True)}
        best, counts = {k: float("inf") for k in runs}, {}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                seconds, count = fn()
                best[name], counts[name] = min(best[name], seconds), count
    print(f"settings: dataset={args.dataset} ({args.count} images, train+test) encoder=dcgan layers=conv,fc,y "
          f"batch={args.batch_size} threads={torch.get_num_threads()} torch={torch.__version__} best of {args.repeats}")
    for name in runs:
        rate = counts[name] / best[name]
        print(f"{name:8s} {rate:9.1f} images/s  {best[name]:6.2f} s  {rate / (counts['bare'] / best['bare']):.3f} of bare")


if __name__ == "__main__":
    main()
