"""How many threads a dimctl process computes with: decided once per command, before any work.

torch (and numpy's BLAS) start one OpenMP thread per core, and OpenMP threads spin at every
barrier. When two dimctl commands share a 2-core machine (`make -j2`, `extract | probe`, a probe
beside a training run), or anything else holds a core, the spinning threads fight over the cores:
a small critic ran 6-45× slower beside one busy process (benchmarks/concurrency.py measures it).
So the thread count is chosen, in this order:

1. ``--threads N`` (a flag of every command) or ``DIMCTL_THREADS=N``;
2. ``OMP_NUM_THREADS`` when the user or a launcher set it (torchrun and `accelerate launch` set 1);
3. under GNU make with ``-jN`` (its flags reach every recipe in ``MAKEFLAGS``): the usable cores
   divided by N, at least 1 (``-j`` without a number: 1);
4. otherwise the usable cores less those busy elsewhere, measured over the command's start-up
   (the CPU time the machine spent less this process's own, from /proc/stat), at least 1.

"Usable cores" are the CPUs this process may run on, capped by a cgroup CPU quota (containers).
Nothing here prints: the CLI shows the choice (``describe``) and training runs record it.
"""

import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Variables the threaded libraries read when they load (torch's OpenMP and MKL, numpy's OpenBLAS):
# set for this process's later imports and for any process it starts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Below this, /proc/stat's clock ticks (1/100 s per core) are too coarse to tell busy from idle.
MIN_SAMPLE_SECONDS = 0.1


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str  # what decided it, in a few words ("--threads", "make -j2", "1 of 2 cores busy elsewhere", …)
    cores: int  # usable cores

    def describe(self) -> str:
        return f"{self.threads} thread{'s' * (self.threads != 1)} ({self.reason}; {self.cores} usable cores)"

    def record(self) -> dict:
        """What a run's config.json keeps."""
        return {"threads": self.threads, "threads_reason": self.reason, "usable_cores": self.cores}


_chosen: ThreadChoice | None = None  # the choice applied in this process, if any


def record() -> dict:
    """This process's threads for a run's config.json: the choice the CLI applied, or what torch
    uses where a program called the library itself."""
    if _chosen is not None:
        return _chosen.record()
    import torch

    return {"threads": torch.get_num_threads(), "threads_reason": "torch's setting in this process",
            "usable_cores": usable_cores()}


def forget() -> None:
    """The command that applied a choice has ended (commands called one after another in one process)."""
    global _chosen
    _chosen = None


def usable_cores(root: Path = Path("/")) -> int:
    """The CPUs this process may run on, capped by its cgroup's CPU quota (rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    return max(1, min(cores, math.ceil(quota))) if quota else max(1, cores)


def cgroup_cpu_quota(root: Path = Path("/")) -> float | None:
    """CPUs' worth of time the process's cgroup may use (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), or None."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        path = path.lstrip("/")
        try:
            if hierarchy == "0" and controllers == "":
                quota, period = (root / "sys/fs/cgroup" / path / "cpu.max").read_text().split()[:2]
                if quota != "max":
                    return int(quota) / int(period)
            elif "cpu" in controllers.split(","):
                folder = root / "sys/fs/cgroup" / controllers / path
                quota = int((folder / "cpu.cfs_quota_us").read_text())
                if quota > 0:
                    return quota / int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
    return None


def make_jobs(makeflags: str | None) -> int | None:
    """Jobs GNU make runs at once, from MAKEFLAGS (``-j2``, ``-j 2``, ``--jobs=2``); 0 for ``-j``
    without a number (no limit); None outside a parallel make."""
    if not makeflags:
        return None
    words = makeflags.split()
    # make puts single-letter flags first, as one word when they have no value ("ks -j2 --jobserver-auth=3,4").
    for i, word in enumerate(words):
        match = re.fullmatch(r"-j(\d*)|--jobs(?:=(\d+))?", word)
        if match:
            number = match.group(1) or match.group(2)
            if not number and i + 1 < len(words) and words[i + 1].isdigit():
                number = words[i + 1]
            jobs = int(number) if number else 0
            return None if jobs == 1 else jobs
    return None


class CpuSample:
    """The machine's and this process's CPU time since it was made: ``busy_elsewhere()`` is how
    many cores other processes kept busy meanwhile."""

    def __init__(self):
        self.start_time, self.start_machine, self.start_own = time.monotonic(), _machine_busy(), time.process_time()

    def busy_elsewhere(self) -> float | None:
        wait = MIN_SAMPLE_SECONDS - (time.monotonic() - self.start_time)
        if wait > 0:  # a command called in-process right after another: sample a little longer
            time.sleep(wait)
        machine = _machine_busy()
        if machine is None or self.start_machine is None:
            return None
        elapsed = time.monotonic() - self.start_time
        others = (machine - self.start_machine) - (time.process_time() - self.start_own)
        return max(0.0, others / elapsed)


def _machine_busy() -> float | None:
    """Seconds all CPUs spent busy (not idle, not waiting for I/O) since boot, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user time
    total = sum(fields[:8]) if len(fields) >= 8 else sum(fields)
    return (total - idle) / os.sysconf("SC_CLK_TCK")


def choose(flag: int | None = None, environ: dict | None = None, sample: CpuSample | None = None,
           cores: int | None = None) -> ThreadChoice:
    """The thread count for this command (see the module's docstring for the order)."""
    environ = os.environ if environ is None else environ
    cores = usable_cores() if cores is None else cores
    if flag is not None:
        return ThreadChoice(flag, "--threads", cores)
    for name, reason in (("DIMCTL_THREADS", "DIMCTL_THREADS"), ("OMP_NUM_THREADS", "OMP_NUM_THREADS")):
        value = environ.get(name, "").strip()
        if value and value != "auto":
            return ThreadChoice(parse_threads(value, name), reason, cores)
    jobs = make_jobs(environ.get("MAKEFLAGS"))
    if jobs is not None:
        return ThreadChoice(max(1, cores // jobs) if jobs else 1, f"make -j{jobs or ''}", cores)
    busy = sample.busy_elsewhere() if sample is not None else None
    if busy is None:
        return ThreadChoice(cores, "all cores", cores)
    held = min(cores - 1, int(busy + 0.5))  # a core counts as held when it was busy more than half the time
    reason = f"{held} busy elsewhere" if held else "cores idle"
    return ThreadChoice(max(1, cores - held), reason, cores)


def parse_threads(value: str, name: str) -> int:
    """A positive thread count; ValueError (with ``name`` in the message) otherwise."""
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{name} must be a whole number of threads of at least 1 (or auto), not {value!r}")
    return threads


def apply(choice: ThreadChoice):
    """Make every thread pool of this process use ``choice.threads``: torch's intra-op and
    inter-op pools, and the BLAS and OpenMP libraries already loaded (threadpoolctl); the
    variables for libraries loaded later and for child processes. Returns threadpoolctl's limits
    (``restore_original_limits()`` undoes them), or None without threadpoolctl."""
    global _chosen
    n = choice.threads
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)
    torch = sys.modules.get("torch")  # not imported yet: it reads OMP_NUM_THREADS when it is
    if torch is not None:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # only once per process, before any inter-op work (a second in-process command)
            pass
    _chosen = choice
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn; without it the variables above still apply
        return None
    return threadpool_limits(n)
