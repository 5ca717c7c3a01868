"""Does `--compile` pay off on this machine? The training loop eager against torch.compile'd, in one run.

    python benchmarks/compile_throughput.py                          # digits, batch 64, --mi-units 256,2048
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 python benchmarks/compile_throughput.py

For each --mi-units: dimctl's loop (DIM(L), JSD, prior on) run in-process for --epochs, eager and
with --compile. Prints the wall time of the whole run (compilation included), the steady-state
images/s (median of metrics.jsonl's windows after the first --warmup-steps, so compilation is left
out), compiled/eager of each, and the break-even: the steps after which the compiled run has
caught up (its warm-up, the wall time beyond what its steady rate explains, over the time a step
saves), or "never" where it is not faster.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dimctl.data.registry import load_dataset
from dimctl.train.config import PretrainConfig
from dimctl.train.pretrain import pretrain


def run(config: PretrainConfig, data, run_dir: Path, warmup: int) -> tuple[float, float, int]:
    """(wall seconds, steady images/s, steps)."""
    start = time.perf_counter()
    result = pretrain(config, data, run_dir)
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steady = [r["images_per_s"] for r in rows if r["step"] - config.run.log_every >= warmup]
    return seconds, statistics.median(steady), result.steps


def break_even(eager_s: float, eager_rate: float, compiled_s: float, compiled_rate: float, images: int,
               batch: int) -> str:
    """Steps until compiling has paid for its warm-up, from one run of each."""
    saved_per_step = batch / eager_rate - batch / compiled_rate
    warm_up = compiled_s - eager_s + images * (1 / eager_rate - 1 / compiled_rate)  # beyond the steady rate
    return f"{warm_up / saved_per_step:.0f}" if saved_per_step > 0 else "never"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mi-units", default="256,2048")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, default=10)
    args = parser.parse_args()
    data = load_dataset("digits")
    print(f"settings: digits, DIM(L) JSD, prior on, batch {args.batch_size}, {args.epochs} epochs, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'units':>5} {'eager s':>8} {'compiled s':>10} {'eager img/s':>11} {'compiled img/s':>14} {'steady ratio':>12} "
          f"{'break-even steps':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for units in [int(u) for u in args.mi_units.split(",")]:
            results = {}
            for compiled in (False, True):
                config = PretrainConfig.of(dataset="digits", mi_units=units, epochs=args.epochs, batch_size=args.batch_size,
                                        checkpoint_every=0, log_every=5, cpu=True, compile=compiled)
                results[compiled] = run(config, data, Path(tmp) / f"{units}-{compiled}", args.warmup_steps)
            (es, er, steps), (cs, cr, _) = results[False], results[True]
            even = break_even(es, er, cs, cr, steps * args.batch_size, args.batch_size)
            print(f"{units:5d} {es:8.1f} {cs:10.1f} {er:11.1f} {cr:14.1f} {cr / er:12.3f} {even:>16}", flush=True)


if __name__ == "__main__":
    main()
