"""Pretraining an encoder by any `--method`: one Accelerate code path for one CPU, one GPU, many GPUs or machines.

    dimctl pretrain --dataset digits --preset dim-l --epochs 10 --out runs/dim-l
    accelerate launch -m dimctl pretrain --dataset cifar10 --data-root data --out runs/c10

The training images live on the training device as uint8; each step draws a batch by index,
normalises and augments it there (an image folder too large for memory streams instead: DataLoader
workers decode the same batches into pinned memory, data/streaming.py). The method's networks
(``--method``, dimctl/methods/; DIM: the encoder and MI heads) minimise their loss — DIM's
-(α·I_global + β·I_local) + γ·prior loss — while an adversary (the prior discriminator, or BiGAN's
joint discriminator) minimises its own loss on the detached outputs; both come from one backward
pass and one optimiser step (``step_losses``). With several processes the MI bounds see the global
batch (dimctl/collectives.py).
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from dimctl.data.dataset import ImageDataset
from dimctl.data.order import EpochOrder, rank_batch_start
from dimctl.data.streaming import StreamingFolder, stream_batches
from dimctl.data.transforms import augment, normalise
from dimctl.errors import UsageError
from dimctl.io.artifacts import save_encoder
from dimctl.methods import METHODS, Method, build_method, companion_files
from dimctl.methods.base import PublishedRun
from dimctl.models.backbones import is_backbone, load_backbone_weights
from dimctl.models.encoders import EncoderConfig, build_encoder
from dimctl.models.size import check_training_fits, meta_activations, meta_values, training_bytes
from dimctl.precision import PRECISIONS
from dimctl.train.config import PretrainConfig
from dimctl.train.distributed import accelerator_cpu, convert_sync_batchnorm
from dimctl.train.engine import Progress, Schedule, Trainer, global_batch_of, train, unwrap
from dimctl.train.guard import DeferredGuard, checked_update, defer_checks, grad_norm, nonfinite_loss
from dimctl.train.online_eval import OnlineKNN
from dimctl.train.trackers import tracker_arguments


ENCODER_FILE = "encoder.safetensors"


@dataclass
class PretrainResult:
    encoder_path: Path
    steps: int
    final_metrics: dict[str, float]
    is_main_process: bool = True  # only the main process reports (prints the path)


def build_models(config: PretrainConfig, channels: int, image_size: int, num_train: int = 0):
    """Encoder first, straight after seeding, so the same seed gives the same initial encoder
    whatever the method and heads are (a random-init baseline is `--epochs 0` with the same seed).
    Returns (encoder config, the method's model, its adversary or None); ``num_train`` sizes NAT's targets."""
    set_seed(config.run.seed)
    encoder_config = _encoder_config(config, channels, image_size)
    arch = config.encoder
    encoder = build_encoder(encoder_config)
    if arch.backbone_weights is not None:
        try:
            load_backbone_weights(encoder, arch.backbone_weights)
        except (ValueError, OSError, RuntimeError) as e:
            raise UsageError(f"--backbone-weights: {e}") from None
    model, discriminator = build_method(config, encoder, encoder_config, num_train)
    return encoder_config, model, discriminator


def _encoder_config(config: PretrainConfig, channels: int, image_size: int) -> EncoderConfig:
    # With --crop-size the encoder takes the crops, not the images as loaded.
    arch = config.encoder
    return EncoderConfig(arch=arch.arch, in_channels=channels, image_size=config.data.crop_size or image_size,
                         y_dim=arch.y_dim, width=arch.width, fc_dim=arch.fc_dim,
                         stem=arch.stem if is_backbone(arch.arch) else None, local_layer=arch.local_layer)


SIZE_SETTINGS = ("width", "fc_dim", "y_dim", "mi_units", "batch_size")  # what sets the memory a run needs


def check_models_fit(config: PretrainConfig, device: torch.device, channels: int, image_size: int,
                     num_train: int = 0) -> None:
    """Refuse (UsageError naming the flag) networks whose training cannot fit in memory, before
    any is built: they are first built on the meta device (models/size.py)."""
    def needed(overrides: dict) -> int:
        c = config.replace(**overrides)
        encoder_config = _encoder_config(c, channels, image_size)
        values = meta_values(lambda: build_method(c, build_encoder(encoder_config), encoder_config, num_train))
        side = encoder_config.image_size
        activations = meta_activations(lambda: build_encoder(encoder_config),
                                       (c.optimiser.batch_size, channels, side, side))
        return training_bytes(values, activations)

    flat, defaults = config.to_dict(), PretrainConfig().to_dict()
    check_training_fits(needed, {k: flat[k] for k in SIZE_SETTINGS}, defaults, device, "model")


def make_accelerator(config: PretrainConfig, run_dir: Path | None = None) -> Accelerator:
    """The run's Accelerator: device, process group, mixed precision (autocast and, for fp16,
    loss scaling) and experiment trackers (``--log-with``, kept in ``run_dir``) all come from Accelerate.
    ``config`` is resolved (``PretrainConfig.resolved``): what runs is decided once, before this."""
    if config.run.precision == "auto":
        raise ValueError("make_accelerator needs a resolved config (PretrainConfig.resolved: --precision auto decided)")
    if config.run.precision == "fp16" and (config.run.cpu or not torch.cuda.is_available()):
        # Accelerate would silently fall back to fp32 here. Checked before the Accelerator exists:
        # its settings are process-wide and cannot change once made.
        raise UsageError("--precision fp16 needs a GPU; on the CPU use --precision bf16")
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[config.run.precision]
    _forget_other_precision(mixed)
    if not config.run.cpu and torch.cuda.is_available():
        deterministic_gpu_kernels(config.run.deterministic)
    return Accelerator(cpu=accelerator_cpu(config.run.cpu), mixed_precision=mixed,
                       **tracker_arguments(config.run.log_with, run_dir))


def deterministic_gpu_kernels(on: bool) -> None:
    """Measured on an H100 (results/gpu_resume.csv): without this, two fp32 runs of one seed differ
    after a few dozen steps (cuDNN picks non-deterministic convolution gradients), so a resumed run
    cannot be bit-identical. Set per run: the switch is process-wide and the API may train several runs."""
    if on:  # cuBLAS needs its workspace fixed before its first call to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)


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
    set_seed(config.run.seed, device_specific=True)
    if config.run.sync_bn:
        model = convert_sync_batchnorm(model, accelerator.device, accelerator.num_processes)
    if config.run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    groups = [{"params": list(model.parameters())}]
    if discriminator is not None:
        groups.append({"params": list(discriminator.parameters())})
    # Fused Adam: one kernel per step instead of ~8 elementwise passes per parameter (about a tenth
    # of a CPU step at 2048-wide heads), and it can skip an update on a device-side flag (train/guard.py).
    fused = accelerator.device.type in ("cpu", "cuda")
    adam = config.optimiser
    optimiser = torch.optim.Adam(groups, lr=adam.lr, betas=(adam.adam_beta1, adam.adam_beta2), fused=fused)
    if discriminator is not None:
        model, discriminator, optimiser = accelerator.prepare(model, discriminator, optimiser)
    else:
        model, optimiser = accelerator.prepare(model, optimiser)
    if config.run.compile:
        # Only the method's model, after DDP wrapping (the order torch recommends): the prior
        # discriminator's gradient penalty needs double backward, which compiled graphs lack.
        model = torch.compile(model)
    return encoder_config, model, discriminator, optimiser


class StepLosses(NamedTuple):
    total: torch.Tensor  # what one backward runs on: the method's and the adversary's losses
    terms: dict[str, torch.Tensor]  # every named term, logged
    method: torch.Tensor  # the method's own loss with its adversarial part (the logged "loss")


def step_losses(model: nn.Module, discriminator: nn.Module | None, x: torch.Tensor,
                config: PretrainConfig, accelerator: Accelerator, index: torch.Tensor | None = None,
                method: Method | None = None) -> StepLosses:
    """One step's total loss, its named terms and the method's share of it.

    The total is the method's loss, which its model returns (DIM: -(α·I_G + β·I_L)), plus its
    adversarial part (γ·prior loss of Y for DIM and AAE, BiGAN's generator-and-encoder loss) plus
    the adversary's own loss, both parts from the method's entry (methods/base.py
    ``adversary_losses``). One backward of the sum gives each network exactly its own loss's
    gradient: the method's adversarial term goes through the bare discriminator with its weights'
    gradients off, and the discriminator sees the method's outputs detached. (Summing a two-player game is only right because of those two
    cuts; see objectives/prior.py.) ``method``: the run's entry (default: looked up from ``config``).
    """
    with accelerator.autocast():
        out = model(x, index)
        if discriminator is None:
            return StepLosses(out.loss, out.terms, out.loss)
        adversarial, disc_loss, adversary_terms = (method or METHODS[config.objective.method]).adversary_losses(
            out, unwrap(accelerator, model), discriminator, unwrap(accelerator, discriminator), config)
    method_loss = out.loss + adversarial
    return StepLosses(method_loss + disc_loss, {**out.terms, **adversary_terms}, method_loss)


def pretrain(config: PretrainConfig, dataset: ImageDataset | StreamingFolder, run_dir: Path, resume: bool = False,
             on_progress: Callable[[Progress], None] | None = None,
             accelerator: Accelerator | None = None,
             should_stop: Callable[[], bool] | None = None) -> PretrainResult:
    """Train, checkpoint and publish the encoder. ``should_stop`` is polled after steps (the CLI
    sets it from SIGINT/SIGTERM): when it turns true, a checkpoint is written and ``Interrupted``
    is raised (train/engine.py)."""
    if accelerator is not None and config.run.precision == "auto":  # a given Accelerator has its precision already
        config = config.replace(precision={"no": "fp32"}.get(accelerator.mixed_precision, accelerator.mixed_precision))
    config = config.validate().resolved()  # once, at the library's door (the CLI's config is resolved already)
    accelerator = accelerator or make_accelerator(config, run_dir)
    world = accelerator.num_processes
    if world > 1:
        _check_same_precision(accelerator, config.run.precision)

    n = dataset.num_train if isinstance(dataset, StreamingFolder) else dataset.train_images.shape[0]
    global_batch = global_batch_of(dataset.name, n, config.optimiser.batch_size, accelerator)
    steps_per_epoch = n // global_batch  # drop the ragged tail: every step sees the same number of negatives
    total_steps = config.run.epochs * steps_per_epoch
    if config.run.max_steps:
        total_steps = min(total_steps, config.run.max_steps)

    online = None
    if config.run.eval_every:  # before anything is written: a dataset without labels is refused first
        online = OnlineKNN(dataset, config.run.eval_layers.split(","), config.run.eval_images, accelerator.device,
                           config.data.crop_size)
    check_models_fit(config, accelerator.device, dataset.channels, dataset.image_size, n)
    encoder_config, model, discriminator, optimiser = prepare_models(
        config, accelerator, dataset.channels, dataset.image_size, n)
    trainer = PretrainTrainer(config, accelerator, dataset, model, discriminator, optimiser, steps_per_epoch,
                         encoder_config, total_steps)
    record = {"command": "pretrain", "config": config.to_dict(), "encoder": encoder_config.to_dict(),
              "dataset": dataset.describe(), "global_batch_size": global_batch, "steps_per_epoch": steps_per_epoch,
              "total_steps": total_steps}
    schedule = Schedule(total_steps, config.run.log_every, config.run.checkpoint_every, config.run.keep_checkpoints)
    evaluate = (lambda: online(unwrap(accelerator, model).encoder)) if online is not None else None
    metrics = train(trainer, accelerator, run_dir, resume, record, schedule,
                    f"dimctl pretrain --out {run_dir} --resume", on_progress, should_stop, evaluate,
                    config.run.eval_every)
    return PretrainResult(run_dir / ENCODER_FILE, total_steps, metrics, accelerator.is_main_process)


class PretrainTrainer(Trainer):
    """One pretraining step of any --method: a batch by (seed, epoch) order, its losses
    (``step_losses``), one backward and one update of both parameter groups — checked before the
    update on the CPU, on the device on a GPU (train/guard.py)."""

    def __init__(self, config: PretrainConfig, accelerator: Accelerator, dataset: ImageDataset | StreamingFolder,
                 model: nn.Module, discriminator: nn.Module | None, optimiser, steps_per_epoch: int,
                 encoder_config: EncoderConfig, total_steps: int):
        self.config, self.accelerator, self.dataset = config, accelerator, dataset
        self.encoder_config, self.total_steps = encoder_config, total_steps
        self.method = METHODS[config.objective.method]
        self.model, self.discriminator, self.optimiser = model, discriminator, optimiser
        self.steps_per_epoch = steps_per_epoch
        self.images_per_step = config.optimiser.batch_size * accelerator.num_processes
        self.streamed = isinstance(dataset, StreamingFolder)
        self.n = dataset.num_train if self.streamed else dataset.train_images.shape[0]
        self.images = None if self.streamed else dataset.train_images.to(accelerator.device)
        self.memory_format = torch.channels_last if config.run.channels_last else torch.contiguous_format
        self.order = EpochOrder(self.n, config.run.seed, accelerator.device)
        self.batches_epoch, self.batches, self.indices = -1, None, None
        self.losses: StepLosses | None = None
        self.skipped = 0  # steps left out under --nan-policy skip
        # Under fp16 loss scaling, overflowing gradients are expected now and then; the scaler skips
        # those updates itself, so only the loss is checked.
        self.check_gradients = accelerator.scaler is None
        # On a GPU the checks run on the device and are read only at log steps and checkpoints.
        device = accelerator.device
        self.deferred = (DeferredGuard(device, config.run.nan_policy)
                         if defer_checks(device) and fused_optimiser(optimiser) else None)
        model.train()

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def _batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self.batches_epoch:  # the rest of the epoch's batches, drawn as the steps take them
            config, rank = self.config, self.accelerator.process_index
            order, self.batches_epoch = self.order(epoch), epoch
            starts = [rank_batch_start(p, self.images_per_step, rank, config.optimiser.batch_size)
                      for p in range(position, self.steps_per_epoch)]
            self.indices = (order[s:s + config.optimiser.batch_size] for s in starts)
            if self.streamed:
                batches = [order[s:s + config.optimiser.batch_size].tolist() for s in starts]
                self.batches = stream_batches(self.dataset, batches, self.accelerator.device, config.data.workers)
            else:
                self.batches = (self.images[order[s:s + config.optimiser.batch_size]] for s in starts)
        return next(self.batches), next(self.indices)

    def step(self, step: int) -> None:
        config, accelerator, optimiser = self.config, self.accelerator, self.optimiser
        batch, index = self._batch(step)
        x = normalise(augment(batch, config.data.crop_padding, config.data.hflip, crop_size=config.data.crop_size)
                      ).contiguous(memory_format=self.memory_format)
        done = step + 1
        self.losses = losses = step_losses(self.model, self.discriminator, x, config, accelerator, index, self.method)
        if self.deferred is not None:
            optimiser.zero_grad(set_to_none=True)
            accelerator.backward(losses.total)
            gradients = _grad_norm(self.model, self.discriminator) if self.check_gradients else None
            # With fp16 loss scaling the scaler sets found_inf itself (a NaN loss gives NaN gradients).
            skip = self.deferred.flag(done, losses.total, gradients)
            if accelerator.scaler is None:
                optimiser.optimizer.found_inf = skip
            optimiser.step()
            return
        # Losses and gradients are checked before any update, so a bad step never reaches the
        # weights or a checkpoint.
        gradient_norm = (lambda: _grad_norm(self.model, self.discriminator)) if self.check_gradients else None
        if not checked_update(accelerator, optimiser, losses.total, gradient_norm, config.run.nan_policy, done,
                              lambda: nonfinite_loss(losses.total, losses.terms)):
            self.skipped += 1

    def settle(self, done: int) -> None:
        if self.deferred is not None:
            self.skipped = self.deferred.settle(done)

    def publish(self, run_dir: Path, metrics: dict[str, float]) -> None:
        """RUN/encoder.safetensors, then the method's companions (which name the encoder)."""
        bare_model, encoder_path = unwrap(self.accelerator, self.model), run_dir / ENCODER_FILE
        dataset, training = self.dataset.describe(), self.config.to_dict()
        save_encoder(encoder_path, bare_model.encoder, self.encoder_config, dataset, step=self.total_steps,
                     training=training)
        publish_companions(bare_model, run_dir, encoder_path, dataset, self.total_steps, self.config)

    def metrics(self) -> dict[str, float]:
        losses = self.losses
        return {"loss": losses.method.item(), **{k: v.item() for k, v in losses.terms.items()},
                "skipped_steps": self.skipped}


def publish_companions(model: nn.Module, run_dir: Path, encoder_path: Path, dataset: dict, step: int,
                       config: PretrainConfig) -> None:
    """The networks a method trains beside the encoder, as their own artifacts (its entry's
    ``companions``: an autoencoder's decoder.safetensors, which `dimctl reconstruct --decoder`
    scores; BiGAN's generator.safetensors, which `dimctl generate sample` draws from)."""
    run = PublishedRun(encoder_path, dataset, step, {**config.to_dict(), "trained_with": "pretrain"})
    made = METHODS[config.objective.method].companions
    for companion in made:
        companion.save(model, run_dir / companion.file, run)
    for file in companion_files() - {c.file for c in made}:
        # left by an earlier --force'd run of another method: it belongs to that run's encoder
        (run_dir / file).unlink(missing_ok=True)


def _check_same_precision(accelerator: Accelerator, precision: str) -> None:
    """Each process resolves ``--precision auto`` itself (on some CPUs by timing a matmul,
    dimctl/precision.py); processes that disagree would train different programs, so refuse."""
    index = torch.tensor([PRECISIONS.index(precision)], device=accelerator.device)
    chosen = {PRECISIONS[i] for i in accelerator.gather(index).tolist()}
    if len(chosen) > 1:
        raise UsageError(f"the processes resolved --precision auto differently ({', '.join(sorted(chosen))}); "
                         f"pass --precision fp32 or --precision bf16")


def _grad_norm(model: nn.Module, discriminator: nn.Module | None) -> torch.Tensor:
    norm = grad_norm(model)
    return norm + grad_norm(discriminator) if discriminator is not None else norm


def fused_optimiser(optimiser) -> bool:
    inner = getattr(optimiser, "optimizer", optimiser)  # under Accelerate's wrapper
    return bool(inner.defaults.get("fused"))
