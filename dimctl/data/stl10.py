"""STL-10 in torchvision's binary layout: ROOT/stl10_binary/{train,test}_{X,y}.bin, unlabeled_X.bin.

Each ``*_X.bin`` holds uint8 images of 3×96×96, every channel stored column by column (so a
transpose gives rows); ``*_y.bin`` holds one byte per image, classes 1–10. 5,000 labelled training
images, 8,000 test images and 100,000 unlabelled images (2.8 GB as uint8, loaded only when
pretraining asks for them). ``class_names.txt`` names the classes.

Image sizes: 96 is the images as stored. Any smaller size is their central 64×64 window (the
scale the paper's random 64×64 pretraining crops see the objects at; the authors' code cropped
the test images at random too), resized if the size is not 64. Larger sizes are resized.
"""

from pathlib import Path

import numpy as np
import torch

from dimctl.data.dataset import ImageDataset
from dimctl.data.transforms import centre_crop, resize
from dimctl.errors import ArtifactError

FOLDER = "stl10_binary"
SIDE = 96
EVAL_CROP = 64  # the paper's pretraining crop
FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
UNLABELED = "unlabeled_X.bin"
CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def is_present(root: Path) -> bool:
    return all((root / FOLDER / name).is_file() for name in FILES)


def read_images(path: Path) -> torch.Tensor:
    """(N, 3, 96, 96) uint8 from an STL-10 ``*_X.bin``; memory-mapped (copy-on-write), so the
    100,000 unlabelled images are read from disk only as they are used."""
    size = path.stat().st_size
    if size == 0 or size % (3 * SIDE * SIDE):
        raise ArtifactError(f"{path}: {size} bytes is not a whole number of 3×96×96 images; the copy is damaged")
    data = np.memmap(path, dtype=np.uint8, mode="c").reshape(-1, 3, SIDE, SIDE)
    return torch.from_numpy(data).transpose(2, 3)  # stored column-major per channel


def read_labels(path: Path, n: int) -> torch.Tensor:
    labels = np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1
    if labels.shape[0] != n or (labels < 0).any() or (labels >= len(CLASSES)).any():
        raise ArtifactError(f"{path}: expected {n} labels in 1–10, found {labels.shape[0]} "
                            f"(range {labels.min(initial=0) + 1}–{labels.max(initial=0) + 1})")
    return torch.from_numpy(labels)


def fit(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """The stored 96-px images at ``image_size`` (module docstring); always a contiguous copy."""
    if image_size == SIDE:
        return images.contiguous()
    if image_size < SIDE:
        images = centre_crop(images, EVAL_CROP)
        return images.contiguous() if image_size == EVAL_CROP else resize(images, image_size)
    return resize(images, image_size)


def load(root: Path, image_size: int) -> ImageDataset:
    folder = root / FOLDER
    train_x, test_x = read_images(folder / "train_X.bin"), read_images(folder / "test_X.bin")
    train_y = read_labels(folder / "train_y.bin", train_x.shape[0])
    test_y = read_labels(folder / "test_y.bin", test_x.shape[0])
    names = folder / "class_names.txt"
    classes = names.read_text().split() if names.is_file() else CLASSES
    unlabeled = None
    if (folder / UNLABELED).is_file():
        def unlabeled() -> torch.Tensor:
            return fit(read_images(folder / UNLABELED), image_size)
    return ImageDataset("stl10", fit(train_x, image_size), train_y, fit(test_x, image_size), test_y,
                        classes=classes, source=str(folder), unlabeled=unlabeled)
