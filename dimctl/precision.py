"""`--precision auto`: bf16 where the device computes it fast, fp32 elsewhere.

bf16 pays where the matrix units run it natively: a CUDA GPU with bf16 support (Ampere and later),
or a CPU with AMX (``amx_bf16``: Sapphire Rapids and later). A CPU whose flags show AVX512-BF16
but no AMX may or may not be faster in bf16: Zen 4 runs a bf16 matmul ~2.5× faster than fp32,
while an Intel Xeon whose AMX is not exposed (seen in a VM: ``avx512_bf16``, no ``amx_*``) runs it
at ~0.55× of fp32, because its bf16 dot-product instruction issues on one port where fp32 FMAs
issue on two — and there bf16 training was 0.75–0.81× of fp32. So on such a CPU ``auto`` times one
1024³ matmul in each precision (~0.1 s) and takes bf16 only when it is at least
``MEASURED_BF16_MIN_SPEEDUP`` times faster. Without either flag bf16 is emulated, and ``auto`` means
fp32. The resolved name, never ``auto``, is what runs record.
"""

import time
from functools import lru_cache
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AMX_BF16_FLAG = "amx_bf16"
AVX512_BF16_FLAG = "avx512_bf16"
# Training gains less than a bare matmul (convolutions, elementwise work and the fp32 bounds stay
# as they are), so a margin: Zen 4's 2.5× matmul gave 1.5–1.9× training, 0.55× gave 0.75–0.81×.
MEASURED_BF16_MIN_SPEEDUP = 1.3


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


@lru_cache(maxsize=1)
def cpu_bf16_matmul_speedup(size: int = 1024) -> float:
    """How many times faster a (size × size) bf16 matmul runs than fp32's on this CPU, with the
    threads torch uses now: best of 3 timed products each, alternating, after one warm-up each."""
    import torch

    operands = {dtype: (torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype))
                for dtype in (torch.float32, torch.bfloat16)}
    best = {dtype: float("inf") for dtype in operands}
    for dtype, (a, b) in operands.items():
        a @ b  # warm-up: oneDNN creates and caches its kernel
    for _ in range(3):
        for dtype, (a, b) in operands.items():
            start = time.perf_counter()
            a @ b
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


def fast_bf16(device_type: str) -> bool:
    if device_type == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device_type == "cpu":
        flags = cpu_flags()
        if AMX_BF16_FLAG in flags:
            return True
        return AVX512_BF16_FLAG in flags and cpu_bf16_matmul_speedup() >= MEASURED_BF16_MIN_SPEEDUP
    return False


def resolve_precision(name: str, device_type: str) -> str:
    """``auto`` → bf16 or fp32 for ``device_type`` ("cpu", "cuda", …); any other name unchanged."""
    if name != "auto":
        return name
    return "bf16" if fast_bf16(device_type) else "fp32"
