"""dimctl/threads.py: the thread count's order of precedence, GNU make's job count, the busy
cores measured at start-up, and a cgroup's CPU quota."""

import os

import pytest
import torch

from dimctl import threads


class Busy:
    def __init__(self, cores: float | None):
        self.cores = cores

    def busy_elsewhere(self):
        return self.cores


@pytest.mark.parametrize("flags, jobs", [("", None), (" -j2 --jobserver-auth=3,4", 2), ("ks -j4", 4),
                                         (" -j", 0), ("--jobs=3", 3), ("-j 6", 6), (" -j1", None), ("-k", None)])
def test_make_jobs_from_makeflags(flags, jobs):
    assert threads.make_jobs(flags) == jobs


def test_precedence_flag_then_variables_then_make_then_idle_cores():
    busy = Busy(1.0)
    assert threads.choose(3, {"DIMCTL_THREADS": "2", "MAKEFLAGS": "-j2"}, busy, cores=8).threads == 3
    assert threads.choose(None, {"DIMCTL_THREADS": "2", "OMP_NUM_THREADS": "5"}, busy, cores=8).reason == "DIMCTL_THREADS"
    assert threads.choose(None, {"OMP_NUM_THREADS": "5", "MAKEFLAGS": "-j2"}, busy, cores=8).threads == 5
    assert threads.choose(None, {"DIMCTL_THREADS": "auto", "MAKEFLAGS": "-j2"}, busy, cores=8).threads == 4
    assert threads.choose(None, {"MAKEFLAGS": "-j3"}, busy, cores=2).threads == 1  # never below one
    assert threads.choose(None, {"MAKEFLAGS": "-j"}, busy, cores=8).threads == 1  # no job limit: one each
    # Outside make: the cores less those busy elsewhere more than half the time.
    assert threads.choose(None, {}, Busy(0.3), cores=2).threads == 2
    assert threads.choose(None, {}, Busy(0.9), cores=2).threads == 1
    assert threads.choose(None, {}, Busy(5.0), cores=2).threads == 1
    assert threads.choose(None, {}, Busy(2.2), cores=8).threads == 6
    assert threads.choose(None, {}, Busy(None), cores=4).threads == 4  # not measurable (no /proc): all cores
    with pytest.raises(ValueError, match="DIMCTL_THREADS"):
        threads.choose(None, {"DIMCTL_THREADS": "0"}, busy, cores=2)


def test_the_start_up_sample_sees_a_busy_core():
    import subprocess
    import sys

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)  # the interpreter's start-up is over
        sample = threads.CpuSample()
        sum(i * i for i in range(1_000_000))  # this process's own work meanwhile is not "elsewhere"
        time.sleep(0.3)
        assert sample.busy_elsewhere() > 0.7
    finally:
        hog.kill()
        hog.wait()


def test_cgroup_quota_caps_the_usable_cores(tmp_path):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/job\n")
    (tmp_path / "sys/fs/cgroup/job").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/job/cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 1.5
    assert threads.usable_cores(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "sys/fs/cgroup/job/cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "proc/self/cgroup").write_text("4:cpu,cpuacct:/box\n")
    (tmp_path / "sys/fs/cgroup/cpu,cpuacct/box").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/cpu,cpuacct/box/cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "sys/fs/cgroup/cpu,cpuacct/box/cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 1.0


def test_apply_sets_torch_and_the_variables(monkeypatch):
    for name in threads.THREAD_VARIABLES:
        monkeypatch.setenv(name, "7")
    before = torch.get_num_threads()
    try:
        threads.apply(threads.ThreadChoice(1, "--threads", 2))
        assert torch.get_num_threads() == 1
        assert all(os.environ[name] == "1" for name in threads.THREAD_VARIABLES)
        assert threads.record()["threads"] == 1 and threads.record()["threads_reason"] == "--threads"
    finally:
        torch.set_num_threads(before)
        threads.forget()
