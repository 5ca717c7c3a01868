"""Does a run killed with SIGKILL and resumed end bit-identical to an uninterrupted one on a GPU?

The test suite proves it on the CPU (tests/train/test_reliability.py); on CUDA the RNG states and
the kernels differ (cuDNN may pick non-deterministic algorithms), so a lent GPU checks it:

    PYTHONPATH=. python3 benchmarks/gpu_resume_check.py --csv results/gpu_resume.csv --commit C

For each precision it trains `dimctl pretrain` on digits three times: twice uninterrupted (is one
run repeatable at all?) and once killed after a random checkpoint and then resumed. It prints, per
precision, whether the encoders' weights are bit-identical and the largest difference.

    PYTHONPATH=. python3 benchmarks/gpu_resume_check.py --smoke   # the same path on the CPU (--cpu)
"""

import argparse
import datetime
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from machine import append_rows, running_commit  # noqa: E402

FIELDS = ["device", "precision", "pretrain_args", "mi_units", "steps", "killed_after_step", "repeat_identical", "repeat_max_diff",
          "resume_identical", "resume_max_diff", "torch", "commit", "date"]
EVERY = 3  # digits: 22 steps an epoch at batch 64


def pretrain(out: Path, flags: list[str], *extra: str) -> subprocess.Popen:
    """`dimctl pretrain` on digits with the run's ``flags`` (settings, precision, device), into ``out``."""
    cmd = [sys.executable, "-m", "dimctl", "pretrain", "--dataset", "digits", "--checkpoint-every", str(EVERY),
           "--log-every", "1", "--out", str(out), *flags, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "DIMCTL_NO_PROGRESS": "1"})


def finished(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"gpu_resume_check: dimctl pretrain exited {proc.returncode}: {err.decode().strip()}")


def difference(a: Path, b: Path) -> tuple[bool, float]:
    x, y = load_file(str(a / "encoder.safetensors")), load_file(str(b / "encoder.safetensors"))
    assert x.keys() == y.keys()
    same = all(torch.equal(x[k], y[k]) for k in x)
    diff = max((x[k].double() - y[k].double()).abs().max().item() for k in x if x[k].is_floating_point())
    return same, diff


def steps_checkpointed(run: Path) -> list[int]:
    return [int(p.name.split("_")[1]) for p in run.glob("checkpoints/step_*")] if run.is_dir() else []


def killed_and_resumed(run: Path, flags: list[str], steps: int, rng: random.Random) -> int:
    """Kill a run of ``steps`` by SIGKILL once it has checkpointed at or past a random step in its
    first half, then resume it."""
    after = EVERY * rng.randint(2, steps // EVERY // 2)
    proc = pretrain(run, flags)
    while proc.poll() is None and not any(s >= after for s in steps_checkpointed(run)):
        time.sleep(0.01)
    if proc.poll() is not None:
        raise SystemExit(f"gpu_resume_check: the run ended before its checkpoint at step {after}")
    proc.kill()
    proc.wait()
    killed_at = max(steps_checkpointed(run))
    finished(pretrain(run, flags, "--resume"))
    return killed_at


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated --precision values")
    parser.add_argument("--mi-units", type=int, default=2048, help="the MI heads' width (2048: the paper's)")
    parser.add_argument("--smoke", action="store_true", help="check the script on the CPU (--cpu, a narrow encoder, 32 units); "
                                                                  "its answers say nothing of a GPU")
    parser.add_argument("--pretrain-args", default="", help="more dimctl pretrain flags, e.g. --deterministic")
    parser.add_argument("--csv", type=Path, help="append the rows to this CSV")
    parser.add_argument("--commit", help="the commit the rows name (default: git in the running checkout)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        raise SystemExit("gpu_resume_check: no CUDA device here (--smoke checks the script on the CPU)")
    units = 32 if args.smoke else args.mi_units
    epochs = 2 if args.smoke else 4  # the smoke test checks the path, not the steps
    device = torch.cuda.get_device_name() if cuda else "cpu (smoke)"
    rng, rows = random.Random(), []
    print(f"device: {device} · torch {torch.__version__} · digits, {epochs} epochs, mi-units {units}, "
          f"checkpoint every {EVERY} steps {args.pretrain_args}")
    with TemporaryDirectory() as tmp:
        for precision in args.precisions.split(","):
            flags = ["--mi-units", str(units), "--epochs", str(epochs), "--precision", precision,
                     *(["--cpu", "--width", "0.125", "--fc-dim", "128"] if not cuda else []), *args.pretrain_args.split()]
            runs = [Path(tmp) / f"{precision}-{name}" for name in ("a", "b", "killed")]
            for run in runs[:2]:
                finished(pretrain(run, flags))
            killed_at = killed_and_resumed(runs[2], flags, epochs * 22, rng)
            repeat, resume = difference(runs[0], runs[1]), difference(runs[0], runs[2])
            print(f"{precision}: two uninterrupted runs identical: {repeat[0]} (max diff {repeat[1]:.3g}); "
                  f"killed after step {killed_at} and resumed, identical: {resume[0]} (max diff {resume[1]:.3g})",
                  flush=True)
            rows.append({"device": device, "precision": precision, "pretrain_args": args.pretrain_args, "mi_units": units, "steps": epochs * 22,
                         "killed_after_step": killed_at, "repeat_identical": repeat[0],
                         "repeat_max_diff": f"{repeat[1]:.3g}", "resume_identical": resume[0],
                         "resume_max_diff": f"{resume[1]:.3g}", "torch": torch.__version__,
                         "commit": args.commit or running_commit(), "date": datetime.date.today().isoformat()})
    if args.csv:
        append_rows(args.csv, FIELDS, rows)


if __name__ == "__main__":
    main()
