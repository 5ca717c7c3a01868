"""What a `dimctl` command costs before it does anything: wall time and peak RSS of start-up.

    python benchmarks/startup.py                                # median of 7 runs of each command
    python benchmarks/startup.py --repeats 2                    # a quick look
    python benchmarks/startup.py --importtime "probe --help"    # the import profile of another command

  python -c pass            the interpreter alone
  python -c "import torch"  the floor of every command that computes anything
  dimctl --version, dimctl --help, dimctl probe --help, dimctl pretrain --help
  dimctl inspect F.h5       data commands on a tiny feature file made here (40 + 20 rows of 8 numbers),
  dimctl probe F.h5         whose work is negligible: what they cost is start-up, reported also as the
                            excess over `python -c "import torch"` (probe's includes importing the
                            scikit-learn its default svm needs)
Each command runs as a child process (stdout to /dev/null, stdin empty), the rows alternating; its
peak RSS is the child's own (os.wait4's rusage: getrusage(RUSAGE_CHILDREN) of that one child). The
table gives the median of --repeats runs. Then `python -X importtime` of `dimctl --version` (or
--importtime ARGS): the 10 modules with the largest cumulative import time, in one run.
"""

import argparse
import io
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path


def dimctl_argv() -> list[str]:
    """The console script next to this interpreter (what a user runs), else `python -m dimctl`."""
    script = Path(sys.executable).parent / "dimctl"
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else [sys.executable, "-m", "dimctl"]


def make_features(path: Path) -> None:
    """A sealed dimctl feature file: two classes, 8-dim `y`, 40 train and 20 test rows."""
    import numpy as np

    from dimctl.io.features import create_feature_file, init_feature_file, seal_bytes

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with create_feature_file(buf) as f:
        init_feature_file(f, {"sha256": "0" * 64}, {"name": "digits", "channels": 1, "image_size": 32},
                          ["y"], {"train": 40, "test": 20}, {"y": (8,)})
        for split, n in (("train", 40), ("test", 20)):
            labels = np.arange(n) % 2
            f[split]["labels"][:] = labels
            f[split]["y"][:] = (rng.standard_normal((n, 8)) + 2 * labels[:, None]).astype(np.float32)
    path.write_bytes(seal_bytes(buf.getvalue()))


# Runs one command and prints "wall seconds, peak RSS KiB, exit code". A small process of its own
# (`python -S`, about 8 MiB) forks the command, because Linux counts a child's peak RSS from the
# memory of the process it was forked from: forked from this script, every row would start at its size.
LAUNCHER = """
import os, sys, time
err = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0); os.dup2(null, 1); os.dup2(err, 2)
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_once(argv: list[str], workdir: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one run of argv; a failure stops the benchmark."""
    import subprocess

    err = workdir / "stderr.txt"
    env = {**os.environ, "DIMCTL_NO_PROGRESS": "1"}
    result = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(err), *argv], capture_output=True, text=True,
                            env=env, check=True)
    wall, rss_kib, code = result.stdout.split()
    if int(code) != 0:
        sys.exit(f"{shlex.join(argv)} exited {code}:\n{err.read_text()}")
    return float(wall), int(rss_kib) / 1024  # ru_maxrss is in KiB on Linux


def importtime(argv: list[str], top: int) -> list[tuple[int, int, str]]:
    """(cumulative µs, self µs, module) of the `top` slowest imports of one `python -X importtime` run."""
    import subprocess

    result = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True,
                            env={**os.environ, "DIMCTL_NO_PROGRESS": "1"})
    rows = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:"):].split("|", 2)
        rows.append((int(cumulative), int(own), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="Runs of each command; the table shows the median.")
    parser.add_argument("--importtime", default="--version", metavar="ARGS",
                        help="dimctl arguments whose imports are profiled (default: --version).")
    parser.add_argument("--top", type=int, default=10, help="Modules listed in the import profile.")
    args = parser.parse_args()
    dimctl = dimctl_argv()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        features = workdir / "features.h5"
        make_features(features)
        rows = {
            "python -c pass": [sys.executable, "-c", "pass"],
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "dimctl --version": [*dimctl, "--version"],
            "dimctl --help": [*dimctl, "--help"],
            "dimctl probe --help": [*dimctl, "probe", "--help"],
            "dimctl pretrain --help": [*dimctl, "pretrain", "--help"],
            "dimctl inspect F.h5": [*dimctl, "inspect", str(features)],
            "dimctl probe F.h5": [*dimctl, "probe", str(features)],
        }
        data_rows = ("dimctl inspect F.h5", "dimctl probe F.h5")
        walls = {name: [] for name in rows}
        rss = {name: [] for name in rows}
        for _ in range(args.repeats):
            for name, argv in rows.items():
                wall, peak = run_once(argv, workdir)
                walls[name].append(wall)
                rss[name].append(peak)
        profile_argv = ["-c", "import sys; from dimctl.cli.main import run; sys.exit(run(sys.argv[1:]))",
                        *shlex.split(args.importtime)]
        profile = importtime(profile_argv, args.top)

    import platform

    print(f"settings: python {platform.python_version()}, {os.cpu_count()} CPUs, dimctl as {shlex.join(dimctl)}, "
          f"median of {args.repeats}")
    median = {name: statistics.median(values) for name, values in walls.items()}
    torch_wall = median['python -c "import torch"']
    header = ("command", "wall s", "peak RSS MiB", "over import torch s")
    body = [(name, f"{median[name]:.3f}", f"{statistics.median(rss[name]):.0f}",
             f"{median[name] - torch_wall:+.3f}" if name in data_rows else "") for name in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    for line in (header, tuple("-" * w for w in widths), *body):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    print(f"\n`python -X importtime` of `dimctl {args.importtime}`: the {args.top} largest cumulative import times (one run)")
    print(f"{'cumulative ms':>13}  {'self ms':>7}  module")
    for cumulative, own, name in profile:
        print(f"{cumulative / 1000:13.1f}  {own / 1000:7.1f}  {name}")


if __name__ == "__main__":
    main()
