"""Negatives from the global batch: a differentiable all-gather the methods' bounds call.

Contrastive and JSD bounds draw their negatives from the batch, so with N processes each holding a
batch of B, the bound must see all N·B embeddings, and the gradient must flow back through the
gather to the process that produced each embedding. ``gather_with_grad`` does both with torch's
differentiable all-gather, whose backward sums every process's gradient for a slice and returns it
to the slice's owner. Every process then computes the same loss over the whole global batch, so
each embedding receives N times its gradient; DDP's gradient *average* divides that N back out.
The result is the gradient of 1 process × batch N·B exactly (tests/train/test_distributed.py).
It sits below the methods (dimctl/methods/) and the training loop, which both use it.
"""

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


# torch renamed all_gather_into_tensor to all_gather_single (2.14); accept both.
_all_gather_into = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class _GatherWithGrad(torch.autograd.Function):
    """All-gather forward; backward sums the gradient of the whole gathered tensor over processes
    (an all-reduce) and hands each process its own slice. Only public collectives that every
    backend has (gloo included); torch's own differentiable all_gather is deprecated."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        gathered = tensor.new_empty((world_size() * tensor.shape[0], *tensor.shape[1:]))
        _all_gather_into(gathered, tensor)
        ctx.rows = tensor.shape[0]
        return gathered

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, in rank order, keeping the graph.

    A single process gets its tensor back unchanged (no copy, no collective)."""
    if world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)
