"""Image folders too large to hold in memory: files decoded by DataLoader workers, batch by batch.

    dimctl pretrain --dataset folder --data-root photos/ --stream --workers 8

``StreamingFolder`` lists the training files (the layout of data/folder.py: class sub-folders,
``train/``+``test/`` or a seeded split) without decoding them. ``stream_batches`` yields the uint8
batches of one epoch in exactly the order the in-memory path uses — the same per-(seed, epoch)
permutation, split across processes the same way — decoded by worker processes, pinned, and
copied to the device without blocking. Normalisation and augmentation then run on the device as
for in-memory data, so the two paths train the same model from the same files.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dimctl.data.dataset import seeded_split
from dimctl.data.decode import BAD_IMAGE, open_image, shown
from dimctl.data.folder import _list_images
from dimctl.errors import ArtifactError, UsageError


@dataclass
class StreamingFolder:
    """The training split of an image folder as file paths; decoded on demand."""

    paths: list[Path]
    labels: list[int]
    channels: int
    image_size: int
    classes: list[str] = field(default_factory=list)
    source: str = ""
    skip_bad_images: bool = False
    name: str = "folder"

    @property
    def num_train(self) -> int:
        return len(self.paths)

    def describe(self) -> dict:
        return {"name": self.name, "channels": self.channels, "image_size": self.image_size,
                "image_shape": [self.channels, self.image_size, self.image_size],
                "normalisation": {"scale": "x/255", "mean": 0.5, "std": 0.5, "range": [-1, 1]},
                "num_train": self.num_train, "num_classes": len(self.classes), "source": self.source,
                "streamed": True}


def open_streaming_folder(root: Path, image_size: int = 32, skip_bad_images: bool = False) -> StreamingFolder:
    if not root.is_dir():
        raise UsageError(f"image folder {root} does not exist; pass --data-root DIR")
    if (root / "train").is_dir() and (root / "test").is_dir():
        paths, labels, classes = _list_images(root / "train")
    else:
        paths, labels, classes = _list_images(root)
        train_idx, _ = seeded_split(len(paths), 0.2)  # the same split the in-memory loader makes
        paths, labels = [paths[i] for i in train_idx], [labels[i] for i in train_idx]
    if not paths:
        raise UsageError(f"no training images found in {root}")
    # Like the in-memory loader: 1 channel only if the images are greyscale. Reading every header
    # of a huge folder would cost minutes, so a sample of them decides.
    sample = paths[:: max(1, len(paths) // 256)]
    grey = all(_mode(p) in ("L", "1", "I;16", "I") for p in sample)
    return StreamingFolder(paths, labels, 1 if grey else 3, image_size, classes, str(root), skip_bad_images)


def _mode(path: Path) -> str | None:
    try:
        with open_image(path) as img:
            return img.mode
    except BAD_IMAGE:
        return None


class _Files(torch.utils.data.Dataset):
    """Decodes one file to a uint8 (C, S, S) tensor. A damaged file is reported back, not raised,
    so the main process can name it in one line (a worker's exception arrives wrapped in a
    traceback); with skip_bad_images the next readable file of the folder stands in for it."""

    def __init__(self, folder: StreamingFolder):
        self.folder = folder
        self.mode = "L" if folder.channels == 1 else "RGB"

    def __len__(self) -> int:
        return self.folder.num_train

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        n = self.folder.num_train
        for attempt in range(n):
            path = self.folder.paths[(index + attempt) % n]
            try:
                with open_image(path) as img:
                    img = img.convert(self.mode)
                    if img.size != (self.folder.image_size, self.folder.image_size):
                        img = img.resize((self.folder.image_size, self.folder.image_size), Image.Resampling.BILINEAR)
                    array = np.asarray(img, dtype=np.uint8)
            except BAD_IMAGE as e:
                if self.folder.skip_bad_images:
                    continue
                size = self.folder.image_size
                return torch.zeros(self.folder.channels, size, size, dtype=torch.uint8), \
                    f"cannot read image {shown(path)} ({e}); fix or remove it, or pass --skip-bad-images"
            array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
            return torch.from_numpy(np.ascontiguousarray(array)), ""
        raise ArtifactError(f"no readable image in {self.folder.source}")


def _collate(items: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
    return torch.stack([image for image, _ in items]), [error for _, error in items if error]


def stream_batches(folder: StreamingFolder, batches: list[list[int]], device: torch.device,
                   workers: int) -> Iterator[torch.Tensor]:
    """uint8 batches on ``device`` for the given index lists, decoded ``workers`` at a time."""
    loader = torch.utils.data.DataLoader(
        _Files(folder), batch_sampler=batches, num_workers=workers, collate_fn=_collate,
        pin_memory=device.type == "cuda", prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
        # Its own generator: a DataLoader draws its workers' seed from the global RNG otherwise,
        # which would shift the prior samples and make a streamed run differ from an in-memory one.
        generator=torch.Generator().manual_seed(0))
    for images, errors in loader:
        if errors:
            raise ArtifactError(errors[0])
        yield images.to(device, non_blocking=True)
