"""Semi-supervised fine-tuning (the paper's Table 2 "SS" column, §4.1).

A small classifier goes on the encoder's last convolutional layer (the ``conv`` tap) and the
whole stack is trained with labels: the paper's "fine-tuning the complete encoder by adding a
small neural network on top of the last convolutional layer". The classifier is the paper's
probe network (linear 200 → dropout 0.1 → BN → ReLU → linear, as in the authors' code), trained
with Adam (lr 1e-4) on a seeded, class-balanced fraction of the training labels. The layers
after ``conv`` (fc and Y) take no part and keep their pretrained weights.

It runs on the engine pretraining runs on (train/engine.py): each step's batch is split across
processes in rank order and DDP averages the gradients; RUN/config.json, RUN/metrics.jsonl (one
line per epoch: the last step's loss, images/s), checkpoints every ``checkpoint_every`` steps, a cooperative
stop on SIGINT/SIGTERM and ``--resume``; a non-finite loss or gradient never reaches the weights
(``--nan-policy stop|skip``).

    dimctl finetune runs/dim-l/encoder.safetensors --labels-fraction 0.1 --out runs/ft
"""

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import nn

from dimctl.data.dataset import ImageDataset
from dimctl.data.order import EpochOrder, rank_batch_start
from dimctl.data.transforms import augment, normalise
from dimctl.errors import UsageError
from dimctl.models.classifier import PAPER_DROPOUT, PAPER_HIDDEN, paper_classifier
from dimctl.models.encoders import Encoder
from dimctl.settings import declared, setting
from dimctl.train.distributed import accelerator_cpu
from dimctl.train.engine import Progress, Schedule, Trainer, train, unwrap
from dimctl.train.config import Bookkeeping
from dimctl.train.guard import checked_update, grad_norm
from dimctl.train.trackers import tracker_arguments


@dataclass(frozen=True)
class FinetuneConfig(Bookkeeping):
    """Settings of `dimctl finetune`, each with its option's help (the command's options are derived from these)."""

    labels_fraction: float = setting(0.1, "Fraction of the training labels to learn from, drawn per class (seeded), "
                                          "in (0, 1].")
    epochs: int = setting(20, "Passes over the labelled subset.", resumable=True, minimum=1)
    lr: float = setting(1e-4, "Adam learning rate of the encoder and the classifier.",
                        positive=True)  # the authors': Adam, 1e-4
    batch_size: int = setting(64, "Labelled images per step per process (at least 2, for BatchNorm).")
    seed: int = setting(0, "Seed for the labelled subset, the classifier's initialisation and the data order.")
    hidden: int = setting(PAPER_HIDDEN, "Hidden units of the classifier.", cli=False, positive=True)  # models/classifier.py
    dropout: float = setting(PAPER_DROPOUT, "Dropout of the classifier.", cli=False)
    crop_padding: int = setting(0, "Random-crop augmentation padding in pixels (0: off).", minimum=0)
    hflip: bool = setting(False, "Random horizontal flips.", flags=("--hflip/--no-hflip",))
    # the encoder it starts from, so --resume refuses another (the command sets it)
    encoder_sha256: str | None = setting(None, "sha256 of the encoder fine-tuned.", cli=False)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "FinetuneConfig":
        self.check_declared()  # every setting's declared range and choice
        if not 0 < self.labels_fraction <= 1:
            raise UsageError(f"--labels-fraction must be in (0, 1], not {self.labels_fraction}")
        if self.batch_size < 2:
            raise UsageError("--batch-size must be at least 2 (BatchNorm needs two images)")
        if not 0 <= self.dropout < 1:
            raise UsageError("dropout must be in [0, 1)")
        return self


RESUMABLE = frozenset(f.name for f in declared(FinetuneConfig) if f.metadata["resumable"])  # --resume may change these


class ConvClassifier(nn.Module):
    """Encoder up to ``conv``, then the small classifier."""

    def __init__(self, encoder: Encoder, conv_features: int, hidden: int, dropout: float, classes: int):
        super().__init__()
        self.encoder = encoder
        self.classifier = paper_classifier(conv_features, classes, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder.encode_conv(x).flatten(1))


@dataclass
class FinetuneResult:
    encoder: Encoder  # the fine-tuned encoder (unwrapped, on the training device)
    accuracy: float  # test accuracy
    train_accuracy: float  # on the labelled subset, in eval mode, after training
    n_labels: int  # training labels used
    steps: int
    is_main_process: bool = True


def balanced_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Indices of a seeded ``fraction`` of each class's examples (at least one per class), sorted.
    Examples labelled -1 (none) are never chosen."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels[labels >= 0].unique().tolist():
        members = (labels == c).nonzero().flatten()
        k = max(1, round(fraction * members.numel()))
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:k]])
    return torch.cat(chosen).sort().values if chosen else torch.zeros(0, dtype=torch.int64)


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
             batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for start in range(0, images.shape[0], batch_size):
        x = normalise(images[start:start + batch_size].to(device))
        correct += (model(x).argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    return correct / max(1, images.shape[0])


def finetune(encoder: Encoder, dataset: ImageDataset, config: FinetuneConfig, run_dir: Path, resume: bool = False,
             accelerator: Accelerator | None = None,
             on_progress: Callable[[Progress], None] | None = None,
             should_stop: Callable[[], bool] | None = None, resume_command: str | None = None) -> FinetuneResult:
    """Train ``encoder`` (up to conv) and a fresh classifier on a labelled fraction of the train
    split; return the fine-tuned encoder and its test accuracy. Metrics are logged once per epoch."""
    config.validate()
    if dataset.multi_label:
        raise UsageError(f"{dataset.name} has multi-label attributes; finetune needs one class per image")
    if (dataset.test_labels < 0).any():
        raise UsageError(f"{dataset.name}'s test split is not labelled throughout; finetune needs test labels")
    accelerator = accelerator or Accelerator(
        cpu=accelerator_cpu(config.cpu), kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        **tracker_arguments(config.log_with, run_dir))
    device, world = accelerator.device, accelerator.num_processes
    subset = balanced_subset(dataset.train_labels, config.labels_fraction, config.seed)
    global_batch = config.batch_size * world
    if subset.numel() < 2 * world:
        raise UsageError(f"--labels-fraction {config.labels_fraction} leaves {subset.numel()} labelled images; "
                         f"raise it")
    images, labels = dataset.train_images[subset].to(device), dataset.train_labels[subset].to(device)
    classes = max(len(dataset.classes), int(dataset.train_labels.max()) + 1, int(dataset.test_labels.max()) + 1)
    n = images.shape[0]
    # One process keeps the ragged tail; several drop it, so every process steps together.
    steps_per_epoch = math.ceil(n / global_batch) if world == 1 else n // global_batch
    if steps_per_epoch == 0:
        raise UsageError(f"{n} labelled images are fewer than one global batch of {global_batch}; "
                         f"lower --batch-size or raise --labels-fraction")
    total_steps = config.epochs * steps_per_epoch

    set_seed(config.seed)  # the classifier's initial weights
    encoder.to(device)
    with torch.no_grad():
        was_training = encoder.training
        conv_features = encoder.eval().encode_conv(normalise(images[:1])).flatten(1).shape[1]
        encoder.train(was_training)
    model = ConvClassifier(encoder, conv_features, config.hidden, config.dropout, classes)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    model, optimiser = accelerator.prepare(model, optimiser)
    set_seed(config.seed, device_specific=True)  # augmentation differs per process

    trainer = FinetuneTrainer(config, accelerator, model, optimiser, images, labels, steps_per_epoch)
    record = {"command": "finetune", "config": config.to_dict(), "dataset": dataset.describe(), "n_labels": int(n),
              "global_batch_size": global_batch, "steps_per_epoch": steps_per_epoch, "total_steps": total_steps}
    schedule = Schedule(total_steps, steps_per_epoch, config.checkpoint_every, config.keep_checkpoints)
    train(trainer, accelerator, run_dir, resume, record, schedule,
          resume_command or f"dimctl finetune ENCODER --out {run_dir} --resume", on_progress, should_stop)

    bare = unwrap(accelerator, model)
    result = FinetuneResult(
        encoder=bare.encoder,
        accuracy=accuracy(bare, dataset.test_images, dataset.test_labels, device),
        train_accuracy=accuracy(bare, images.cpu(), labels.cpu(), device),
        # Updates made: a one-image ragged tail (one process only) is left out every epoch.
        n_labels=int(n), steps=total_steps - (config.epochs if world == 1 and n % global_batch == 1 else 0),
        is_main_process=accelerator.is_main_process,
    )
    bare.encoder.eval()
    return result


class FinetuneTrainer(Trainer):
    """One fine-tuning step: a labelled batch in (seed, epoch) order, cross-entropy, one update —
    the loss and the gradients checked before it."""

    def __init__(self, config: FinetuneConfig, accelerator: Accelerator, model: nn.Module, optimiser,
                 images: torch.Tensor, labels: torch.Tensor, steps_per_epoch: int):
        self.config, self.accelerator, self.model, self.optimiser = config, accelerator, model, optimiser
        self.images, self.labels, self.steps_per_epoch = images, labels, steps_per_epoch
        self.global_batch = config.batch_size * accelerator.num_processes
        self.order = EpochOrder(images.shape[0], config.seed, accelerator.device)
        self.images_per_step = 0
        self.loss = torch.full((), float("nan"), device=accelerator.device)  # the last update's
        self.skipped_steps = 0  # left out under --nan-policy skip
        model.train()

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def step(self, step: int) -> None:
        config, accelerator, optimiser = self.config, self.accelerator, self.optimiser
        epoch, position = divmod(step, self.steps_per_epoch)
        start = rank_batch_start(position, self.global_batch, accelerator.process_index, config.batch_size)
        index = self.order(epoch)[start:start + config.batch_size]
        self.images_per_step = index.numel() * accelerator.num_processes
        if index.numel() < 2:  # BatchNorm needs two samples; only a ragged tail can be this short
            return
        x = normalise(augment(self.images[index], config.crop_padding, config.hflip))
        with accelerator.autocast():
            loss = nn.functional.cross_entropy(self.model(x).float(), self.labels[index])
        if checked_update(accelerator, optimiser, loss, lambda: grad_norm(self.model), config.nan_policy, step + 1,
                          lambda: f"the loss became {loss.item()}"):
            self.loss = loss.detach()
        else:
            self.skipped_steps += 1

    def metrics(self) -> dict[str, float]:
        # The last step's loss, as pretrain logs it: a mean over the epoch would need its running
        # sum in the checkpoint to come out the same after --resume.
        return {"loss": self.loss.item(), "skipped_steps": self.skipped_steps}
