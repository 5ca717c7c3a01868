"""A torchvision backbone against the paper's DCGAN encoder at equal wall-clock time on this machine.

    python benchmarks/backbone_equal_time.py --minutes 8 --out runs/equal-time --csv results/backbone_equal_time/accuracy.csv

DIM(L) (infoNCE, the paper's 2048-wide heads, batch 64, `--precision auto`) on real Fashion-MNIST
with each encoder of --archs. Each encoder's training speed is measured first (a short run of
--calibration-steps; images/s over its later steps), which sets its step budget: the steps it
takes in --minutes. Then, for every seed, `dimctl pretrain --max-steps` that budget (its wall
time is recorded, start-up included), and the same encoder untrained (`--epochs 0`, seed 0) as the
floor; after all training, `dimctl extract --layer conv,fc,y` and `dimctl probe --classifier
svm,mlp` on the 60,000 training and 10,000 test images. A step whose output exists is skipped, so
an interrupted study continues where it stopped. Nothing else may compute while it calibrates and
trains (it prints "training done"): the budgets are wall-clock times.
"""

import argparse
import csv
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import append_rows, between_markers, machine, run_dimctl, running_commit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS, DOC = ROOT / "results" / "backbone_equal_time" / "accuracy.csv", ROOT / "docs" / "backbones.md"
BEGIN, END = "<!-- equal time: made by benchmarks/backbone_equal_time.py --render -->", "<!-- end of equal time -->"
TAPS = [(layer, classifier) for layer in ("conv", "fc", "y") for classifier in ("svm", "mlp")]
ARCHS = {"dcgan": ["--arch", "dcgan"], "resnet18-cifar": ["--arch", "torchvision:resnet18", "--stem", "cifar"]}
FIELDS = ["arch", "seed", "trained", "steps", "images_seen", "epochs_seen", "train_wall_s", "calibrated_img_s",
          "layer", "classifier", "accuracy", "minutes", "machine", "cpu_flags", "torch", "commit", "date"]


def pretrain_args(args, arch: str, seed: int) -> list[str]:
    return ["pretrain", "--dataset", args.dataset, *ARCHS[arch], "--preset", "dim-l", "--estimator", "infonce",
            "--mi-units", "2048", "--batch-size", "64", "--seed", str(seed), "--checkpoint-every", "0",
            "--log-every", "10", *args.pretrain_args.split()]


def render(results: Path = RESULTS, doc: Path = DOC) -> str:
    """``doc`` with the table between its markers made anew from ``results``: per encoder, the
    trained runs' mean test accuracy (± half their range over seeds) and the untrained floor."""
    rows = list(csv.DictReader(open(results)))
    first = rows[0]
    lines = [BEGIN, "", f"{first['machine']} (flags: {first['cpu_flags']}), torch {first['torch']}, commit "
             f"{first['commit']}, {first['date']}; each encoder trained {float(first['minutes']):g} minutes of wall "
             "clock (its steps set by its measured training speed), seeds "
             f"{', '.join(sorted({r['seed'] for r in rows if r['trained'] == 'True'}))}; test accuracy %:", "",
             "| encoder | trained | training img/s | steps | epochs | wall s | "
             + " | ".join(f"{layer} {classifier}" for layer, classifier in TAPS) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(TAPS)]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        for trained in ("True", "False"):
            here = [r for r in rows if r["arch"] == arch and r["trained"] == trained]
            walls = sorted({(r["seed"], float(r["train_wall_s"])) for r in here})
            cells = []
            for layer, classifier in TAPS:
                values = [float(r["accuracy"]) for r in here if (r["layer"], r["classifier"]) == (layer, classifier)]
                spread = f" ± {(max(values) - min(values)) / 2:.2f}" if len(values) > 1 else ""
                cells.append(f"{sum(values) / len(values):.2f}{spread}")
            lines.append(f"| {arch} | {'yes' if trained == 'True' else 'no (seed 0)'} | {here[0]['calibrated_img_s']} | "
                         f"{here[0]['steps']} | {here[0]['epochs_seen']} | "
                         f"{', '.join(f'{w:.0f}' for _, w in walls) if trained == 'True' else ''} | "
                         + " | ".join(cells) + " |")
    lines += ["", END]
    return between_markers(doc.read_text(), BEGIN, END, lines)


def calibrate(args, arch: str, out: Path) -> float:
    """Images/s of ``arch``'s training loop: the median of the logged rates (10 steps each) after the
    first fifth of a short run, the last left out (its interval ends in the publishing). The median:
    on a 2-core VM single intervals moved between 270 and 440 images/s in one DCGAN run."""
    run = out / f"{arch}-calibration"
    if not (run / "encoder.safetensors").exists():
        run_dimctl(*pretrain_args(args, arch, 0), "--epochs", "1", "--max-steps", str(args.calibration_steps),
               "--out", str(run), "--force")
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    later = [m["images_per_s"] for m in lines[:-1] if m["step"] > args.calibration_steps // 5]
    return statistics.median(later)


def steps_per_epoch(out: Path, arch: str) -> int:
    """The dataset's steps per epoch at batch 64, as the calibration run recorded it."""
    return json.loads((out / f"{arch}-calibration" / "config.json").read_text())["steps_per_epoch"]


def run_name(arch: str, seed: int, steps: int) -> str:
    return f"{arch}-seed{seed}" if steps else f"{arch}-untrained"


def train(args, out: Path, arch: str, seed: int, steps: int) -> float:
    """Seconds of `dimctl pretrain` for ``steps`` steps (0: the untrained encoder), start-up included."""
    run = out / run_name(arch, seed, steps)
    if not (run / "encoder.safetensors").exists():
        # As many epochs as the steps reach, the last one cut short by --max-steps.
        budget = ["--epochs", str(-(-steps // steps_per_epoch(out, arch))), "--max-steps", str(steps)] if steps \
            else ["--epochs", "0"]
        start = time.perf_counter()
        run_dimctl(*pretrain_args(args, arch, seed), *budget, "--out", str(run), "--force")
        (run / "wall_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return float((run / "wall_seconds.txt").read_text())


def evaluate(args, out: Path, arch: str, seed: int, steps: int) -> list[dict]:
    """svm and mlp test accuracy on conv, fc and Y (dimctl probe's JSON lines)."""
    name = run_name(arch, seed, steps)
    run, features, results = out / name, out / f"{name}.h5", out / f"{name}.jsonl"
    if not features.exists():
        run_dimctl("extract", str(run / "encoder.safetensors"), "--dataset", args.dataset, "--layer", "conv,fc,y",
               "-o", str(features))
    if not results.exists():
        with open(results.with_suffix(".tmp"), "w") as f:
            run_dimctl("probe", str(features), "--layer", "conv,fc,y", "--classifier", "svm,mlp", "--mlp-epochs",
                   str(args.mlp_epochs), "--seed", str(seed), "--json", stdout=f)
        results.with_suffix(".tmp").rename(results)
    return [json.loads(line) for line in results.read_text().splitlines()]


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="each training run's wall-clock budget")
    parser.add_argument("--archs", default=",".join(ARCHS), help=f"comma-separated, of: {', '.join(ARCHS)}")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--calibration-steps", type=int, default=200)
    parser.add_argument("--mlp-epochs", type=int, default=10)
    parser.add_argument("--pretrain-args", default="", help="more pretrain flags (tests: a tiny run)")
    parser.add_argument("--out", type=Path, default=Path("runs/equal-time"))
    parser.add_argument("--csv", type=Path, help="append the rows to this CSV")
    parser.add_argument("--render", action="store_true", help=f"only remake docs/backbones.md's table from {RESULTS.name}")
    args = parser.parse_args(argv)
    if args.render:
        DOC.write_text(render())
        return
    args.out.mkdir(parents=True, exist_ok=True)
    where, flags = machine()
    import torch

    common = {"minutes": args.minutes, "machine": where, "cpu_flags": flags, "torch": torch.__version__,
              "commit": running_commit(), "date": datetime.date.today().isoformat()}
    # Every timed part first (calibration, then training), on a quiet machine; then the untimed
    # extraction and probes.
    budgets = {}
    for arch in args.archs.split(","):
        rate = calibrate(args, arch, args.out)
        steps = max(1, round(args.minutes * 60 * rate / 64))
        budgets[arch] = rate, steps
        print(f"{arch}: {rate:.1f} images/s in training → {steps} steps in {args.minutes:g} min "
              f"({steps / steps_per_epoch(args.out, arch):.2f} epochs)", flush=True)
    runs = [(arch, seed, budget) for arch, (_, steps) in budgets.items()
            for seed, budget in [(int(s), steps) for s in args.seeds.split(",")] + [(0, 0)]]
    seconds = {run: train(args, args.out, *run) for run in runs}
    print("training done: " + ", ".join(f"{run_name(*run)} {s:.0f} s" for run, s in seconds.items()), flush=True)
    rows = []
    for arch, seed, budget in runs:
        results = evaluate(args, args.out, arch, seed, budget)
        for r in results:
            rows.append({**common, "arch": arch, "seed": seed, "trained": bool(budget), "steps": budget,
                         "images_seen": budget * 64, "epochs_seen": round(budget / steps_per_epoch(args.out, arch), 3),
                         "train_wall_s": seconds[arch, seed, budget], "calibrated_img_s": round(budgets[arch][0], 1),
                         "layer": r["layer"], "classifier": r["classifier"], "accuracy": round(100 * r["accuracy"], 2)})
        print(f"  {run_name(arch, seed, budget)}: "
              + ", ".join(f"{r['layer']} {r['classifier']} {100 * r['accuracy']:.2f}" for r in results), flush=True)
    if args.csv:
        append_rows(args.csv, FIELDS, rows)
    with open(args.out / "rows.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
