"""What a benchmark's rows name as their machine: the CPU model with the cores this process may use,
and the vector flags that decide how fast fp32 and bf16 run (results/README.md)."""

import os
import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


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
