"""How this process's memory allocator treats the large buffers a training step makes anew each step.

glibc's malloc serves a large block from a fresh mapping (mmap) above a threshold it adapts as
blocks are freed, and hands free memory at its heap's top back to the kernel above a trim threshold
(twice that one). A training step allocates and frees tens of megabytes of activations, dtype casts
and gradients, so the next step often touches fresh pages again, each a page fault the kernel
serves by zeroing a page: a DIM(L) step in bf16 at batch 64 took up to 4,064 faults at 256 units
and 12,000-16,000 at 2048 (2-core Xeon, torch 2.14; benchmarks/profile_step.py prints the faults
per step). With the thresholds below it took none once past its first few steps, in every run;
the 5 steps after 3 warm-up steps that profile_step times still took up to 1,639 a step. A cold
cast of a (1024 × 4096) weight took 4.2 ms into fresh pages and 1.9 ms into reused ones.

So the CLI sets them once at start-up, before any work. They cost memory only while it is free:
up to ``TRIM_THRESHOLD`` of freed heap stays with the process instead of going back to the kernel.
Another allocator (tcmalloc preloaded, as the Makefile does) or a user's own ``MALLOC_*`` or
``GLIBC_TUNABLES`` settings are left alone. Nothing here prints.
"""

import ctypes
import os

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# The largest threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2): blocks up to 32 MB come from
# the heap, e.g. a (4096 × 2048) bf16 activation of the MI heads at the paper's width.
MMAP_THRESHOLD = 32 << 20
# Above a step's transient memory at the paper's settings, below what a shared machine would miss.
TRIM_THRESHOLD = 256 << 20


def glibc_version() -> str | None:
    """"2.36" where this process runs on glibc, else None (musl, macOS, Windows)."""
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"; only glibc defines the name
    except (ValueError, OSError, AttributeError):
        return None
    return found.split()[-1] if found and found.startswith("glibc") else None


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (``MMAP_THRESHOLD``, ``TRIM_THRESHOLD``) for this
    process; True if they were set. Not on another C library, nor where the user set malloc's
    environment variables or tunables, nor where another allocator is preloaded."""
    if glibc_version() is None or "malloc" in os.environ.get("LD_PRELOAD", ""):
        return False
    if any(k.startswith("MALLOC_") for k in os.environ) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
