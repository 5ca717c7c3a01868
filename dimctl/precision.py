"""`--precision auto`: bf16 where the device computes it fast, fp32 elsewhere.

bf16 pays where the matrix units run it natively: a CUDA GPU with bf16 support (Ampere and later),
or a CPU whose flags show AMX (``amx_bf16``: Sapphire Rapids and later) or AVX512-BF16
(``avx512_bf16``: Cooper Lake, Zen 4 and later). Elsewhere bf16 is emulated and slower than fp32,
so ``auto`` means fp32 there. The resolved name, never ``auto``, is what runs record.
"""

from functools import lru_cache
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def fast_bf16(device_type: str) -> bool:
    if device_type == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type == "cpu":
        return any(flag in cpu_flags() for flag in FAST_BF16_CPU_FLAGS)
    return False


def resolve_precision(name: str, device_type: str) -> str:
    """``auto`` → bf16 or fp32 for ``device_type`` ("cpu", "cuda", …); any other name unchanged."""
    if name != "auto":
        return name
    return "bf16" if fast_bf16(device_type) else "fp32"
