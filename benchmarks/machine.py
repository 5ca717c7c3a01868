"""What a benchmark's rows name as their machine: the CPU model with the cores this process may use,
and the vector flags that decide how fast fp32 and bf16 run (results/README.md)."""

import csv
import os
import platform
import subprocess
import sys
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")


def machine() -> tuple[str, str]:
    """("<CPU model>, <N> cores", "<the FLAGS this CPU has>")."""
    name, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = " ".join(f for f in line.split(":", 1)[1].split() if f in FLAGS)
    except OSError:
        pass
    return f"{name}, {len(os.sched_getaffinity(0))} cores", flags


def running_commit() -> str:
    """The short commit of the dimctl checkout that runs (PYTHONPATH at a worktree of an older commit
    measures that one)."""
    import dimctl

    tree = Path(dimctl.__file__).resolve().parents[1]
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()


def append_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Append ``rows`` to the CSV at ``path`` (its header first if the file is new): one file holds
    several settings' and commits' runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def between_markers(text: str, begin: str, end: str, lines: list[str]) -> str:
    """``text`` with everything from the ``begin`` marker to the ``end`` marker replaced by ``lines``
    (which carry the markers themselves)."""
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + "\n".join(lines) + text[stop:]


def run_dimctl(*args: str, stdout=None) -> None:
    """``dimctl ARGS`` in a child process, its progress off, with tcmalloc where the machine has it
    (the allocator the benchmarks' speed rows name)."""
    env = {**os.environ, "DIMCTL_NO_PROGRESS": "1"}
    if TCMALLOC.exists():
        env["LD_PRELOAD"] = str(TCMALLOC)
    subprocess.run([sys.executable, "-m", "dimctl", *args], check=True, env=env, stdout=stdout)
