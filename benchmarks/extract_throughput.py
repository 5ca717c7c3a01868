"""Throughput of `dimctl extract` against a bare forward pass of the same encoder, in one run.

    python benchmarks/extract_throughput.py                       # Fashion-MNIST, 70,000 images
    python benchmarks/extract_throughput.py --limit 10000         # its first 10,000 (train:test 6:1)
    python benchmarks/extract_throughput.py --dataset digits

  bare      the encoder's forward over the same uint8 images in batches (normalise included), no output;
  command   `dimctl extract ENCODER --layer conv,fc,y -o FILE.h5` as a user runs it: start-up,
            dataset loading, every split, the HDF5 file written, sealed and fsynced.
  pipe      `dimctl extract … | cat > FILE.h5`: the same through stdout and a real pipe.
Prints images/s of each and command/bare. Best of --repeats, alternating.
--variants adds: inline / inline-pipe (DIMCTL_INLINE_WRITER=1: the writing and hashing done between
forward passes instead of in the writer thread, to see what the overlap is worth on this machine),
omp1 (OMP_NUM_THREADS=1: one intra-op thread, the writer thread alone on the other core) and bf16
(--precision bf16; still against the fp32 bare forward).
--limit (idx datasets: fashion-mnist, mnist) writes the first images of each split to a temporary
data root that the command reads with --data-root.
"""

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
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


def command(args, encoder_path: Path, out: Path, pipe: bool, env: dict | None = None,
            flags: tuple[str, ...] = ()) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "dimctl", "extract", str(encoder_path), "--dataset", args.dataset,
           "--layer", "conv,fc,y", "--batch-size", str(args.batch_size), *args.data_args, *flags]
    env = {**os.environ, "DIMCTL_NO_PROGRESS": "1", **(env or {})}
    out.unlink(missing_ok=True)  # the last repeat's file: extract refuses to replace one without --force
    start = time.perf_counter()
    if pipe:  # dimctl extract … | cat > out
        with open(out, "wb") as f:
            producer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            cat = subprocess.Popen(["cat"], stdin=producer.stdout, stdout=f)
            producer.stdout.close()  # cat holds the read end now
            err = producer.stderr.read()
            if producer.wait() or cat.wait():
                raise RuntimeError(f"extract | cat failed: {err.decode()}")
    else:
        subprocess.run(cmd + ["-o", str(out)], check=True, capture_output=True, env=env)
    return time.perf_counter() - start, args.count


def write_idx_root(root: Path, train: torch.Tensor, test: torch.Tensor, train_labels, test_labels) -> None:
    """An uncompressed idx data root (what --data-root reads for fashion-mnist and mnist)."""
    root.mkdir(parents=True)
    for stem, array in (("train-images-idx3-ubyte", train[:, 0]), ("train-labels-idx1-ubyte", train_labels),
                        ("t10k-images-idx3-ubyte", test[:, 0]), ("t10k-labels-idx1-ubyte", test_labels)):
        a = np.ascontiguousarray(array.numpy().astype(np.uint8))
        header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        (root / stem).write_bytes(header + a.tobytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (fashion-mnist, mnist)")
    parser.add_argument("--variants", action="store_true", help="also inline, inline-pipe, omp1 and bf16")
    args = parser.parse_args()
    data = load_dataset(args.dataset)
    args.data_args = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.limit is not None:
            if args.dataset not in ("fashion-mnist", "mnist") or data.channels != 1:
                parser.error("--limit works with fashion-mnist and mnist")
            n = min(args.limit, data.train_images.shape[0] + data.test_images.shape[0])
            n_train = min(round(n * 6 / 7), data.train_images.shape[0])
            n_test = n - n_train
            write_idx_root(Path(tmp) / "data", data.train_images[:n_train], data.test_images[:n_test],
                           data.train_labels[:n_train], data.test_labels[:n_test])
            data = load_dataset(args.dataset, Path(tmp) / "data", image_size=data.image_size)
            args.data_args = ["--data-root", str(Path(tmp) / "data")]
        images = torch.cat([data.train_images, data.test_images])
        args.count = images.shape[0]
        config = EncoderConfig(in_channels=data.channels, image_size=data.image_size)
        torch.manual_seed(0)
        encoder = build_encoder(config).eval()
        encoder_path = Path(tmp) / "encoder.safetensors"
        save_encoder(encoder_path, encoder, config, data.describe(), step=0, training={})
        runs = {"bare": lambda: bare_forward(encoder, images, args.batch_size),
                "command": lambda: command(args, encoder_path, Path(tmp) / "f.h5", False),
                "pipe": lambda: command(args, encoder_path, Path(tmp) / "p.h5", True)}
        if args.variants:
            inline = {"DIMCTL_INLINE_WRITER": "1"}
            runs.update({"inline": lambda: command(args, encoder_path, Path(tmp) / "i.h5", False, inline),
                         "inline-pipe": lambda: command(args, encoder_path, Path(tmp) / "ip.h5", True, inline),
                         "omp1": lambda: command(args, encoder_path, Path(tmp) / "o.h5", False, {"OMP_NUM_THREADS": "1"}),
                         "bf16": lambda: command(args, encoder_path, Path(tmp) / "b.h5", False, None,
                                                 ("--precision", "bf16"))})
        best, counts = {k: float("inf") for k in runs}, {}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                seconds, count = fn()
                best[name], counts[name] = min(best[name], seconds), count
        same = ["p.h5", *(["i.h5", "ip.h5"] if args.variants else [])]  # omp1 may round differently
        if not all(filecmp.cmp(Path(tmp) / "f.h5", Path(tmp) / name, shallow=False) for name in same):
            raise RuntimeError("the file, the pipe and the variants gave different bytes")
        size = (Path(tmp) / "f.h5").stat().st_size
    print(f"settings: dataset={args.dataset} ({args.count} images, train+test) encoder=dcgan layers=conv,fc,y "
          f"batch={args.batch_size} threads={torch.get_num_threads()} torch={torch.__version__} best of {args.repeats}, "
          f"file {size / 1e9:.2f} GB")
    for name in runs:
        rate = counts[name] / best[name]
        print(f"{name:11s} {rate:9.1f} images/s  {best[name]:6.2f} s  {rate / (counts['bare'] / best['bare']):.3f} of bare")


if __name__ == "__main__":
    main()
