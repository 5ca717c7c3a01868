"""Refusing a network too large for memory before it is built.

`--mi-units 1000000000`, `--width 1e6` or `--y-dim 2e9` describe networks of terabytes; building
one ended in PyTorch's "DefaultCPUAllocator: can't allocate memory", an unexpected error naming no
flag. So the networks a training command will build are first built on PyTorch's meta device
(shapes only, no memory, milliseconds), their values counted, and a training run whose weights,
gradients and Adam moments (plus the encoder's activations for one batch, a lower bound of what a
step keeps) cannot fit in memory is refused with a UsageError naming the size flag to lower. That
flag is found by rebuilding, again on the meta device, with each given size flag at its default.
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dimctl.errors import UsageError
from dimctl.io.memory import MemoryLimit, usable_memory

BYTES_PER_VALUE = 4  # float32: weights, gradients and Adam's moments stay so under mixed precision too
ACTIVATION_BYTES = 2  # an activation under bf16/fp16 autocast: the estimate stays a lower bound
TRAINING_COPIES = 4  # a trained weight, its gradient and Adam's two moments

Built = nn.Module | tuple | None  # what a build returns: a network, or several (others ignored)


def meta_values(build: Callable[[], Built]) -> tuple[int, int]:
    """The values of the parameters and of the buffers (each tensor counted once) of the networks
    ``build()`` makes, built on the meta device."""
    with torch.device("meta"):
        modules = _modules(build())
    parameters = {id(t): t.numel() for m in modules for t in m.parameters()}
    buffers = {id(t): t.numel() for m in modules for t in m.buffers()}
    return sum(parameters.values()), sum(buffers.values())


def meta_activations(build: Callable[[], nn.Module], batch: tuple[int, ...]) -> int:
    """Values the outputs of the leaf layers of ``build()`` hold for one input of shape ``batch``,
    by a forward pass on the meta device; 0 where that pass cannot run there (an estimate only)."""
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        total += sum(t.numel() for t in _tensors(output))

    with torch.device("meta"):
        module = build().eval()  # eval: batch norm takes a batch of one too; the shapes are the same
        leaves = [m for m in module.modules() if not list(m.children())]
        hooks = [m.register_forward_hook(count) for m in leaves]
        try:
            with torch.no_grad():
                module(torch.empty(batch))
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            return 0
        finally:
            for hook in hooks:
                hook.remove()
    return total


def training_bytes(values: tuple[int, int], activations: int = 0) -> int:
    """The least memory a training step needs: four float32 copies of each parameter (the weight,
    its gradient, Adam's two moments), the buffers once, and the activations of one forward pass."""
    parameters, buffers = values
    return (parameters * TRAINING_COPIES + buffers) * BYTES_PER_VALUE + activations * ACTIVATION_BYTES


def check_training_fits(needed: Callable[[dict[str, Any]], int], given: dict[str, Any], defaults: dict[str, Any],
                        device: torch.device | str, what: str) -> None:
    """Refuse to train a network that cannot fit: ``needed(overrides)`` is the bytes training needs
    with some settings (flat names) replaced; ``given`` the size settings as given, ``defaults``
    theirs. The host must hold the weights (they are built there first), the training device all of it."""
    limits = _limits(torch.device(device))
    if not limits:
        return
    try:
        need = needed({})
    except (RuntimeError, NotImplementedError, ValueError, TypeError):
        return  # a network the meta device cannot build, or no network at all: the real build decides, as before
    for limit, weights_only in limits:
        shown = need // TRAINING_COPIES if weights_only else need  # about the weights alone
        if shown > limit.bytes:
            verb = "building" if weights_only else "training"
            raise UsageError(_refusal(_blamed(needed, need, given, defaults), given, f"{verb} the {what}",
                                      f"{_size(shown)}, more than {limit.describe(_size(limit.bytes))}"))


def _refusal(blamed: list[str], given: dict[str, Any], doing: str, amount: str) -> str:
    """"--mi-units 1000000000: training the model this describes needs …; lower --mi-units", or
    without a flag to blame, every size flag as the ones to lower."""
    names = [_flag(name) for name in blamed or given]
    lower = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    if not blamed:
        return f"{doing} needs {amount}; lower {lower}"
    flags = " and ".join(f"{_flag(name)} {given[name]}" for name in blamed)
    return f"{flags}: {doing} this describes needs {amount}; lower {lower}"


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _blamed(needed: Callable[[dict[str, Any]], int], need: int, given: dict[str, Any],
            defaults: dict[str, Any]) -> list[str]:
    """The given size settings whose default alone would at least halve what is needed (else the
    one whose default saves most)."""
    saved = {}
    for name, value in given.items():
        if value is None or value == defaults.get(name):
            continue
        try:
            saved[name] = need - needed({name: defaults.get(name)})
        except (RuntimeError, ValueError, TypeError, UsageError):
            continue
    halving = [name for name, s in saved.items() if s >= need / 2]
    if halving:
        return halving
    best = max(saved, key=saved.get, default=None)
    return [best] if best is not None and saved[best] > 0 else []


@dataclass(frozen=True)
class GPUMemory:
    bytes: int

    def describe(self, size: str) -> str:
        return f"the GPU's {size} of memory"


def _limits(device: torch.device) -> list[tuple[MemoryLimit | GPUMemory, bool]]:
    """(limit, whether only the weights must fit under it): the host's, and a GPU's own."""
    host = usable_memory()
    if device.type != "cuda":
        return [(host, False)] if host is not None else []
    gpu = GPUMemory(torch.cuda.get_device_properties(device).total_memory)
    return ([(host, True)] if host is not None else []) + [(gpu, False)]


def _modules(built: Built) -> Iterable[nn.Module]:
    items = built if isinstance(built, tuple) else (built,)
    return [m for m in items if isinstance(m, nn.Module)]


def _tensors(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    if isinstance(output, dict):
        return [t for item in output.values() for t in _tensors(item)]
    return []


def _size(n: int) -> str:
    """Bytes for a message: "3.2 GiB", "7,451 TiB"."""
    for power, unit in ((1, "KiB"), (2, "MiB"), (3, "GiB")):
        if n < 1024 ** (power + 1):
            return f"{n / 1024 ** power:.1f} {unit}"
    tib = n / 1024 ** 4
    return f"{tib:.1f} TiB" if tib < 1000 else f"{math.ceil(tib):,} TiB"
