"""The in-memory form every dataset loads to."""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch


@dataclass
class ImageDataset:
    """uint8 images (N, C, H, W) and int64 labels for a fixed train/test split.

    Labels are (N,) class indices, -1 where the source has none (an image folder without class
    sub-folders), or (N, K) 0/1 attributes for multi-label data (CelebA's 40); then ``classes``
    names the K attributes.

    ``unlabeled`` loads extra images that have no labels at all (STL-10's 100,000). Only
    pretraining uses them, so they load on demand: ``pretraining_pool()`` is the dataset whose
    train split is train + unlabelled; probes and fine-tuning see the labelled splits only.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str] = field(default_factory=list)
    source: str = ""  # where the files were read from, for provenance
    unlabeled: Callable[[], torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self):
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise ValueError(f"{split} images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
            if labels.shape[0] != images.shape[0]:
                raise ValueError(f"{split}: {images.shape[0]} images but {labels.shape[0]} labels")

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[2]

    @property
    def multi_label(self) -> bool:
        return self.train_labels.dim() == 2

    def pretraining_pool(self) -> "ImageDataset":
        """This dataset with its unlabelled images (if any) appended to the train split, labelled -1."""
        if self.unlabeled is None:
            return self
        extra = self.unlabeled()
        if extra.dtype != torch.uint8 or extra.shape[1:] != self.train_images.shape[1:]:
            raise ValueError(f"unlabelled images {extra.dtype} {tuple(extra.shape)} do not match the train split's "
                             f"{tuple(self.train_images.shape[1:])}")
        none = torch.full((extra.shape[0], *self.train_labels.shape[1:]), -1, dtype=self.train_labels.dtype)
        return replace(self, train_images=torch.cat([self.train_images, extra]),
                       train_labels=torch.cat([self.train_labels, none]), unlabeled=None)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def describe(self) -> dict:
        """What an artifact records about the data it was made from."""
        return {
            "name": self.name,
            "channels": self.channels,
            "image_size": self.image_size,
            "image_shape": list(self.train_images.shape[1:]),
            "normalisation": {"scale": "x/255", "mean": 0.5, "std": 0.5, "range": [-1, 1]},
            "num_train": int(self.train_images.shape[0]),
            "num_test": int(self.test_images.shape[0]),
            "num_classes": len(self.classes),
            "multi_label": self.multi_label,
            **({"attributes": list(self.classes)} if self.multi_label else {}),
            "source": self.source,
        }


def seeded_split(n: int, test_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed train/test index split: the same for every run and machine."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    return order[n_test:].sort().values, order[:n_test].sort().values
