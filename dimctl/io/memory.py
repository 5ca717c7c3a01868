"""How much memory this process may use: the machine's RAM, or less where a cgroup caps it.

Containers (Docker, Kubernetes pods, systemd slices, batch schedulers) cap a process's memory
through its cgroup, often far below the machine's RAM. A fit or a read sized against RAM there is
not refused but killed by the kernel's OOM killer: exit 137, no message, nothing saved. So the
checks that refuse what cannot fit (declared sizes of feature files, the linear SVM's peak) compare
against ``usable_memory()``: the smallest of the RAM and every memory cap on the process's cgroup
path (each level can set one, and the smallest applies), for cgroup v1 (``memory.limit_in_bytes``)
and v2 (``memory.max``).
"""

import os
from dataclasses import dataclass
from pathlib import Path

# Where the hierarchies are mounted on Linux: v1's memory controller, v2's unified tree (on hybrid
# systems under unified/). Inside a container they are usually the container's own cgroup.
V1_MEMORY_MOUNTS = ("sys/fs/cgroup/memory",)
V2_MOUNTS = ("sys/fs/cgroup", "sys/fs/cgroup/unified")
# v1 writes "no limit" as the largest page-aligned signed 64-bit number; anything this large is none.
UNLIMITED = 1 << 60


@dataclass(frozen=True)
class MemoryLimit:
    bytes: int
    from_cgroup: bool  # True: a cgroup caps this process below the machine's RAM

    def describe(self, size: str) -> str:
        """The limit for a message, given its size already written out ("3.0 GiB")."""
        if self.from_cgroup:
            return f"the {size} of memory its cgroup allows this process (a container's limit)"
        return f"this machine's {size} of memory"


def physical_memory() -> int | None:
    """The machine's memory in bytes, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def cgroup_memory_limit(root: Path = Path("/")) -> int | None:
    """The smallest memory cap on this process's cgroup path, or None where there is none (or no
    cgroups: macOS, Windows, a Linux without the files). ``root`` is "/" but in tests."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    caps = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            caps += _caps_along(root, V2_MOUNTS, path, "memory.max")
        elif "memory" in controllers.split(","):
            caps += _caps_along(root, V1_MEMORY_MOUNTS, path, "memory.limit_in_bytes")
    return min(caps, default=None)


def _caps_along(root: Path, mounts: tuple[str, ...], path: str, file: str) -> list[int]:
    """The caps in ``file`` at the cgroup ``path`` and each ancestor, under each mount. Without a
    cgroup namespace a container sees its host's path, which its own mount does not have: then the
    mount's root (the container's own cgroup) is what is read."""
    caps = []
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    for mount in mounts:
        base = root / mount
        levels = [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
        for level in levels:
            try:
                text = (level / file).read_text().strip()
            except OSError:
                continue
            if text.isdigit() and 0 < int(text) < UNLIMITED:  # "max" (v2) and v1's huge number: none
                caps.append(int(text))
    return caps


def usable_memory() -> MemoryLimit | None:
    """What this process may allocate at most: the machine's RAM or its cgroup's cap, whichever
    is smaller; None where neither is known."""
    physical, cap = physical_memory(), cgroup_memory_limit()
    if cap is not None and (physical is None or cap < physical):
        return MemoryLimit(cap, from_cgroup=True)
    return None if physical is None else MemoryLimit(physical, from_cgroup=False)
