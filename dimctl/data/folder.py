"""A directory of images: class sub-folders give labels; loose images are unlabelled (-1).

If the folder has ``train/`` and ``test/`` sub-folders they are the split; otherwise a fixed
seeded 80/20 split is made. Images are resized to ``image_size`` and held in memory as uint8;
greyscale-only folders load with 1 channel, anything else as RGB.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dimctl.data.dataset import ImageDataset, seeded_split
from dimctl.data.decode import BAD_IMAGE, open_image, shown
from dimctl.errors import ArtifactError, UsageError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _list_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels = [], []
    for path in sorted(root.iterdir()):
        if path.is_file() and path.suffix.lower() in EXTENSIONS:
            paths.append(path)
            labels.append(-1)
    for index, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and path.suffix.lower() in EXTENSIONS:
                paths.append(path)
                labels.append(index)
    return paths, labels, classes


def _open_all(paths: list[Path], skip_bad: bool) -> tuple[list, list[int]]:
    """Decoded images and the indices of those that could be read."""
    opened, kept = [], []
    for i, path in enumerate(paths):
        try:
            with open_image(path) as img:
                img.load()
                opened.append(img.copy())
                kept.append(i)
        except BAD_IMAGE as e:
            if not skip_bad:
                raise ArtifactError(f"cannot read image {shown(path)} ({e}); fix or remove it, or pass "
                                    f"--skip-bad-images") from e
    return opened, kept


def _to_tensor(opened: list, image_size: int) -> torch.Tensor:
    grey = all(img.mode in ("L", "1", "I;16", "I") for img in opened)
    mode = "L" if grey else "RGB"
    arrays = []
    for img in opened:
        img = img.convert(mode)
        if img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
        a = np.asarray(img, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays))


def load_folder(root: Path, image_size: int = 32, skip_bad_images: bool = False) -> ImageDataset:
    if not root.is_dir():
        raise UsageError(f"image folder {root} does not exist; pass --data-root DIR")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_paths, train_labels, classes = _list_images(root / "train")
        test_paths, test_labels, test_classes = _list_images(root / "test")
        if test_classes != classes:
            raise UsageError(f"{root}: train/ and test/ have different class folders")
    else:
        paths, labels, classes = _list_images(root)
        if not paths:
            raise UsageError(f"no images found in {root}")
        train_idx, test_idx = seeded_split(len(paths), 0.2)
        train_paths = [paths[i] for i in train_idx]
        test_paths = [paths[i] for i in test_idx]
        train_labels = [labels[i] for i in train_idx]
        test_labels = [labels[i] for i in test_idx]
    # Read both splits together so they share one channel count.
    opened, kept = _open_all(train_paths + test_paths, skip_bad_images)
    labels = train_labels + test_labels
    n = sum(1 for i in kept if i < len(train_paths))
    if n == 0 or n == len(kept):
        raise UsageError(f"{root}: need readable images in both the train and the test split")
    images = _to_tensor(opened, image_size)
    kept_labels = torch.tensor([labels[i] for i in kept], dtype=torch.int64)
    return ImageDataset(
        name="folder",
        train_images=images[:n],
        train_labels=kept_labels[:n],
        test_images=images[n:],
        test_labels=kept_labels[n:],
        classes=classes,
        source=str(root),
    )
