"""The pretraining loop: one Accelerate code path for one CPU, one GPU, many GPUs or machines.

    dimctl pretrain --dataset digits --preset dim-l --epochs 10 --out runs/dim-l
    accelerate launch -m dimctl pretrain --dataset cifar10 --data-root data --out runs/c10

The training images live on the training device as uint8; each step draws a batch by index,
normalises and augments it there (an image folder too large for memory streams instead: DataLoader
workers decode the same batches into pinned memory, data/streaming.py). The method's networks
(``--method``, dimctl/methods/; DIM: the encoder and MI heads) minimise their loss — DIM's
-(α·I_global + β·I_local) + γ·prior loss — while an adversary (the prior discriminator, or BiGAN's
joint discriminator) minimises its own loss on the detached outputs; both come from one backward
pass and one optimiser step (``step_losses``). With several processes the MI bounds see the global
batch (train/distributed.py).
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from dimctl.data.dataset import ImageDataset
from dimctl.data.streaming import StreamingFolder, stream_batches
from dimctl.data.transforms import augment, normalise
from dimctl.errors import Interrupted, NonFiniteLoss, UsageError
from dimctl.io.artifacts import save_decoder, save_encoder, save_generator, sha256_of
from dimctl.io.atomic import write_text
from dimctl.methods import build_method
from dimctl.models.encoders import EncoderConfig, build_encoder
from dimctl.objectives import prior
from dimctl.train import checkpoint
from dimctl.train.config import PretrainConfig
from dimctl.train.distributed import convert_sync_batchnorm
from dimctl.train.guard import DeferredGuard, defer_checks, grad_norm, stop_message


@dataclass
class Progress:
    step: int
    total_steps: int
    epoch: int
    metrics: dict[str, float]


@dataclass
class PretrainResult:
    encoder_path: Path
    steps: int
    final_metrics: dict[str, float]
    is_main_process: bool = True  # only the main process reports (prints the path)


def _epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    # The order depends only on (seed, epoch), so a resumed run sees the same batches.
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).to(device)


def build_models(config: PretrainConfig, channels: int, image_size: int, num_train: int = 0):
    """Encoder first, straight after seeding, so the same seed gives the same initial encoder
    whatever the method and heads are (a random-init baseline is `--epochs 0` with the same seed).
    Returns (encoder config, the method's model, its adversary or None); ``num_train`` sizes NAT's targets."""
    set_seed(config.seed)
    # With --crop-size the encoder takes the crops, not the images as loaded.
    encoder_config = EncoderConfig(arch=config.arch, in_channels=channels, image_size=config.crop_size or image_size,
                                   y_dim=config.y_dim, width=config.width, fc_dim=config.fc_dim)
    encoder = build_encoder(encoder_config)
    model, discriminator = build_method(config, encoder, encoder_config, num_train)
    return encoder_config, model, discriminator


def make_accelerator(config: PretrainConfig) -> Accelerator:
    """The run's Accelerator: device, process group and mixed precision (autocast and, for fp16,
    loss scaling) all come from Accelerate."""
    config = config.resolved()
    if config.precision == "fp16" and (config.cpu or not torch.cuda.is_available()):
        # Accelerate would silently fall back to fp32 here. Checked before the Accelerator exists:
        # its settings are process-wide and cannot change once made.
        raise UsageError("--precision fp16 needs a GPU; on the CPU use --precision bf16")
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[config.precision]
    _forget_other_precision(mixed)
    return Accelerator(cpu=config.cpu, mixed_precision=mixed)


def _forget_other_precision(mixed: str) -> None:
    """Accelerate's state is process-wide and refuses a second mixed-precision setting. One process
    that trains several runs in turn (the Python API, the tests) may change it between runs; a
    distributed launch never does (every process runs one run)."""
    from accelerate.state import AcceleratorState, GradientState

    if (AcceleratorState._shared_state and not torch.distributed.is_initialized()
            and AcceleratorState().mixed_precision != mixed):
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def prepare_models(config: PretrainConfig, accelerator: Accelerator, channels: int, image_size: int,
                   num_train: int = 0):
    """Build, convert (sync-BN, channels-last) and wrap the networks; one Adam optimiser holds the
    method's networks and its adversary as two parameter groups (see ``step_losses``)."""
    encoder_config, model, discriminator = build_models(config, channels, image_size, num_train)
    # Augmentation draws differ per process (the initial weights above do not: same seed).
    set_seed(config.seed, device_specific=True)
    if config.sync_bn:
        model = convert_sync_batchnorm(model, accelerator.device, accelerator.num_processes)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    groups = [{"params": list(model.parameters())}]
    if discriminator is not None:
        groups.append({"params": list(discriminator.parameters())})
    # Fused Adam: one kernel per step instead of ~8 elementwise passes per parameter (about a tenth
    # of a CPU step at 2048-wide heads), and it can skip an update on a device-side flag (train/guard.py).
    fused = accelerator.device.type in ("cpu", "cuda")
    optimiser = torch.optim.Adam(groups, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), fused=fused)
    if discriminator is not None:
        model, discriminator, optimiser = accelerator.prepare(model, discriminator, optimiser)
    else:
        model, optimiser = accelerator.prepare(model, optimiser)
    if config.compile:
        # Only the method's model, after DDP wrapping (the order torch recommends): the prior
        # discriminator's gradient penalty needs double backward, which compiled graphs lack.
        model = torch.compile(model)
    return encoder_config, model, discriminator, optimiser


def unwrap(accelerator: Accelerator, module: nn.Module) -> nn.Module:
    # keep_torch_compile=False: with it on, Accelerate re-points the compiled wrapper at the bare
    # module, silently dropping DDP from the model we keep training.
    return accelerator.unwrap_model(module, keep_torch_compile=False)


def step_losses(model: nn.Module, discriminator: nn.Module | None, x: torch.Tensor,
                config: PretrainConfig, accelerator: Accelerator, index: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One step's total loss and its named terms.

    The total is the method's loss (DIM: -(α·I_G + β·I_L)) plus its adversarial part — γ·prior
    loss of Y (DIM, AAE) or BiGAN's generator-and-encoder loss — plus the adversary's own loss. One
    backward of the sum gives each network exactly its own loss's gradient: the method's
    adversarial term goes through the bare discriminator with its weights' gradients off, and the
    discriminator sees the method's outputs detached. (Summing a two-player game is only right
    because of those two cuts; see objectives/prior.py.)
    """
    bare_model = unwrap(accelerator, model)
    with accelerator.autocast():
        out = model(x, index)
        terms = out.terms
        loss = bare_model.loss(terms)
        if discriminator is None:
            return loss, terms
        bare_discriminator = unwrap(accelerator, discriminator)
        if out.pairs is not None:
            fool, disc_loss = _pair_losses(discriminator, bare_discriminator, out.pairs)
            return loss + fool + disc_loss, {**terms, "adversarial_encoder": fool, "adversarial_discriminator": disc_loss}
        chosen = prior.PRIORS[bare_model.prior]
        encoded = chosen.encode(out.y.float())
        bare_discriminator.requires_grad_(False)
        prior_term = prior.encoder_prior_loss(bare_discriminator, encoded)
        bare_discriminator.requires_grad_(True)
        disc_loss = prior.discriminator_loss(discriminator, encoded.detach(), config.prior_gradient_penalty,
                                             chosen.sample)
    terms = {**terms, "prior_encoder": prior_term, "prior_discriminator": disc_loss}
    return loss + config.gamma * prior_term + disc_loss, terms


def _pair_losses(discriminator: nn.Module, bare_discriminator: nn.Module, pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """BiGAN's two losses (non-saturating): the encoder and generator make data pairs look
    generated and generated pairs look like data; the discriminator the opposite, on detached pairs."""
    (x, y), (fake, z) = pairs
    bare_discriminator.requires_grad_(False)
    fool = F.softplus(bare_discriminator(x, y.float())).mean() + F.softplus(-bare_discriminator(fake, z)).mean()
    bare_discriminator.requires_grad_(True)
    disc_loss = (F.softplus(-discriminator(x, y.detach().float())).mean()
                 + F.softplus(discriminator(fake.detach(), z)).mean())
    return fool, disc_loss


def pretrain(config: PretrainConfig, dataset: ImageDataset | StreamingFolder, run_dir: Path, resume: bool = False,
             on_progress: Callable[[Progress], None] | None = None,
             accelerator: Accelerator | None = None,
             should_stop: Callable[[], bool] | None = None) -> PretrainResult:
    """Train, checkpoint and publish the encoder. ``should_stop`` is polled after every step
    (the CLI sets it from SIGINT/SIGTERM): when it turns true, a checkpoint is written and
    ``Interrupted`` is raised."""
    config.validate()
    if accelerator is not None and config.precision == "auto":  # a given Accelerator has its precision already
        config = replace(config, precision={"no": "fp32"}.get(accelerator.mixed_precision, accelerator.mixed_precision))
    config = config.resolved()
    accelerator = accelerator or make_accelerator(config)
    device = accelerator.device
    world, rank = accelerator.num_processes, accelerator.process_index

    streamed = isinstance(dataset, StreamingFolder)
    n = dataset.num_train if streamed else dataset.train_images.shape[0]
    global_batch = config.batch_size * world
    if n < global_batch:
        raise UsageError(f"{dataset.name} has {n} training images, fewer than one batch of {global_batch}; "
                         f"lower --batch-size")
    steps_per_epoch = n // global_batch  # drop the ragged tail: every step sees the same number of negatives
    total_steps = config.epochs * steps_per_epoch

    encoder_config, model, discriminator, optimiser = prepare_models(
        config, accelerator, dataset.channels, dataset.image_size, n)
    bare_model = unwrap(accelerator, model)
    if resume and checkpoint.list_checkpoints(run_dir):
        _check_same_world(run_dir, world)
    start_step = checkpoint.load_latest(accelerator, run_dir) if resume else 0
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.json", json.dumps({
            "command": "pretrain", "config": config.to_dict(), "encoder": encoder_config.to_dict(),
            "dataset": dataset.describe(), "num_processes": world, "device": str(device),
            "global_batch_size": global_batch, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
        }, indent=2) + "\n")

    images = None if streamed else dataset.train_images.to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    metrics_path = run_dir / "metrics.jsonl"
    if accelerator.is_main_process:
        _drop_metrics_after(metrics_path, start_step)  # lines a killed run wrote past its checkpoint
    order, order_epoch = None, -1
    window_start, window_images = time.perf_counter(), 0
    metrics: dict[str, float] = {}
    skipped = 0  # steps left out under --nan-policy skip
    # Under fp16 loss scaling, overflowing gradients are expected now and then; the scaler skips
    # those updates itself, so only the loss is checked.
    check_gradients = accelerator.scaler is None
    # On a GPU the checks run on the device and are read only at log steps and checkpoints.
    deferred = DeferredGuard(device, config.nan_policy) if defer_checks(device) and fused_optimiser(optimiser) else None
    # Several processes agree on stopping through a collective (a host sync), so only at log steps.
    stop_every = 1 if world == 1 else max(config.log_every, 1)
    model.train()

    for step in range(start_step, total_steps):
        epoch, position = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = _epoch_order(n, config.seed, epoch, device), epoch
            # The global batch is split across processes in rank order, so the gathered embeddings
            # line up exactly with one process holding the whole batch.
            starts = [p * global_batch + rank * config.batch_size for p in range(position, steps_per_epoch)]
            indices = (order[s:s + config.batch_size] for s in starts)
            if streamed:
                batches = stream_batches(dataset, [order[s:s + config.batch_size].tolist() for s in starts],
                                         device, config.workers)
            else:
                batches = (images[order[s:s + config.batch_size]] for s in starts)
        batch, index = next(batches), next(indices)
        x = normalise(augment(batch, config.crop_padding, config.hflip, crop_size=config.crop_size)
                      ).contiguous(memory_format=memory_format)

        done = step + 1
        loss, terms = step_losses(model, discriminator, x, config, accelerator, index)
        if deferred is not None:
            optimiser.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            gradients = _grad_norm(model, discriminator) if check_gradients else None
            # With fp16 loss scaling the scaler sets found_inf itself (a NaN loss gives NaN gradients).
            skip = deferred.flag(done, loss, gradients)
            if accelerator.scaler is None:
                optimiser.optimizer.found_inf = skip
            optimiser.step()
        else:
            # Losses and gradients are checked before any update, so a bad step never reaches the
            # weights or a checkpoint.
            bad = None
            if not torch.isfinite(loss):
                bad = next((k for k, v in terms.items() if not torch.isfinite(v)), "loss")
            else:
                optimiser.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                if check_gradients and not torch.isfinite(_grad_norm(model, discriminator)):
                    bad = "gradients"
            if bad is not None:
                if config.nan_policy == "stop":
                    what = "the gradients" if bad == "gradients" else f"loss term {bad}"
                    value = "non-finite" if bad == "gradients" else terms.get(bad, loss).item()
                    raise NonFiniteLoss(stop_message(f"{what} became {value}", done))
                skipped += 1
            else:
                optimiser.step()

        window_images += global_batch
        log_now = done % max(config.log_every, 1) == 0 or done == total_steps
        checkpoint_now = bool(config.checkpoint_every) and done % config.checkpoint_every == 0 and done != total_steps
        stop_now = should_stop is not None and done % stop_every == 0 and done != total_steps
        if deferred is not None and (log_now or checkpoint_now or stop_now or done == total_steps):
            skipped = deferred.settle(done)
        if log_now:
            adversary = terms.get("prior_discriminator", terms.get("adversarial_discriminator"))
            encoder_loss = loss - adversary if adversary is not None else loss
            metrics = {"loss": encoder_loss.item(), **{k: v.item() for k, v in terms.items()}, "skipped_steps": skipped}
            elapsed = time.perf_counter() - window_start
            metrics["images_per_s"] = window_images / elapsed if elapsed > 0 else 0.0
            window_start, window_images = time.perf_counter(), 0
            if accelerator.is_main_process:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps({"step": done, "epoch": epoch, **metrics}) + "\n")
        if on_progress is not None and accelerator.is_main_process:
            on_progress(Progress(done, total_steps, epoch, metrics))
        if checkpoint_now:
            checkpoint.save_checkpoint(accelerator, run_dir, done, config.keep_checkpoints)
        if stop_now and _any_process(accelerator, should_stop()):
            checkpoint.save_checkpoint(accelerator, run_dir, done, config.keep_checkpoints)
            raise Interrupted(f"stopped at step {done}/{total_steps} with a checkpoint; continue with "
                              f"`dimctl pretrain --out {run_dir} --resume` and the same settings")

    checkpoint.save_checkpoint(accelerator, run_dir, total_steps, config.keep_checkpoints)
    encoder_path = run_dir / "encoder.safetensors"
    if accelerator.is_main_process:
        save_encoder(encoder_path, bare_model.encoder, encoder_config,
                     dataset.describe(), step=total_steps, training=config.to_dict())
        publish_companions(bare_model, run_dir, encoder_path, dataset.describe(), total_steps, config)
    accelerator.wait_for_everyone()
    return PretrainResult(encoder_path, total_steps, metrics, accelerator.is_main_process)


def publish_companions(model: nn.Module, run_dir: Path, encoder_path: Path, dataset: dict, step: int,
                       config: PretrainConfig) -> None:
    """The networks a method trains beside the encoder, as their own artifacts: an autoencoder's
    decoder (decoder.safetensors, which `dimctl reconstruct --decoder` scores) and BiGAN's generator
    (generator.safetensors, which `dimctl generate sample` draws from)."""
    training = {**config.to_dict(), "trained_with": "pretrain"}
    decoder, generator = run_dir / "decoder.safetensors", run_dir / "generator.safetensors"
    if hasattr(model, "decoder"):
        save_decoder(decoder, model.decoder, model.decoder_config, sha256_of(encoder_path), encoder_path, "y", dataset,
                     step, training)
    if hasattr(model, "generator"):
        save_generator(generator, model.generator, model.generator_config, dataset, step, training)
    for path, made in ((decoder, hasattr(model, "decoder")), (generator, hasattr(model, "generator"))):
        if not made:  # left by an earlier --force'd run of another method: it belongs to that run's encoder
            path.unlink(missing_ok=True)


def _check_same_world(run_dir: Path, world: int) -> None:
    # Steps, batches and per-process RNG states in a checkpoint all assume its number of processes.
    try:
        saved = json.loads((run_dir / "config.json").read_text()).get("num_processes", world)
    except (OSError, ValueError):
        return
    if saved != world:
        raise UsageError(f"--resume: {run_dir} was trained by {saved} process(es), this launch has {world}; "
                         f"resume with {saved}, or start a new --out")


def _grad_norm(model: nn.Module, discriminator: nn.Module | None) -> torch.Tensor:
    norm = grad_norm(model)
    return norm + grad_norm(discriminator) if discriminator is not None else norm


def fused_optimiser(optimiser) -> bool:
    inner = getattr(optimiser, "optimizer", optimiser)  # under Accelerate's wrapper
    return bool(inner.defaults.get("fused"))


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    """True if any process raised the flag, so every process takes the same branch (a collective
    checkpoint entered by only some processes would hang)."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), "max").item())


def _drop_metrics_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if len(kept) != len(lines):
        write_text(path, "".join(kept))


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None  # a line cut short by a kill
