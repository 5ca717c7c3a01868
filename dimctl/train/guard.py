"""A non-finite loss or gradient never reaches the weights — without a host sync per step on a GPU.

Two ways to keep that promise, chosen by device (``defer_checks``):

- At once (CPU, and wherever the fused optimiser is unavailable): the loop reads the loss and the
  gradient norm on the host before each update and leaves the update out, naming the bad term.
  Reading a value is free on the CPU, where the host *is* the device.
- Deferred (CUDA): reading a value every step would stall the GPU's queue once per step. The
  update is made conditional on a device-side flag instead: fused Adam skips the whole update (the
  weights, its moments and its step count) when its ``found_inf`` tensor is 1 — the mechanism
  torch's GradScaler uses — and the flags are counted on the device. The host reads them only when
  it needs them anyway (log steps, before a checkpoint, at the end): ``settle``. Under
  ``--nan-policy stop`` the run then stops naming the first bad step; the steps after it were
  finite and were applied, and no checkpoint was written after a bad step before it was seen.
"""

import torch
from torch import nn

from dimctl.errors import NonFiniteLoss

NAN_POLICIES = ("stop", "skip")  # --nan-policy: stop the run, or leave the step's update out


def defer_checks(device: torch.device) -> bool:
    return device.type == "cuda"


def grad_norm(module: nn.Module) -> torch.Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())


REMEDY = "lower --lr or try another --estimator"  # what the stop line suggests (pretraining's)


def stop_message(what: str, step: int, remedy: str = REMEDY) -> str:
    """The one line for ``--nan-policy stop`` (``what`` names the bad value)."""
    return (f"{what} at step {step}; no update was made and the last checkpoint is intact "
            f"— {remedy}, then --resume (or --nan-policy skip to skip such steps)")


def nonfinite_loss(loss: torch.Tensor, terms: dict[str, torch.Tensor], who: str = "", total: str = "loss") -> str:
    """Names a non-finite loss for the stop line: its first non-finite term and that term's value,
    else the loss itself under the name ``total``; ``who`` names whose loss (a trainer with several)."""
    bad = next((k for k, v in terms.items() if not torch.isfinite(v)), None)
    value = terms[bad].item() if bad is not None else loss.item()
    return f"{who + ' ' if who else ''}loss term {bad or total} became {value}"


def checked_update(accelerator, optimiser, loss: torch.Tensor, gradient_norm, policy: str, step: int,
                   loss_problem, before_update=None, remedy: str = REMEDY, who: str = "") -> bool:
    """The check-before-update path: backward and one optimiser step, unless the loss or (after
    backward) the gradients are non-finite — then ``NonFiniteLoss`` under ``--nan-policy stop``, or
    no update under ``skip`` (returns False). ``gradient_norm()`` gives the norm to check (None: the
    loss only); ``loss_problem()`` names a bad loss for the message; ``before_update()`` runs
    between a good backward and the step (gradient clipping); ``who`` names whose gradients (a
    trainer with several optimisers)."""
    problem = None
    if not torch.isfinite(loss):
        problem = loss_problem()
    else:
        optimiser.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if gradient_norm is not None and not torch.isfinite(gradient_norm()):
            problem = f"the {who + ' ' if who else ''}gradients became non-finite"
    if problem is None:
        if before_update is not None:
            before_update()
        optimiser.step()
        return True
    if policy == "stop":
        raise NonFiniteLoss(stop_message(problem, step, remedy))
    return False


class DeferredGuard:
    """Device-side bookkeeping of non-finite steps (see the module docstring)."""

    def __init__(self, device: torch.device, policy: str):
        self.policy = policy
        self.bad_steps = torch.zeros((), dtype=torch.int64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def flag(self, step: int, loss: torch.Tensor, gradients: torch.Tensor | None) -> torch.Tensor:
        """The step's skip flag (1.0: leave the update out), as a device tensor for ``found_inf``."""
        finite = torch.isfinite(loss.detach())
        if gradients is not None:
            finite = finite & torch.isfinite(gradients)
        bad = ~finite
        self.bad_steps += bad
        self.first_bad = torch.where((self.first_bad < 0) & bad, step, self.first_bad)
        return bad.float()

    def settle(self, step: int) -> int:
        """Read the counters (one host sync); raise under the stop policy. Returns the steps skipped."""
        bad = int(self.bad_steps.item())
        if bad and self.policy == "stop":
            first = int(self.first_bad.item())
            raise NonFiniteLoss(stop_message(f"the loss or its gradients became non-finite (noticed at step {step}; "
                                             f"the finite steps since were applied)", first))
        return bad
