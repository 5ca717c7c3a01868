"""The in-memory form every dataset loads to."""

from dataclasses import dataclass, field

import torch


@dataclass
class ImageDataset:
    """uint8 images (N, C, H, W) and int64 labels for a fixed train/test split.

    Labels are -1 where the source has none (an image folder without class sub-folders).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str] = field(default_factory=list)
    source: str = ""  # where the files were read from, for provenance

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
            "source": self.source,
        }


def seeded_split(n: int, test_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed train/test index split: the same for every run and machine."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    return order[n_test:].sort().values, order[:n_test].sort().values
