"""The one short check a session with a lent GPU runs: DIM(L) speed at the paper's width, and the
projected wall time of the paper's 1000-epoch CIFAR-10 run.

    bash benchmarks/gpu_check.sh            # or: PYTHONPATH=. python3 benchmarks/gpu_check.py

DIM(L), infoNCE, --mi-units 2048, prior on, on CIFAR-shaped images (3×32×32, random uint8: speed
does not depend on content, and the machine has no dataset). For batch 64 and 256, fp32 and bf16,
eager and compiled, it trains through dimctl's own loop and reads images/s from its metrics over
the steps after the first --warmup (compilation and cuDNN autotuning excluded). It also times the
bare model step (fp32, eager, channels-last) for the loop/bare ratio (target ≥ 0.85 on a GPU). One table on stdout.

    PYTHONPATH=. python3 benchmarks/gpu_check.py --smoke   # the same path at batch 8, eager, on any device

`--csv FILE` appends the rows (device, torch, commit, date) to FILE, e.g. results/gpu_check.csv.

`--smoke` checks the script itself where there is no GPU (its test runs it on the CPU), so a lent
GPU's few minutes are not spent finding a bug in it; its rates and projections mean nothing.
"""

import argparse
import csv
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import append_rows, between_markers, running_commit  # noqa: E402
from pretrain_throughput import bare_loop  # noqa: E402

from dimctl.data.dataset import ImageDataset
from dimctl.train.config import PretrainConfig
from dimctl.train.pretrain import pretrain

CIFAR_TRAIN = 50_000
PAPER_EPOCHS = 1000
FIELDS = ["device", "batch_size", "precision", "compiled", "deterministic", "images_per_s", "hours_1000_cifar_epochs",
          "run_s", "bare_img_s", "loop_over_bare", "images", "warmup_steps", "torch", "commit", "date"]


ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "devices.md"
BEGIN, END = "<!-- gpu: made by benchmarks/gpu_check.py --render -->", "<!-- end of gpu -->"


def render(results: Path = ROOT / "results", doc: Path = DOC) -> str:
    """``doc`` with the GPU tables between its markers made anew from ``results``/gpu_check.csv (speed)
    and gpu_resume.csv (benchmarks/gpu_resume_check.py: bit-identity after SIGKILL and resume)."""
    speed = list(csv.DictReader(open(results / "gpu_check.csv")))
    resume = list(csv.DictReader(open(results / "gpu_resume.csv")))
    lines = [BEGIN, "", "Images/s of dimctl's loop (DIM(L) infoNCE, 2048-wide heads, prior, 3×32×32, channels-last; "
             "the steps after the first 20 of one 20,480-image epoch) and the projected time of one 1000-epoch "
             "CIFAR-10 run; one row per measurement, in the order run:", "",
             "| device | torch | commit | date | batch | precision | compiled | deterministic | images/s | "
             "1000 epochs | loop ÷ bare |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in speed:
        ratio = f"{float(r['loop_over_bare']):.2f}" if r["loop_over_bare"] else ""
        lines.append(f"| {r['device']} | {r['torch']} | {r['commit']} | {r['date']} | {r['batch_size']} | "
                     f"{r['precision']} | {r['compiled']} | {r['deterministic']} | {float(r['images_per_s']):.0f} | "
                     f"{float(r['hours_1000_cifar_epochs']):.2f} h | {ratio} |")
    lines += ["", "Two uninterrupted `dimctl pretrain` runs of one seed, and a third killed by SIGKILL after a "
              "random checkpoint and resumed (digits, 88 steps, 2048-wide heads): are the encoders' weights "
              "bit-identical?", "",
              "| device | torch | commit | precision | flags | killed after step | two runs identical | "
              "largest difference | resumed identical | largest difference |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in resume:
        lines.append(f"| {r['device']} | {r['torch']} | {r['commit']} | {r['precision']} | "
                     f"{r['pretrain_args'] or '(none)'} | {r['killed_after_step']} | {r['repeat_identical']} | "
                     f"{r['repeat_max_diff']} | {r['resume_identical']} | {r['resume_max_diff']} |")
    lines += ["", END]
    return between_markers(doc.read_text(), BEGIN, END, lines)


def fake_cifar(n: int) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return ImageDataset("cifar-shaped", images, labels, images[:512], labels[:512], [str(i) for i in range(10)])


def loop_rate(config: PretrainConfig, data: ImageDataset, run_dir: Path, warmup: int) -> float:
    pretrain(config, data, run_dir)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = [m for m in lines if m["step"] > warmup] or lines[-1:]
    # Each line's images_per_s covers the log_every steps before it.
    return sum(m["images_per_s"] for m in timed) / len(timed)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_480, help="Training images per measurement (one epoch).")
    parser.add_argument("--warmup", type=int, default=20, help="Steps left out of the rate.")
    parser.add_argument("--smoke", action="store_true",
                        help="Check this script on any device, the CPU included: batch 8, eager only. "
                             "Its rates mean nothing.")
    parser.add_argument("--batch-sizes", default="64,256", help="comma-separated batch sizes")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated precisions")
    parser.add_argument("--eager-only", action="store_true", help="leave out the compiled runs")
    parser.add_argument("--deterministic", action="store_true",
                        help="also time each setting with dimctl pretrain --deterministic")
    parser.add_argument("--csv", type=Path, help="append the rows to this CSV (results/gpu_check.csv)")
    parser.add_argument("--render", action="store_true",
                        help="only remake docs/devices.md's GPU tables from results/gpu_check.csv and gpu_resume.csv")
    parser.add_argument("--commit", help="the commit the rows name (default: git in the running checkout; a "
                                         "copy of the tree without .git must be told)")
    args = parser.parse_args(argv)
    if args.render:
        DOC.write_text(render())
        return
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        raise SystemExit("gpu_check: no CUDA device here (--smoke checks the script on the CPU)")
    batches = (8,) if args.smoke else tuple(int(b) for b in args.batch_sizes.split(","))
    compile_modes = (False,) if args.smoke or args.eager_only else (False, True)
    deterministic_modes = (False, True) if args.deterministic else (False,)
    data = fake_cifar(args.images)
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"device: {device_name}{' (smoke)' if args.smoke else ''} · torch {torch.__version__} · "
          f"DIM(L) infoNCE mi-units 2048, "
          f"prior on, 3×32×32, {args.images} images per run, first {args.warmup} steps excluded")
    print(f"{'batch':>5} {'precision':>9} {'compiled':>8} {'images/s':>9} {'1000 CIFAR-10 epochs':>21}")
    eager_fp32, rows = {}, []
    common = {"device": device_name + (" (smoke)" if args.smoke else ""), "images": args.images,
              "warmup_steps": args.warmup, "torch": torch.__version__,
              "commit": args.commit or running_commit(), "date": datetime.date.today().isoformat()}
    with tempfile.TemporaryDirectory() as tmp:
        for batch in batches:
            for precision in args.precisions.split(","):
                for compiled, deterministic in [(c, d) for c in compile_modes for d in deterministic_modes]:
                    config = PretrainConfig.of(estimator="infonce", mi_units=2048, batch_size=batch, epochs=1,
                                            precision=precision, compile=compiled, checkpoint_every=0, log_every=5,
                                            channels_last=True, deterministic=deterministic)
                    start = time.perf_counter()
                    name = f"{batch}-{precision}-{int(compiled)}-{int(deterministic)}"
                    try:
                        rate = loop_rate(config, data, Path(tmp) / name, args.warmup)
                    except Exception as e:  # one failing setting must not hide the others
                        print(f"{batch:5d} {precision:>9} {str(compiled):>8}{' det' * deterministic}  failed: "
                              f"{type(e).__name__}: {e}")
                        continue
                    hours = CIFAR_TRAIN * PAPER_EPOCHS / rate / 3600
                    print(f"{batch:5d} {precision:>9} {str(compiled):>8} {rate:9.0f} {hours:17.2f} h "
                          f"(run {time.perf_counter() - start:.0f} s){' deterministic' * deterministic}", flush=True)
                    rows.append({**common, "batch_size": batch, "precision": precision, "compiled": compiled,
                                 "deterministic": deterministic, "images_per_s": round(rate, 1),
                                 "hours_1000_cifar_epochs": round(hours, 3),
                                 "run_s": round(time.perf_counter() - start, 1)})
                    if precision == "fp32" and not compiled and not deterministic:
                        eager_fp32[batch] = rate
        for batch, rate in eager_fp32.items():
            config = PretrainConfig.of(estimator="infonce", mi_units=2048, batch_size=batch, epochs=1, channels_last=True)
            images = data.train_images.to("cuda" if cuda else "cpu")
            bare_loop(config, images)  # warm-up: cuDNN autotuning, allocator
            seconds, count = bare_loop(config, images)
            print(f"loop/bare, batch {batch}, fp32 eager: {rate:.0f} / {count / seconds:.0f} = {rate * seconds / count:.3f}")
            for row in rows:
                if (row["batch_size"], row["precision"], row["compiled"]) == (batch, "fp32", False) \
                        and not row["deterministic"]:
                    row.update(bare_img_s=round(count / seconds, 1), loop_over_bare=round(rate * seconds / count, 3))
    if args.csv:
        append_rows(args.csv, FIELDS, rows)


if __name__ == "__main__":
    main()
