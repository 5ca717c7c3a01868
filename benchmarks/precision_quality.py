"""Does bf16 training cost accuracy? DIM(L) trained the same steps in fp32 and bf16, probed alike.

    python benchmarks/precision_quality.py                                  # Fashion-MNIST, the settings below
    python benchmarks/precision_quality.py --dataset digits --epochs 2 --mi-units 64 --out runs/pq-digits

For each estimator (infonce, jsd) × seed (0, 1) × precision (fp32, bf16): `dimctl pretrain
--preset dim-l` (full-width DCGAN encoder, fc 1024, --mi-units wide heads, --epochs epochs,
batch 64), `dimctl extract --layer fc,y`, `dimctl probe --classifier svm,mlp --json`. Prints
test accuracy (%) per (estimator, layer, classifier): the mean over seeds of each precision and
bf16 − fp32, and the largest |difference|; `--precision auto` means bf16 only while that stays
within 0.5 points. Each run's wall time is printed too. Steps whose output exists are skipped, so
an interrupted run continues where it stopped (delete --out to start over). Real Fashion-MNIST is
Debian's dataset-fashion-mnist package.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import run_dimctl  # noqa: E402

ESTIMATORS = ("infonce", "jsd")
SEEDS = (0, 1)
PRECISIONS = ("fp32", "bf16")


def one_run(args, out: Path, estimator: str, seed: int, precision: str) -> tuple[list[dict], float]:
    name = f"{estimator}-{precision}-seed{seed}"
    run_dir, features, results = out / name, out / f"{name}.h5", out / f"{name}.jsonl"
    seconds = 0.0
    if not (run_dir / "encoder.safetensors").exists():
        start = time.perf_counter()
        run_dimctl("pretrain", "--dataset", args.dataset, "--preset", "dim-l", "--estimator", estimator,
               "--mi-units", str(args.mi_units), "--epochs", str(args.epochs), "--seed", str(seed),
               "--precision", precision, "--checkpoint-every", "0", "--out", str(run_dir), "--force")
        seconds = time.perf_counter() - start
        (run_dir / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
    seconds = float((run_dir / "wall_seconds.txt").read_text()) if (run_dir / "wall_seconds.txt").exists() else seconds
    if not features.exists():
        run_dimctl("extract", str(run_dir / "encoder.safetensors"), "--dataset", args.dataset, "--layer", "fc,y",
               "-o", str(features))
    if not results.exists() and not args.train_only:
        # --quick: the linear SVM on y only (LinearSVC on 60,000 × 1,024 fc features takes minutes per run).
        probes = [("y", "svm"), ("fc,y", "mlp")] if args.quick else [("fc,y", "svm,mlp")]
        with open(results.with_suffix(".tmp"), "w") as f:
            for layers, classifiers in probes:
                run_dimctl("probe", str(features), "--layer", layers, "--classifier", classifiers, "--mlp-epochs",
                       str(args.mlp_epochs), "--seed", str(seed), "--json", stdout=f)
        results.with_suffix(".tmp").rename(results)
    if not results.exists():
        return [], seconds
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()], seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--mi-units", type=int, default=256)
    parser.add_argument("--mlp-epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/precision-quality"))
    parser.add_argument("--train-only", action="store_true", help="Pretrain and extract only; probe on a later call.")
    parser.add_argument("--quick", action="store_true", help="svm on y only (mlp on fc and y), for a machine where "
                                                             "LinearSVC on fc takes too long.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    accuracy: dict[tuple, list[float]] = {}
    for estimator in ESTIMATORS:
        for seed in SEEDS:
            for precision in PRECISIONS:
                lines, seconds = one_run(args, args.out, estimator, seed, precision)
                print(f"{estimator:8s} seed {seed} {precision}: pretrain {seconds:7.1f} s  "
                      + "  ".join(f"{r['layer']}/{r['classifier']} {100 * r['accuracy']:.2f}" for r in lines), flush=True)
                for r in lines:
                    accuracy.setdefault((estimator, r["layer"], r["classifier"], precision), []).append(100 * r["accuracy"])
    if args.train_only:
        return

    print(f"\n{args.dataset}, DIM(L), {args.epochs} epoch(s), mi-units {args.mi_units}, seeds {SEEDS}, "
          f"mlp {args.mlp_epochs} epochs — test accuracy %, mean over seeds")
    print(f"{'estimator':9s} {'layer':5s} {'probe':5s} {'fp32':>7s} {'bf16':>7s} {'bf16−fp32':>9s}")
    worst = 0.0
    for estimator in ESTIMATORS:
        for layer in ("fc", "y"):
            for classifier in ("svm", "mlp"):
                if (estimator, layer, classifier, "fp32") not in accuracy:
                    continue  # --quick leaves the svm on fc out
                fp32 = statistics.mean(accuracy[estimator, layer, classifier, "fp32"])
                bf16 = statistics.mean(accuracy[estimator, layer, classifier, "bf16"])
                worst = max(worst, abs(bf16 - fp32))
                print(f"{estimator:9s} {layer:5s} {classifier:5s} {fp32:7.2f} {bf16:7.2f} {bf16 - fp32:+9.2f}")
    print(f"largest |bf16 − fp32|: {worst:.2f} points ({'within' if worst <= 0.5 else 'outside'} 0.5)")


if __name__ == "__main__":
    main()
