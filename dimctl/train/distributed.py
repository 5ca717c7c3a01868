"""What multi-process training needs beyond Accelerate's wrapping and the global-batch gather
(dimctl/collectives.py): synchronised batch norm.
"""

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
