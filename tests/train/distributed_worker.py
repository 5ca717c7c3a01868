"""Run by tests/train/test_distributed.py under `torchrun --nproc_per_node N` (gloo on the CPU).

    ACCELERATE_USE_CPU=1 torchrun --standalone --nproc_per_node 2 tests/train/distributed_worker.py grads OUT B
    ACCELERATE_USE_CPU=1 torchrun --standalone --nproc_per_node 2 tests/train/distributed_worker.py train OUT

`grads`: one step of DIM(L+G) on a fixed global batch of N·B digits split across the processes,
BatchNorm in eval mode (its batch statistics are per process by design); rank 0 saves the loss
terms and the gradients after DDP's all-reduce. The test compares them with one process holding
the whole batch (`reference_grads`, same code).
`train`: a short pretraining run through the library; every rank's final weights are gathered
and compared, and rank 0 records whether they are identical.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from dimctl.data.registry import load_dataset
from dimctl.data.transforms import normalise
from dimctl.train import pretrain as pretraining
from dimctl.train.config import PretrainConfig
from dimctl.train.pretrain import prepare_models, pretrain, step_losses

ESTIMATORS = ("jsd", "infonce", "dv")
TRAIN_CONFIG = dict(mi_units=64, batch_size=32, epochs=2, checkpoint_every=0, seed=3, log_every=5)


def grads_config(estimator: str, batch_size: int) -> PretrainConfig:
    return PretrainConfig.of(alpha=0.5, beta=1.0, gamma=0.0, estimator=estimator, mi_units=32,
                          batch_size=batch_size, seed=1, preset=None, precision="fp32", cpu=True)


def one_step(accelerator: Accelerator, config: PretrainConfig, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss terms and gradients of one step on this process's share of ``images``."""
    _, model, discriminator, optimiser = prepare_models(config, accelerator, 1, 32)
    model.eval()  # BatchNorm on running statistics: the comparison is about the gathered negatives
    share = images.shape[0] // accelerator.num_processes
    x = normalise(images[accelerator.process_index * share:(accelerator.process_index + 1) * share])
    optimiser.zero_grad()
    loss, terms, _ = step_losses(model, discriminator, x, config, accelerator)
    accelerator.backward(loss)
    out = {f"term.{k}": v.detach().reshape(1) for k, v in terms.items()}
    for name, p in pretraining.unwrap(accelerator, model).named_parameters():
        out[f"grad.{name}"] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
    return out


def fixed_batch(total: int) -> torch.Tensor:
    return load_dataset("digits").train_images[:total]


def reference_grads(estimator: str, total: int) -> dict[str, torch.Tensor]:
    # make_accelerator, not Accelerator(): in the test process an earlier test may have left
    # Accelerate's process-wide state in bf16, which a bare Accelerator() would inherit.
    config = grads_config(estimator, total)
    return one_step(pretraining.make_accelerator(config), config, fixed_batch(total))


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    accelerator = Accelerator(cpu=True)
    if mode == "grads":
        per_process = int(sys.argv[3])
        total = per_process * accelerator.num_processes
        for estimator in ESTIMATORS:
            result = one_step(accelerator, grads_config(estimator, per_process), fixed_batch(total))
            if accelerator.is_main_process:
                save_file(result, str(out / f"grads-{estimator}.safetensors"))
    elif mode == "train":
        captured = capture_models(accelerator)
        result = pretrain(PretrainConfig.of(**TRAIN_CONFIG), load_dataset("digits"), out / "run", accelerator=accelerator)
        # Parameters, not buffers: BatchNorm running statistics are per process (DDP broadcasts
        # rank 0's at each forward, and rank 0's are the ones published).
        model_params = torch.cat([p.detach().flatten() for p in captured[0].parameters()])
        gathered = accelerator.gather(model_params.unsqueeze(0))
        if accelerator.is_main_process:
            identical = all(torch.equal(gathered[0], g) for g in gathered[1:])
            (out / "ranks.json").write_text(json.dumps({"identical": identical, "processes": accelerator.num_processes,
                                                        "steps": result.steps}))
    accelerator.wait_for_everyone()
    accelerator.end_training()


def capture_models(accelerator: Accelerator) -> list:
    """Record the prepared model the loop trains, so its live weights can be compared across ranks
    afterwards (only rank 0 publishes the encoder file)."""
    captured = []

    def prepare_and_capture(*args, **kwargs):
        built = prepare_models(*args, **kwargs)
        captured.append(pretraining.unwrap(accelerator, built[1]))
        return built

    pretraining.prepare_models = prepare_and_capture
    return captured


if __name__ == "__main__":
    main()
