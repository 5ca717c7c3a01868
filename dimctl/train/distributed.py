"""What multi-process training needs beyond Accelerate's wrapping and the global-batch gather
(dimctl/collectives.py): the launched process group on whatever device there is, and
synchronised batch norm.
"""

import os

import torch
from torch import nn

from dimctl.errors import UsageError


def convert_sync_batchnorm(model: nn.Module, device: torch.device, num_processes: int) -> nn.Module:
    """BatchNorm → SyncBatchNorm, so statistics cover the global batch (``--sync-bn``).

    torch's SyncBatchNorm runs only on accelerators; on the CPU it would fail at the first step,
    so say so now. With one process there is nothing to synchronise and the model is unchanged.
    """
    if num_processes == 1:
        return model
    if device.type == "cpu":
        raise UsageError("--sync-bn needs GPUs (torch's SyncBatchNorm does not run on the CPU); drop --sync-bn")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


# torchrun's (and `accelerate launch --multi_gpu`'s, which runs torchrun), then mpirun's: the
# variables Accelerate itself reads for the size of a CPU process group.
_WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_processes() -> int:
    """How many processes the launcher started as one group (1 when not launched as one)."""
    sizes = [os.environ.get(name, "").strip() for name in _WORLD_SIZE_VARIABLES]
    return max([int(size) for size in sizes if size.isdigit()] + [1])


def check_launch() -> None:
    """Refuse, before anything is written, a launch that asked for several processes but started one.

    `accelerate launch --num_processes N` with ``--cpu``, or without ``--multi_gpu`` on a machine
    with under two GPUs, runs its simple launcher: one process, told a MASTER_PORT (it sets one only
    for several processes or machines) but no group. Trained as is, it would record one process
    while the user asked for N. ACCELERATE_DYNAMO_BACKEND marks `accelerate launch` (it always sets
    it), so a MASTER_PORT exported for other reasons does not trip this in a plain run.
    """
    if launched_processes() == 1 and "MASTER_PORT" in os.environ and "ACCELERATE_DYNAMO_BACKEND" in os.environ:
        raise UsageError("accelerate launch started one process, not a process group (it does so with --cpu, or "
                         "without --multi_gpu); use `accelerate launch --multi_gpu --num_processes N -m dimctl ...` "
                         "without --cpu (it runs on the CPU where there is no GPU) or "
                         "`torchrun --nproc_per_node N -m dimctl ...`")


def accelerator_cpu(cpu: bool) -> bool:
    """Accelerator's ``cpu`` argument for this process (``cpu``: the run's --cpu).

    Launched as a process group on a machine whose device has no process-group backend (no GPU),
    Accelerate would make each process a separate single-process run — N unsynchronised copies
    writing one run folder. With ``cpu=True`` it joins them in a gloo group on the CPU instead.
    Anywhere else the choice stays Accelerate's own (on GPUs: NCCL, one GPU per process).
    """
    check_launch()
    if cpu or launched_processes() == 1:
        return cpu
    return not _device_has_process_group_backend()


def _device_has_process_group_backend() -> bool:
    """Whether Accelerate would group the launched processes on this machine's device (CUDA's NCCL, XPU's XCCL…)."""
    try:  # the test Accelerate itself makes (accelerate/state.py, _prepare_backend)
        from accelerate.utils import get_distributed_backend, get_torch_accelerator_backend
    except ImportError:  # an older Accelerate: CUDA, the GPU dimctl's GPU paths are written for
        return torch.cuda.is_available()
    return get_distributed_backend(get_torch_accelerator_backend()[0]) is not None
