"""Semi-supervised fine-tuning (the paper's Table 2 "SS" column, §4.1).

A small classifier goes on the encoder's last convolutional layer (the ``conv`` tap) and the
whole stack is trained with labels: the paper's "fine-tuning the complete encoder by adding a
small neural network on top of the last convolutional layer". The classifier is the paper's
probe network (linear 200 → dropout 0.1 → BN → ReLU → linear, as in the authors' code), trained
with Adam (lr 1e-4) on a seeded, class-balanced fraction of the training labels. The layers
after ``conv`` (fc and Y) take no part and keep their pretrained weights.

Accelerate runs the loop, as it does pretraining: each step's batch is split across processes
in rank order and DDP averages the gradients.
"""

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import nn

from dimctl.data.dataset import ImageDataset
from dimctl.data.transforms import augment, normalise
from dimctl.errors import UsageError
from dimctl.models.encoders import Encoder


@dataclass(frozen=True)
class FinetuneConfig:
    labels_fraction: float = 0.1
    epochs: int = 20
    lr: float = 1e-4  # the authors' classifiers: Adam, 1e-4
    batch_size: int = 64
    seed: int = 0
    hidden: int = 200  # the paper's classifier width
    dropout: float = 0.1
    crop_padding: int = 0
    hflip: bool = False
    cpu: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "FinetuneConfig":
        if not 0 < self.labels_fraction <= 1:
            raise UsageError(f"--labels-fraction must be in (0, 1], not {self.labels_fraction}")
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0 or self.hidden < 1 or self.crop_padding < 0:
            raise UsageError("--epochs must be ≥ 1, --batch-size ≥ 2 (BatchNorm), --lr positive")
        if not 0 <= self.dropout < 1:
            raise UsageError("dropout must be in [0, 1)")
        return self


class ConvClassifier(nn.Module):
    """Encoder up to ``conv``, then the small classifier."""

    def __init__(self, encoder: Encoder, conv_features: int, hidden: int, dropout: float, classes: int):
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Sequential(
            nn.Linear(conv_features, hidden), nn.Dropout(dropout), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, classes),
        )

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


@dataclass
class EpochReport:
    epoch: int
    epochs: int
    loss: float
    images_per_s: float


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


def finetune(encoder: Encoder, dataset: ImageDataset, config: FinetuneConfig,
             accelerator: Accelerator | None = None,
             on_epoch: Callable[[EpochReport], None] | None = None) -> FinetuneResult:
    """Train ``encoder`` (up to conv) and a fresh classifier on a labelled fraction of the train
    split; return the fine-tuned encoder and its test accuracy."""
    config.validate()
    if dataset.multi_label:
        raise UsageError(f"{dataset.name} has multi-label attributes; finetune needs one class per image")
    if (dataset.test_labels < 0).any():
        raise UsageError(f"{dataset.name}'s test split is not labelled throughout; finetune needs test labels")
    accelerator = accelerator or Accelerator(
        cpu=config.cpu, kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    device, world, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
    subset = balanced_subset(dataset.train_labels, config.labels_fraction, config.seed)
    global_batch = config.batch_size * world
    if subset.numel() < 2 * world:
        raise UsageError(f"--labels-fraction {config.labels_fraction} leaves {subset.numel()} labelled images; "
                         f"raise it")
    images, labels = dataset.train_images[subset].to(device), dataset.train_labels[subset].to(device)
    classes = max(len(dataset.classes), int(dataset.train_labels.max()) + 1, int(dataset.test_labels.max()) + 1)

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

    n = images.shape[0]
    # One process keeps the ragged tail; several drop it, so every process steps together.
    steps_per_epoch = math.ceil(n / global_batch) if world == 1 else n // global_batch
    if steps_per_epoch == 0:
        raise UsageError(f"{n} labelled images are fewer than one global batch of {global_batch}; "
                         f"lower --batch-size or raise --labels-fraction")
    steps = 0
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch)).to(device)
        started, seen, total_loss, batches = time.perf_counter(), 0, 0.0, 0
        for position in range(steps_per_epoch):
            start = position * global_batch + rank * config.batch_size
            index = order[start:start + config.batch_size]
            if index.numel() < 2:  # BatchNorm needs two samples; only a ragged tail can be this short
                continue
            x = normalise(augment(images[index], config.crop_padding, config.hflip))
            with accelerator.autocast():
                loss = nn.functional.cross_entropy(model(x).float(), labels[index])
            optimiser.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimiser.step()
            steps += 1
            seen += index.numel() * world
            total_loss += loss.item()
            batches += 1
        if on_epoch is not None and accelerator.is_main_process:
            elapsed = time.perf_counter() - started
            on_epoch(EpochReport(epoch + 1, config.epochs, total_loss / max(1, batches),
                                 seen / elapsed if elapsed > 0 else 0.0))

    bare = accelerator.unwrap_model(model)
    test_images, test_labels = dataset.test_images, dataset.test_labels
    result = FinetuneResult(
        encoder=bare.encoder,
        accuracy=accuracy(bare, test_images, test_labels, device),
        train_accuracy=accuracy(bare, images.cpu(), labels.cpu(), device),
        n_labels=int(n), steps=steps, is_main_process=accelerator.is_main_process,
    )
    bare.encoder.eval()
    return result
