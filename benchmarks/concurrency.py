"""dimctl beside other work: the thread policy (dimctl/threads.py) against torch's default, in one run.

    python benchmarks/concurrency.py                 # every case, writes results/concurrency.csv
    python benchmarks/concurrency.py --cases a,b     # a quicker look
    python benchmarks/concurrency.py --render        # docs/threads.md's table from results/concurrency.csv

Each case is timed twice, once per policy, on the same machine in the same run:
  before  the code before dimctl chose its threads, from --before-tree (torch's default: one
          thread per core whatever else runs); without it, DIMCTL_THREADS=<usable cores>
  after   dimctl's own choice (nothing set)

Cases (wall time of real `dimctl` processes):
  a  `dimctl mi` at its defaults (2,000 steps, batch 128) on 10,000 one-dimensional Gaussian pairs:
     alone, and beside a CPU-bound process holding one core (`python -c 'while True: pass'`);
     ratio = beside / alone; target at most 1.3
  b  two `dimctl probe --classifier svm,mlp` on 2,000 × 128 features, at once vs one after the
     other; ratio = at once / one after the other; target at most 1.1
  c  `make -f examples/Makefile quick` with -j2 vs -j1 (fresh output folders); ratio = -j2 / -j1;
     target below 1
  alone  pretrain (digits, 1 epoch, paper's 2048-wide heads), extract and probe (svm) at their
     defaults with nothing else running; ratio = after / before; target at most 1.05

Run it on a quiet machine: nothing else may compute while it measures.
"""

import argparse
import csv
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py, also when loaded by path
from machine import machine  # noqa: E402

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIMCTL = [sys.executable, "-m", "dimctl"]
RESULTS = ROOT / "results" / "concurrency.csv"
DOC = ROOT / "docs" / "threads.md"
TARGETS = {"a": ("≤ 1.3", 1.3), "b": ("≤ 1.1", 1.1), "c": ("< 1", 1.0), "alone": ("≤ 1.05", 1.05)}
FIELDS = ["case", "what", "policy", "seconds", "reference_seconds", "ratio", "target", "machine", "cpu_flags",
          "torch", "commit", "date"]


BEFORE_TREE: Path | None = None  # --before-tree: a checkout of dimctl before it chose its threads


def environment(policy: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DIMCTL_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                             "OPENBLAS_NUM_THREADS", "MAKEFLAGS", "MFLAGS")}
    env["DIMCTL_NO_PROGRESS"] = "1"
    if policy == "before" and BEFORE_TREE is not None:  # the old code itself, torch's default threads
        env["PYTHONPATH"] = str(BEFORE_TREE)
    elif policy == "before":
        from dimctl.threads import usable_cores

        env["DIMCTL_THREADS"] = str(usable_cores())
    return env


def timed(commands: list[list[str]], env: dict, cwd: Path) -> float:
    """Seconds until every command (started together) has finished; each must succeed."""
    start = time.perf_counter()
    processes = [subprocess.Popen(c, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for c in commands]
    for p, c in zip(processes, commands):
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(c)} failed ({p.returncode}): {err.decode()[-2000:]}")
    return time.perf_counter() - start


class Hog:
    """A process that holds one core for as long as it runs."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # past its start-up
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def make_inputs(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12_000, 1))
    y = 0.75 * x + np.sqrt(1 - 0.75 ** 2) * rng.normal(size=x.shape)
    pairs = folder / "pairs.npz"
    np.savez(pairs, train_x=x[:10_000].astype(np.float32), train_y=y[:10_000].astype(np.float32),
             test_x=x[10_000:].astype(np.float32), test_y=y[10_000:].astype(np.float32),
             train_labels=np.zeros(10_000, np.int64), test_labels=np.zeros(2_000, np.int64))
    centres = rng.normal(size=(10, 128))

    def split(n):
        labels = rng.integers(0, 10, n)
        return (0.3 * centres[labels] + rng.normal(size=(n, 128))).astype(np.float32), labels

    (tx, ty), (sx, sy) = split(2000), split(500)
    features = folder / "features.npz"
    np.savez(features, train_z=tx, train_labels=ty, test_z=sx, test_labels=sy)
    return pairs, features


def case_a(policy, folder, pairs, repeats):
    env = environment(policy)
    command = [*DIMCTL, "mi", str(pairs), "--layer", "x,y"]
    alone = statistics.median(timed([command], env, folder) for _ in range(repeats))
    with Hog():
        beside = statistics.median(timed([command], env, folder) for _ in range(repeats))
    return "mi alone vs beside a busy core", beside, alone


def case_b(policy, folder, features, repeats):
    env = environment(policy)
    command = [*DIMCTL, "probe", str(features), "--classifier", "svm,mlp"]
    sequential = statistics.median(timed([command], env, folder) + timed([command], env, folder) for _ in range(repeats))
    together = statistics.median(timed([command, command], env, folder) for _ in range(repeats))
    return "two probes at once vs one after the other", together, sequential


def case_c(policy, folder, repeats):
    env = environment(policy)
    times = {}
    for jobs in ("-j1", "-j2"):
        runs = []
        for k in range(repeats):
            out = folder / f"quick-{policy}{jobs}-{k}"
            runs.append(timed([["make", "-s", "-f", str(ROOT / "examples" / "Makefile"), jobs, "quick",
                                f"QUICK_OUT={out}", f"DIMCTL={sys.executable} -m dimctl"]], env, ROOT))
            shutil.rmtree(out, ignore_errors=True)
        times[jobs] = statistics.median(runs)
    return "make quick -j2 vs -j1", times["-j2"], times["-j1"]


def alone(folder, repeats):
    """pretrain, extract and probe at their defaults, after vs before, nothing else running."""
    rows = []
    steps = {
        "pretrain": lambda tag: [*DIMCTL, "pretrain", "--dataset", "digits", "--epochs", "1", "--checkpoint-every", "0",
                                 "--out", str(folder / f"run-{tag}"), "--force"],
        "extract": lambda tag: [*DIMCTL, "extract", str(folder / "run-before" / "encoder.safetensors"),
                                "-o", str(folder / f"f-{tag}.h5"), "--force"],
        "probe": lambda tag: [*DIMCTL, "probe", str(folder / "f-before.h5")],
    }
    for name, command in steps.items():
        seconds = {p: [] for p in ("before", "after")}
        for _ in range(repeats):
            for policy in ("before", "after"):  # interleaved: drift of the machine hits both alike
                seconds[policy].append(timed([command(policy)], environment(policy), folder))
        rows.append((f"{name} alone at its defaults", statistics.median(seconds["after"]),
                     statistics.median(seconds["before"])))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="a,b,c,alone", help="comma-separated: a, b, c, alone")
    parser.add_argument("--repeats", type=int, default=2, help="runs per timing (the median is kept)")
    parser.add_argument("--render", action="store_true", help="only write docs/threads.md's table from the CSV")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--before-tree", type=Path, help="a checkout of the commit before dimctl chose its threads "
                        "(git worktree add DIR COMMIT): 'before' runs that code instead of DIMCTL_THREADS=<cores>")
    args = parser.parse_args()
    global BEFORE_TREE
    BEFORE_TREE = args.before_tree.resolve() if args.before_tree else None
    if args.render:
        render(args.out)
        return
    import torch

    name, flags = machine()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if BEFORE_TREE is not None:
        commit += " (before: " + subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BEFORE_TREE,
                                                capture_output=True, text=True).stdout.strip() + ")"
    common = {"machine": name, "cpu_flags": flags, "torch": torch.__version__, "commit": commit,
              "date": datetime.date.today().isoformat()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pairs, features = make_inputs(folder)
        for case in args.cases.split(","):
            for policy in ("before", "after"):
                if case == "a":
                    what, seconds, reference = case_a(policy, folder, pairs, args.repeats)
                elif case == "b":
                    what, seconds, reference = case_b(policy, folder, features, args.repeats)
                elif case == "c":
                    what, seconds, reference = case_c(policy, folder, args.repeats)
                else:
                    break
                rows.append({"case": case, "what": what, "policy": policy, "seconds": round(seconds, 2),
                             "reference_seconds": round(reference, 2), "ratio": round(seconds / reference, 3),
                             "target": TARGETS[case][0], **common})
                print(f"{case} {policy:6s} {what}: {seconds:.1f} s vs {reference:.1f} s = {seconds / reference:.2f}",
                      flush=True)
            if case == "alone":
                for what, seconds, reference in alone(folder, args.repeats):
                    rows.append({"case": case, "what": what, "policy": "after vs before", "seconds": round(seconds, 2),
                                 "reference_seconds": round(reference, 2), "ratio": round(seconds / reference, 3),
                                 "target": TARGETS[case][0], **common})
                    print(f"alone {what}: {seconds:.1f} s vs {reference:.1f} s = {seconds / reference:.2f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    render(args.out)


BEGIN, END = "<!-- concurrency table: made by benchmarks/concurrency.py --render -->", "<!-- end of table -->"


def render(csv_path: Path) -> None:
    """The table between the markers in docs/threads.md, from the CSV: nothing typed by hand."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    first = rows[0]
    lines = [BEGIN, "",
             f"Measured on {first['machine']} ({first['cpu_flags'] or 'no listed vector flags'}), torch {first['torch']}, "
             f"commit {first['commit']}, {first['date']}. Seconds are medians of wall time; each ratio is within one run.",
             "", "| case | policy | seconds | reference seconds | ratio | target |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['policy']} | {r['seconds']} | {r['reference_seconds']} | {r['ratio']} | "
                     f"{r['target']} |")
    lines += ["", END]
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    DOC.write_text(text[:start] + "\n".join(lines) + text[end:])


if __name__ == "__main__":
    main()
