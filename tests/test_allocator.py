"""dimctl/allocator.py: a step's big buffers reuse freed memory instead of faulting in fresh pages."""

import subprocess
import sys

import pytest

from dimctl import allocator
from tests.cli.helpers import run_here

# Ten 8 MB arrays made and freed five times, as a training step makes and frees its buffers; the
# page faults of each round. A fresh process each time: the setting is process-wide.
ROUNDS = """
import resource, sys
if sys.argv[1] == "set":
    from dimctl.allocator import keep_freed_memory
    assert keep_freed_memory()
import numpy as np
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for _ in range(5):
    before = faults()
    blocks = [np.ones(1 << 20) for _ in range(10)]
    del blocks
    counts.append(faults() - before)
print(" ".join(map(str, counts)))
"""


def _faults(mode: str) -> list[int]:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_* or LD_PRELOAD from the caller
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return [int(n) for n in done.stdout.split()]


@pytest.mark.skipif(allocator.glibc_version() is None, reason="glibc's malloc")
def test_with_the_thresholds_a_step_after_the_first_faults_no_fresh_pages():
    default, kept = _faults("default"), _faults("set")
    assert min(default[1:]) > 1000  # glibc's own thresholds: 80 MB of fresh pages every round
    assert kept[1:] == [0, 0, 0, 0]


def test_the_cli_sets_them_before_the_command(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    assert run_here("--version").returncode == 0 and calls == [1]


@pytest.mark.parametrize("variable, value", [("MALLOC_ARENA_MAX", "2"), ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
                                             ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")])
def test_a_users_own_malloc_settings_or_allocator_are_left_alone(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    assert allocator.keep_freed_memory() is False
