"""Training an image generator (paper App. A.8–A.9): implicit prior matching (IE), NS-GAN-CP or
WGAN-GP, on the same ResNet generator and critic/encoder.

    dimctl generate train --dataset digits --method ie --steps 2000 --out runs/gen-ie

One Accelerate code path, as pretraining (train/loop.py): the training images live on the device
as uint8, batches are drawn by index in an order fixed by (seed, epoch), checkpoints are
Accelerate state folders (train/checkpoint.py) and ``--resume`` continues from the newest.

A step is ``critic_steps`` updates of the critic side (the IE encoder and its two 1-D
discriminators, or a GAN's critic), each on a fresh real batch and a fresh generated one, then one
update of the generator. Every loss and gradient is checked before its update, so a non-finite
value never reaches the weights or a checkpoint. Every ``sample_every`` steps the generator, in
eval mode, draws a grid from a fixed noise batch into RUN/samples/. At the end the generator's
batch-norm running statistics are recomputed exactly for its final weights (as the mean over
fresh batches), so its eval-mode samples match what it was trained to produce, and it is
published as RUN/generator.safetensors.
"""

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from PIL import Image
from torch import nn
from torch.optim.swa_utils import update_bn

from dimctl.data.dataset import ImageDataset
from dimctl.data.transforms import normalise
from dimctl.errors import Interrupted, NonFiniteLoss, UsageError
from dimctl.io.artifacts import save_generator
from dimctl.io.atomic import atomic_path, write_text
from dimctl.io.images import GRID_PADDING, GRID_PAD_VALUE
from dimctl.models.generators import DEFAULT_Z_DIM, IMAGE_SIZES, CriticConfig, GeneratorConfig, build_generator
from dimctl.objectives.generative import DEFAULT_CRITIC_STEPS, DEFAULT_PENALTY, METHODS, build_objective
from dimctl.train import checkpoint
from dimctl.train.guard import grad_norm
from dimctl.train.loop import _any_process, _check_same_world, _drop_metrics_after, _epoch_order, unwrap

GRID_SIDE = 8  # training grids are 8 × 8 samples of one fixed noise batch
BN_REFRESH_BATCHES = 20  # fresh noise batches that recompute the published generator's BN statistics


@dataclass(frozen=True)
class GenerateConfig:
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    method: str = "ie"  # ie | nsgan-cp | wgan-gp
    image_size: int = 32  # 32 or 64: which ResNet variant
    z_dim: int = DEFAULT_Z_DIM
    width: int | None = None  # channels of generator and critic (None: Gulrajani et al.'s, 128 or 64)
    steps: int = 2000  # generator updates
    batch_size: int = 64
    critic_steps: int | None = None  # critic updates per generator update (None: 5 for wgan-gp, else 1)
    lr: float = 2e-4
    adam_beta1: float = 0.0  # Gulrajani et al.'s Adam, for every method ("identical training procedures")
    adam_beta2: float = 0.9
    penalty: float | None = None  # contractive (ie, nsgan-cp) or gradient (wgan-gp) penalty weight
    mu_real: float = 0.0  # IE: the encoder's target mean for real images (Eq. 13) ...
    mu_fake: float = 1.0  # ... and for generated ones; their distance sets how much the modes overlap
    clip_norm: float = 1.0  # IE: gradient-norm clipping of the 1-D discriminators (App. A.9)
    prior_critic_lr: float = 5e-3  # IE: their learning rate; they must keep up with the encoder
    prior_critic_penalty: float = 1.0  # IE: their contractive penalty (the authors' code penalises them too)
    seed: int = 0
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    cpu: bool = False

    def resolved(self) -> "GenerateConfig":
        """Method defaults filled in, so config.json and the artifact hold every number."""
        return GenerateConfig(**{
            **asdict(self),
            "critic_steps": self.critic_steps if self.critic_steps is not None else DEFAULT_CRITIC_STEPS.get(self.method, 1),
            "penalty": self.penalty if self.penalty is not None else DEFAULT_PENALTY.get(self.method, 0.0),
            "width": self.generator_config(1).width,
        })

    def to_dict(self) -> dict:
        return asdict(self)

    def generator_config(self, channels: int) -> GeneratorConfig:
        return GeneratorConfig(image_size=self.image_size, channels=channels, z_dim=self.z_dim, width=self.width)

    def critic_config(self, channels: int) -> CriticConfig:
        return CriticConfig(image_size=self.image_size, channels=channels, width=self.generator_config(channels).width)

    def validate(self) -> "GenerateConfig":
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method!r} is not one of: {', '.join(METHODS)}")
        if self.image_size not in IMAGE_SIZES:
            raise UsageError(f"--image-size {self.image_size}: the ResNet generator makes "
                             f"{' or '.join(map(str, IMAGE_SIZES))}-pixel images")
        for name in ("steps", "sample_every", "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be ≥ 0")
        if self.batch_size < 2:
            raise UsageError("--batch-size must be at least 2 (the generator's batch norm needs two images)")
        if self.z_dim < 1 or (self.width is not None and self.width < 1) or self.lr <= 0:
            raise UsageError("--z-dim, --width and --lr must be positive")
        if self.critic_steps is not None and self.critic_steps < 1:
            raise UsageError("--critic-steps must be at least 1")
        if (self.penalty is not None and self.penalty < 0) or self.prior_critic_penalty < 0:
            raise UsageError("--penalty and --prior-critic-penalty must be ≥ 0")
        if self.clip_norm <= 0 or self.prior_critic_lr <= 0:
            raise UsageError("--clip-norm and --prior-critic-lr must be positive")
        return self


@dataclass
class GenerateProgress:
    step: int
    total_steps: int
    metrics: dict[str, float]


@dataclass
class GenerateResult:
    generator_path: Path
    steps: int
    final_metrics: dict[str, float]
    is_main_process: bool = True


def fixed_noise(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The same z for a given (n, z_dim, seed) on every machine: drawn on the CPU by its own generator."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate_images(generator: nn.Module, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 images (N, C, H, W), the form datasets are held in, from ``z`` in eval mode."""
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    out = []
    for start in range(0, z.shape[0], batch_size):
        x = generator(z[start:start + batch_size].to(device))
        out.append(x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).cpu())
    generator.train(was_training)
    return torch.cat(out) if out else torch.zeros((0,), dtype=torch.uint8)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of the most nearly square grid for n images."""
    columns = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / columns), columns


def save_grid(path: str | Path, images: torch.Tensor) -> Path:
    """uint8 images (N, C, H, W) as one PNG grid, rows × columns from ``grid_shape``, 2-pixel grey
    gaps; a grey PNG for 1-channel images (a third of the size of torchvision's RGB one)."""
    _, columns = grid_shape(images.shape[0])
    from torchvision.utils import make_grid  # here, not at import: torchvision costs seconds of start-up

    grid = make_grid(images.float() / 255, nrow=columns, padding=GRID_PADDING, pad_value=GRID_PAD_VALUE)
    array = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()  # as save_image rounds
    picture = Image.fromarray(array[:, :, 0], "L") if images.shape[1] == 1 else Image.fromarray(array, "RGB")
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")  # the temporary name ends in .tmp: name the format
    return Path(path)


def _check(loss: torch.Tensor, terms: dict[str, torch.Tensor], modules: list[nn.Module], step: int, who: str,
           accelerator: Accelerator) -> None:
    """Raise NonFiniteLoss if the loss or the gradients (already computed) are not finite."""
    bad = None
    if not torch.isfinite(loss):
        bad = f"{who} loss term {next((k for k, v in terms.items() if not torch.isfinite(v)), 'total')} became " \
              f"{next((v.item() for v in terms.values() if not torch.isfinite(v)), loss.item())}"
    elif accelerator.scaler is None and not torch.isfinite(sum(grad_norm(m) for m in modules)):
        bad = f"the {who} gradients became non-finite"
    if bad is not None:
        raise NonFiniteLoss(f"{bad} at step {step}; no update was made and the last checkpoint is intact "
                            f"— lower --lr or raise --penalty, then --resume")


def train_generator(config: GenerateConfig, dataset: ImageDataset, run_dir: Path, resume: bool = False,
                    on_progress: Callable[[GenerateProgress], None] | None = None,
                    accelerator: Accelerator | None = None,
                    should_stop: Callable[[], bool] | None = None) -> GenerateResult:
    """Train, checkpoint and publish the generator. ``should_stop`` is polled after every step
    (the CLI sets it from SIGINT/SIGTERM): when it turns true, a checkpoint is written and
    ``Interrupted`` is raised."""
    config = config.validate().resolved()
    if dataset.image_size != config.image_size:
        raise UsageError(f"{dataset.name} was loaded at {dataset.image_size}×{dataset.image_size}; "
                         f"the generator makes {config.image_size}×{config.image_size}")
    accelerator = accelerator or Accelerator(cpu=config.cpu)
    device, world, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
    n = dataset.train_images.shape[0]
    global_batch = config.batch_size * world
    if n < global_batch:
        raise UsageError(f"{dataset.name} has {n} training images, fewer than one batch of {global_batch}; "
                         f"lower --batch-size")
    batches_per_epoch = n // global_batch

    # Same seed, same initial networks on every process; then per-process noise streams.
    set_seed(config.seed)
    generator_config, critic_config = config.generator_config(dataset.channels), config.critic_config(dataset.channels)
    generator = build_generator(generator_config)
    objective = build_objective(config.method, critic_config, config.penalty, config.mu_real, config.mu_fake,
                                config.prior_critic_penalty)
    set_seed(config.seed, device_specific=True)
    betas = (config.adam_beta1, config.adam_beta2)
    generator_optimiser = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas)
    prior_critic_ids = {id(p) for p in objective.prior_critic_parameters()}
    groups = [{"params": [p for p in objective.parameters() if id(p) not in prior_critic_ids]}]
    if prior_critic_ids:
        groups.append({"params": objective.prior_critic_parameters(), "lr": config.prior_critic_lr})
    critic_optimiser = torch.optim.Adam(groups, lr=config.lr, betas=betas)
    generator, objective, generator_optimiser, critic_optimiser = accelerator.prepare(
        generator, objective, generator_optimiser, critic_optimiser)
    bare_generator, bare_objective = unwrap(accelerator, generator), unwrap(accelerator, objective)
    prior_critics = bare_objective.prior_critic_parameters()

    if resume and checkpoint.list_checkpoints(run_dir):
        _check_same_world(run_dir, world)
    start_step = checkpoint.load_latest(accelerator, run_dir) if resume else 0
    metrics_path = run_dir / "metrics.jsonl"
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.json", json.dumps({
            "command": "generate train", "config": config.to_dict(), "generator": generator_config.to_dict(),
            "critic": critic_config.to_dict(), "dataset": dataset.describe(), "num_processes": world,
            "device": str(device), "global_batch_size": global_batch,
        }, indent=2) + "\n")
        _drop_metrics_after(metrics_path, start_step)

    images = dataset.train_images.to(device)
    grid_noise = fixed_noise(GRID_SIDE * GRID_SIDE, config.z_dim, config.seed)
    order, order_epoch = None, -1

    def real_batch(draw: int) -> torch.Tensor:
        # The draw-th global batch since the start; its order depends only on (seed, epoch), so a
        # resumed run sees the same batches. Processes take their slices in rank order.
        nonlocal order, order_epoch
        epoch, position = divmod(draw, batches_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = _epoch_order(n, config.seed, epoch, device), epoch
        start = position * global_batch + rank * config.batch_size
        return normalise(images[order[start:start + config.batch_size]])

    def noise() -> torch.Tensor:
        return torch.randn(config.batch_size, config.z_dim, device=device)

    metrics: dict[str, float] = {}
    window_start, window_images = time.perf_counter(), 0
    generator.train()
    objective.train()
    for step in range(start_step, config.steps):
        done = step + 1
        for k in range(config.critic_steps):
            real = real_batch(step * config.critic_steps + k)
            with torch.no_grad():
                fake = generator(noise())
            critic_loss, critic_terms = objective(real, fake)
            critic_optimiser.zero_grad(set_to_none=True)
            accelerator.backward(critic_loss)
            _check(critic_loss, critic_terms, [objective], done, "critic", accelerator)
            if prior_critics:
                accelerator.clip_grad_norm_(prior_critics, config.clip_norm)
            critic_optimiser.step()

        generator_loss, _ = bare_objective.generator_loss(generator(noise()))
        generator_optimiser.zero_grad(set_to_none=True)
        accelerator.backward(generator_loss)
        _check(generator_loss, {}, [generator], done, "generator", accelerator)
        generator_optimiser.step()
        window_images += global_batch * (config.critic_steps + 1)

        if done % max(config.log_every, 1) == 0 or done == config.steps:
            elapsed = time.perf_counter() - window_start
            metrics = {"critic_loss": critic_loss.item(), "generator_loss": generator_loss.item(),
                       **{k: v.item() for k, v in critic_terms.items()},
                       "images_per_s": window_images / elapsed if elapsed > 0 else 0.0}
            window_start, window_images = time.perf_counter(), 0
            if accelerator.is_main_process:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps({"step": done, **metrics}) + "\n")
        if accelerator.is_main_process and config.sample_every and done % config.sample_every == 0:
            save_grid(run_dir / "samples" / f"step_{done:08d}.png", generate_images(bare_generator, grid_noise))
        if on_progress is not None and accelerator.is_main_process:
            on_progress(GenerateProgress(done, config.steps, metrics))
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done != config.steps:
            checkpoint.save_checkpoint(accelerator, run_dir, done, config.keep_checkpoints)
        if should_stop is not None and _any_process(accelerator, should_stop()) and done != config.steps:
            checkpoint.save_checkpoint(accelerator, run_dir, done, config.keep_checkpoints)
            raise Interrupted(f"stopped at step {done}/{config.steps} with a checkpoint; continue with "
                              f"`dimctl generate train --out {run_dir} --resume` and the same settings")

    checkpoint.save_checkpoint(accelerator, run_dir, config.steps, config.keep_checkpoints)
    generator_path = run_dir / "generator.safetensors"
    if accelerator.is_main_process:
        if config.steps:
            # Running statistics trail the weights (momentum 0.1 over the last updates); replace
            # them by the exact mean over fresh batches of the final generator. Seeded on its own,
            # so it does not disturb the training noise a later --resume would continue.
            refresh = fixed_noise(BN_REFRESH_BATCHES * config.batch_size, config.z_dim, config.seed + 1).to(device)
            update_bn(list(refresh.split(config.batch_size)), bare_generator)
        save_grid(run_dir / "samples.png", generate_images(bare_generator, grid_noise))
        save_generator(generator_path, bare_generator, generator_config, dataset.describe(), step=config.steps,
                       training={**config.to_dict(), "final_metrics": metrics})
    accelerator.wait_for_everyone()
    return GenerateResult(generator_path, config.steps, metrics, accelerator.is_main_process)
