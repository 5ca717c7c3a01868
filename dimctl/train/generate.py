"""Training an image generator (paper App. A.8–A.9): implicit prior matching (IE), NS-GAN-CP or
WGAN-GP, on the same ResNet generator and critic/encoder.

    dimctl generate train --dataset digits --method ie --steps 2000 --out runs/gen-ie

It runs on the engine pretraining runs on (train/engine.py): the training images live on the
device as uint8, batches are drawn by index in an order fixed by (seed, epoch), checkpoints are
Accelerate state folders (train/checkpoint.py) and ``--resume`` continues from the newest.

A step is ``critic_steps`` updates of the critic side (the IE encoder and its two 1-D
discriminators, or a GAN's critic), each on a fresh real batch and a fresh generated one, then one
update of the generator. Every loss and gradient is checked before its update (train/guard.py, as
pretraining's), so a non-finite value never reaches the weights or a checkpoint: the run stops
naming it, or with ``--nan-policy skip`` leaves that update out and counts the step. Every
``sample_every`` steps the generator, in eval mode, draws a grid from a fixed noise batch into
RUN/samples/. At the end the generator's batch-norm running statistics are recomputed exactly for
its final weights (as the mean over fresh batches), so its eval-mode samples match what it was
trained to produce, and it is published as RUN/generator.safetensors.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.optim.swa_utils import update_bn

from dimctl.data.dataset import ImageDataset
from dimctl.data.order import EpochOrder, rank_batch_start
from dimctl.data.transforms import normalise
from dimctl.errors import UsageError
from dimctl.io.artifacts import save_generator
from dimctl.io.images import save_grid
from dimctl.models.generators import (DEFAULT_Z_DIM, IMAGE_SIZES, CriticConfig, GeneratorConfig, build_generator,
                                      fixed_noise, generate_images)
from dimctl.models.size import check_training_fits, meta_activations, meta_values, training_bytes
from dimctl.objectives.generative import DEFAULT_CRITIC_STEPS, DEFAULT_PENALTY, GENERATOR_METHODS, build_objective
from dimctl.settings import SHARED_HELP, declared, setting
from dimctl.train.config import Bookkeeping, DataSource
from dimctl.train.distributed import accelerator_cpu
from dimctl.train.engine import Progress, Schedule, Trainer, global_batch_of, train, unwrap
from dimctl.train.guard import checked_update, grad_norm, nonfinite_loss
from dimctl.train.trackers import tracker_arguments

GRID_SIDE = 8  # training grids are 8 × 8 samples of one fixed noise batch
BN_REFRESH_BATCHES = 20  # fresh noise batches that recompute the published generator's BN statistics


METHOD_HELP = ("ie: the paper's implicit prior matching (an encoder pushed to N(mu-real, 1) on real and N(mu-fake, 1) "
               "on generated images; the generator moves its mode's mean to mu-real); nsgan-cp: non-saturating GAN "
               "with the contractive penalty; wgan-gp: WGAN with gradient penalty.")


@dataclass(frozen=True)
class GenerateConfig(Bookkeeping, DataSource):
    """Settings of `dimctl generate train`, each with its option's help (the command's options are derived from these)."""

    method: str = setting("ie", METHOD_HELP)
    image_size: int = setting(32, "32 or 64: Gulrajani et al.'s 32×32 or 64×64 ResNet; images load at this size.",
                              positive=True)
    z_dim: int = setting(DEFAULT_Z_DIM, "Size of the generator's input noise z ~ N(0, I).", positive=True)
    width: int | None = setting(None, "Channels of generator and critic (default Gulrajani et al.'s: 128 at 32×32, 64 "
                                      "at 64×64; 16–32 for quick CPU runs).", positive=True)
    steps: int = setting(2000, "Generator updates (each after --critic-steps critic updates).", resumable=True,
                         minimum=0)
    batch_size: int = setting(64, "Real and generated images per update, per process.")
    critic_steps: int | None = setting(None, f"Critic updates per generator update (default: {DEFAULT_CRITIC_STEPS}).",
                                       positive=True)
    lr: float = setting(2e-4, "Adam learning rate of every network (betas 0, 0.9, as Gulrajani et al.).", positive=True)
    # Gulrajani et al.'s Adam, for every method ("identical training procedures")
    adam_beta1: float = setting(0.0, "Adam's β1.", cli=False)
    adam_beta2: float = setting(0.9, "Adam's β2.", cli=False)
    penalty: float | None = setting(None, f"Contractive penalty (ie, nsgan-cp) or gradient penalty λ (wgan-gp) "
                                          f"(default: {DEFAULT_PENALTY}).", minimum=0)
    mu_real: float = setting(0.0, "ie: the encoder's target mean for real images.")
    mu_fake: float = setting(1.0, "ie: its target mean for generated images (unit variances; the gap sets how much "
                                  "the modes overlap).")
    clip_norm: float = setting(1.0, "ie: gradient-norm clipping of the two 1-D discriminators.", positive=True)
    prior_critic_lr: float = setting(5e-3, "ie: Adam learning rate of the two 1-D discriminators (they must keep up "
                                           "with the encoder).", positive=True)
    prior_critic_penalty: float = setting(1.0, "ie: contractive penalty on the two 1-D discriminators (the authors' "
                                               "code penalises them too).", minimum=0)
    seed: int = setting(0, "Seed for initialisation, data order and noise.")
    sample_every: int = setting(500, "Write RUN/samples/step_N.png (8×8, fixed noise) every N steps (0: only "
                                     "RUN/samples.png at the end).", resumable=True, minimum=0)
    log_every: int = setting(10, SHARED_HELP["log_every"], resumable=True, minimum=0)

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
        if self.method not in GENERATOR_METHODS:
            raise UsageError(f"--method {self.method!r} is not one of: {', '.join(GENERATOR_METHODS)}")
        self.check_declared()  # every setting's declared range and choice
        if self.image_size not in IMAGE_SIZES:
            raise UsageError(f"--image-size {self.image_size}: the ResNet generator makes "
                             f"{' or '.join(map(str, IMAGE_SIZES))}-pixel images")
        if self.batch_size < 2:
            raise UsageError("--batch-size must be at least 2 (the generator's batch norm needs two images)")
        return self


RESUMABLE = frozenset(f.name for f in declared(GenerateConfig) if f.metadata["resumable"])  # --resume may change these


SIZE_SETTINGS = ("width", "z_dim", "batch_size")  # what sets the memory a run needs


def check_networks_fit(config: GenerateConfig, device: torch.device, channels: int) -> None:
    """Refuse (UsageError naming the flag) a generator and critic whose training cannot fit in
    memory, before either is built: they are first built on the meta device (models/size.py)."""
    def needed(overrides: dict) -> int:
        c = replace(config, **overrides)
        values = meta_values(lambda: (build_generator(c.generator_config(channels)),
                                      build_objective(c.method, c.critic_config(channels), 0.0, 0.0, 1.0, 0.0)))
        activations = meta_activations(lambda: build_generator(c.generator_config(channels)), (c.batch_size, c.z_dim))
        return training_bytes(values, activations)

    given = {name: getattr(config, name) for name in SIZE_SETTINGS}
    check_training_fits(needed, given, asdict(GenerateConfig()), device, "generator and critic")


@dataclass
class GenerateResult:
    generator_path: Path
    steps: int
    final_metrics: dict[str, float]
    is_main_process: bool = True


# What the stop line suggests for a generator's or critic's bad value.
REMEDY = "lower --lr or raise --penalty"


def train_generator(config: GenerateConfig, dataset: ImageDataset, run_dir: Path, resume: bool = False,
                    on_progress: Callable[[Progress], None] | None = None,
                    accelerator: Accelerator | None = None,
                    should_stop: Callable[[], bool] | None = None) -> GenerateResult:
    """Train, checkpoint and publish the generator. ``should_stop`` is polled after steps (the CLI
    sets it from SIGINT/SIGTERM): when it turns true, a checkpoint is written and ``Interrupted``
    is raised (train/engine.py)."""
    config = config.validate().resolved()
    if dataset.image_size != config.image_size:
        raise UsageError(f"{dataset.name} was loaded at {dataset.image_size}×{dataset.image_size}; "
                         f"the generator makes {config.image_size}×{config.image_size}")
    accelerator = accelerator or Accelerator(cpu=accelerator_cpu(config.cpu),
                                             **tracker_arguments(config.log_with, run_dir))
    global_batch = global_batch_of(dataset.name, dataset.train_images.shape[0], config.batch_size, accelerator)

    check_networks_fit(config, accelerator.device, dataset.channels)
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

    trainer = GeneratorTrainer(config, accelerator, dataset, run_dir, generator, objective,
                               generator_optimiser, critic_optimiser, generator_config)
    record = {"command": "generate train", "config": config.to_dict(), "generator": generator_config.to_dict(),
              "critic": critic_config.to_dict(), "dataset": dataset.describe(), "global_batch_size": global_batch}
    schedule = Schedule(config.steps, config.log_every, config.checkpoint_every, config.keep_checkpoints)
    metrics = train(trainer, accelerator, run_dir, resume, record, schedule,
                    f"dimctl generate train --out {run_dir} --resume", on_progress, should_stop, outputs=("samples",))
    return GenerateResult(run_dir / "generator.safetensors", config.steps, metrics, accelerator.is_main_process)


class GeneratorTrainer(Trainer):
    """One generator step: ``critic_steps`` critic updates, each on a fresh real batch (the
    draw-th global batch since the start, in (seed, epoch) order) and a fresh generated one, then
    one generator update. Every loss and gradient is checked before its update (``checked_update``)."""

    def __init__(self, config: GenerateConfig, accelerator: Accelerator, dataset: ImageDataset, run_dir: Path,
                 generator: nn.Module, objective: nn.Module, generator_optimiser, critic_optimiser,
                 generator_config: GeneratorConfig):
        self.config, self.accelerator, self.run_dir = config, accelerator, run_dir
        self.generator_config, self.dataset_record = generator_config, dataset.describe()
        self.generator, self.objective = generator, objective
        self.generator_optimiser, self.critic_optimiser = generator_optimiser, critic_optimiser
        self.bare_generator, self.bare_objective = unwrap(accelerator, generator), unwrap(accelerator, objective)
        self.prior_critics = self.bare_objective.prior_critic_parameters()
        self.images = dataset.train_images.to(accelerator.device)
        self.global_batch = config.batch_size * accelerator.num_processes
        self.batches_per_epoch = self.images.shape[0] // self.global_batch
        self.images_per_step = self.global_batch * (config.critic_steps + 1)
        self.grid_noise = fixed_noise(GRID_SIDE * GRID_SIDE, config.z_dim, config.seed)
        self.order = EpochOrder(self.images.shape[0], config.seed, accelerator.device)
        self.last: dict[str, torch.Tensor] = {}
        self.skipped = 0  # steps with an update left out under --nan-policy skip
        generator.train()
        objective.train()

    def learning_rates(self) -> dict[str, float]:
        """The generator's and the critic's (and the 1-D prior critics' where ie has them)."""
        rates = {"lr": float(self.generator_optimiser.param_groups[0]["lr"]),
                 "critic_lr": float(self.critic_optimiser.param_groups[0]["lr"])}
        if len(self.critic_optimiser.param_groups) > 1:
            rates["prior_critic_lr"] = float(self.critic_optimiser.param_groups[1]["lr"])
        return rates

    def epoch_of(self, step: int) -> int:
        return step * self.config.critic_steps // self.batches_per_epoch

    def _real_batch(self, draw: int) -> torch.Tensor:
        epoch, position = divmod(draw, self.batches_per_epoch)
        start = rank_batch_start(position, self.global_batch, self.accelerator.process_index, self.config.batch_size)
        return normalise(self.images[self.order(epoch)[start:start + self.config.batch_size]])

    def _noise(self) -> torch.Tensor:
        return torch.randn(self.config.batch_size, self.config.z_dim, device=self.accelerator.device)

    def step(self, step: int) -> None:
        config, accelerator = self.config, self.accelerator
        done, skipped = step + 1, False
        clip = ((lambda: accelerator.clip_grad_norm_(self.prior_critics, config.clip_norm))
                if self.prior_critics else None)
        for k in range(config.critic_steps):
            real = self._real_batch(step * config.critic_steps + k)
            with torch.no_grad():
                fake = self.generator(self._noise())
            critic_loss, critic_terms = self.objective(real, fake)
            skipped |= not checked_update(
                accelerator, self.critic_optimiser, critic_loss, lambda: grad_norm(self.objective), config.nan_policy,
                done, lambda: nonfinite_loss(critic_loss, critic_terms, "critic", "total"), clip, REMEDY, "critic")

        generator_loss, _ = self.bare_objective.generator_loss(self.generator(self._noise()))
        skipped |= not checked_update(
            accelerator, self.generator_optimiser, generator_loss, lambda: grad_norm(self.generator), config.nan_policy,
            done, lambda: nonfinite_loss(generator_loss, {}, "generator", "total"), None, REMEDY, "generator")
        self.skipped += skipped
        self.last = {"critic_loss": critic_loss, "generator_loss": generator_loss, **critic_terms}

    def metrics(self) -> dict[str, float]:
        return {**{k: v.item() for k, v in self.last.items()}, "skipped_steps": self.skipped}

    def publish(self, run_dir: Path, metrics: dict[str, float]) -> None:
        """RUN/samples.png and RUN/generator.safetensors, its batch-norm statistics those of its final weights."""
        config, bare_generator = self.config, self.bare_generator
        if config.steps:
            # Running statistics trail the weights (momentum 0.1 over the last updates); replace
            # them by the exact mean over fresh batches of the final generator. Seeded on its own,
            # so it does not disturb the training noise a later --resume would continue.
            refresh = fixed_noise(BN_REFRESH_BATCHES * config.batch_size, config.z_dim, config.seed + 1)
            update_bn(list(refresh.to(self.accelerator.device).split(config.batch_size)), bare_generator)
        save_grid(run_dir / "samples.png", generate_images(bare_generator, self.grid_noise))
        save_generator(run_dir / "generator.safetensors", bare_generator, self.generator_config, self.dataset_record,
                       step=config.steps, training={**config.to_dict(), "final_metrics": metrics})

    def after_step(self, done: int, is_main_process: bool) -> None:
        if is_main_process and self.config.sample_every and done % self.config.sample_every == 0:
            save_grid(self.run_dir / "samples" / f"step_{done:08d}.png",
                      generate_images(self.bare_generator, self.grid_noise))
