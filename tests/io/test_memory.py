"""The memory a process may use: the machine's RAM, or its cgroup's cap where that is smaller."""

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dimctl.io import memory
from dimctl.io.features import create_feature_file, init_feature_file, seal_bytes
from dimctl.io.memory import MemoryLimit, cgroup_memory_limit, usable_memory

GIB = 1 << 30
V1_NONE = "9223372036854771712"  # what cgroup v1 writes for "no limit"


def fake_root(tmp_path, proc_cgroup: str, files: dict[str, str]) -> Path:
    """A file tree with /proc/self/cgroup saying ``proc_cgroup`` and the cgroup ``files`` given."""
    for name, text in {"proc/self/cgroup": proc_cgroup, **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    return tmp_path


def test_cgroup_v1_takes_the_smallest_cap_along_the_path(tmp_path):
    root = fake_root(tmp_path, "4:memory:/batch/job7\n3:cpu,cpuacct:/batch/job7", {
        "sys/fs/cgroup/memory/memory.limit_in_bytes": V1_NONE,
        "sys/fs/cgroup/memory/batch/memory.limit_in_bytes": str(8 * GIB),
        "sys/fs/cgroup/memory/batch/job7/memory.limit_in_bytes": str(12 * GIB),  # the parent's 8 GiB still binds
    })
    assert cgroup_memory_limit(root) == 8 * GIB


def test_cgroup_v2_reads_memory_max_and_max_means_none(tmp_path):
    root = fake_root(tmp_path, "0::/user.slice/app", {
        "sys/fs/cgroup/user.slice/memory.max": "max",
        "sys/fs/cgroup/user.slice/app/memory.max": str(3 * GIB),
    })
    assert cgroup_memory_limit(root) == 3 * GIB
    (root / "sys/fs/cgroup/user.slice/app/memory.max").write_text("max\n")
    assert cgroup_memory_limit(root) is None


def test_a_container_without_a_cgroup_namespace_reads_its_own_mount_root(tmp_path):
    # /proc/self/cgroup names the host's path, which the container's mount does not have.
    root = fake_root(tmp_path, "9:memory:/docker/0123abcd", {
        "sys/fs/cgroup/memory/memory.limit_in_bytes": str(2 * GIB)})
    assert cgroup_memory_limit(root) == 2 * GIB


def test_no_cgroup_files_and_unlimited_groups_mean_no_cap(tmp_path):
    assert cgroup_memory_limit(tmp_path) is None  # no /proc/self/cgroup (not Linux)
    root = fake_root(tmp_path, "4:memory:/", {"sys/fs/cgroup/memory/memory.limit_in_bytes": V1_NONE})
    assert cgroup_memory_limit(root) is None


def test_usable_memory_is_the_smaller_of_ram_and_the_cap(monkeypatch):
    monkeypatch.setattr(memory, "physical_memory", lambda: 16 * GIB)
    monkeypatch.setattr(memory, "cgroup_memory_limit", lambda: 4 * GIB)
    assert usable_memory() == MemoryLimit(4 * GIB, from_cgroup=True)
    monkeypatch.setattr(memory, "cgroup_memory_limit", lambda: 64 * GIB)
    assert usable_memory() == MemoryLimit(16 * GIB, from_cgroup=False)
    monkeypatch.setattr(memory, "cgroup_memory_limit", lambda: None)
    assert usable_memory() == MemoryLimit(16 * GIB, from_cgroup=False)
    assert "cgroup" in MemoryLimit(1, True).describe("1 byte") and "machine" in MemoryLimit(1, False).describe("1 byte")


@contextlib.contextmanager
def memory_cgroup(limit: int):
    """A real memory cgroup capped at ``limit`` bytes (v1 or v2), removed afterwards; skips the
    test where this process may not make one (not root, no memory controller)."""
    name = f"dimctl-test-{os.getpid()}"
    v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")
    v2_controllers = v2 / "cgroup.subtree_control"
    if (v1 / "memory.limit_in_bytes").exists():
        group, cap = v1 / name, "memory.limit_in_bytes"
    elif v2_controllers.exists() and "memory" in v2_controllers.read_text().split():
        group, cap = v2 / name, "memory.max"
    else:
        pytest.skip("no cgroup memory controller to make a group under")
    try:
        group.mkdir()
        (group / cap).write_text(str(limit))
    except OSError as error:
        with contextlib.suppress(OSError):
            group.rmdir()
        pytest.skip(f"cannot make a memory cgroup here: {error}")
    try:
        yield group
    finally:
        group.rmdir()  # the process in it has exited


def test_an_svm_fit_past_the_containers_cap_is_refused_not_killed(tmp_path):
    # 24,000 rows × 3,000 classes: the ADMM fit needs ~11 GB, less than this machine's RAM may be
    # but more than the 1 GiB cgroup it runs in. Sized against RAM, the kernel would kill it
    # (exit 137, no message); sized against the cap it is one line and exit 2.
    rng = np.random.default_rng(0)
    rows = {"train": 24_000, "test": 3_000}
    buffer = io.BytesIO()
    with create_feature_file(buffer) as f:
        init_feature_file(f, {"sha256": "ab"}, {"name": "many", "channels": 1, "image_size": 32}, ["y"], rows,
                          {"y": (8,)})
        for split, n in rows.items():
            f[split]["labels"][:] = np.arange(n) % 3_000
            f[split]["y"][:] = rng.standard_normal((n, 8)).astype(np.float32)
    path = tmp_path / "many-classes.h5"
    path.write_bytes(seal_bytes(buffer.getvalue()))
    with memory_cgroup(GIB) as group:
        done = subprocess.run(["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh",
                               sys.executable, "-m", "dimctl", "probe", str(path), "--classifier", "svm"],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, (done.returncode, done.stderr[-1000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "24000 rows × 3000 classes needs about" in lines[0], lines[0]
    assert "the 1.0 GiB of memory its cgroup allows this process" in lines[0], lines[0]
