"""The order batches are drawn in: fixed by (seed, epoch), split across processes in rank order.

Every loop that walks a dataset in epochs (pretrain, generate train, finetune, reconstruct's
decoder) draws from ``epoch_order``, so a resumed or multi-process run sees exactly the batches of
one uninterrupted process.
"""

import torch


def epoch_order(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The permutation of ``n`` examples for ``epoch``: it depends only on (seed, epoch) and is
    drawn on the CPU by its own generator, so every machine and every resumed run agree."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).to(device)


def rank_batch_start(position: int, global_batch: int, rank: int, batch_size: int) -> int:
    """Where process ``rank``'s slice of the ``position``-th global batch of an epoch starts. The
    global batch is split in rank order, so the gathered slices are the one process's batch."""
    return position * global_batch + rank * batch_size


class EpochOrder:
    """``epoch_order`` of ``n`` examples, drawn once per epoch and kept for that epoch's steps
    (every trainer walks its epochs in turn)."""

    def __init__(self, n: int, seed: int, device: torch.device | str = "cpu"):
        self.n, self.seed, self.device = n, seed, device
        self.epoch, self.order = -1, torch.zeros(0, dtype=torch.int64)

    def __call__(self, epoch: int) -> torch.Tensor:
        if epoch != self.epoch:
            self.order, self.epoch = epoch_order(self.n, self.seed, epoch, self.device), epoch
        return self.order
