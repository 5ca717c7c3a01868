"""Tiny copies of the on-disk layouts of STL-10, Tiny ImageNet and CelebA, for loader tests.

Each writer returns what it wrote (images as (N, 3, H, W) uint8 in row-major order, labels), so
tests can check that the loaders read back exactly that.
"""

from pathlib import Path

import numpy as np
from PIL import Image


def write_stl10(root: Path, n_train: int = 6, n_test: int = 4, n_unlabeled: int = 5, seed: int = 0) -> dict:
    """torchvision's stl10_binary/: *_X.bin store each channel column by column; *_y.bin bytes 1–10."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        images = rng.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # column-major per channel
        written[f"{split}_images"] = images
        if split != "unlabeled":
            labels = np.arange(n) % 10
            (labels + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
            written[f"{split}_labels"] = labels
    (folder / "class_names.txt").write_text(
        "\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]) + "\n")
    return written


def _save(path: Path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.transpose(1, 2, 0) if array.shape[0] == 3 else array[0]).save(path, **kwargs)


def write_tiny_imagenet(root: Path, wnids=("n02", "n01", "n03"), per_class: int = 3, val: int = 4,
                        seed: int = 0) -> dict:
    """tiny-imagenet-200/: wnids.txt, train/<wnid>/images/*.JPEG, val/images + val_annotations.txt.
    PNG bytes under .JPEG names keep the pixels exact (the loaders go by content, as Pillow does);
    one greyscale image checks the RGB conversion."""
    folder = root / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    train = {}
    for wnid in wnids:
        for i in range(per_class):
            image = rng.integers(0, 256, size=(3, 64, 64), dtype=np.uint8)
            _save(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", image, format="PNG")
            train[(wnid, i)] = image
    grey = rng.integers(0, 256, size=(1, 64, 64), dtype=np.uint8)
    _save(folder / "train" / wnids[0] / "images" / f"{wnids[0]}_{per_class}.JPEG", grey, format="PNG")
    train[(wnids[0], per_class)] = np.repeat(grey, 3, axis=0)
    lines, val_images = [], []
    for i in range(val):
        image = rng.integers(0, 256, size=(3, 64, 64), dtype=np.uint8)
        _save(folder / "val" / "images" / f"val_{i}.JPEG", image, format="PNG")
        wnid = wnids[i % len(wnids)]
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
        val_images.append((image, wnid))
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {"train": train, "val": val_images, "wnids": sorted(wnids)}


ATTRIBUTES = ["Smiling", "Male", "Eyeglasses"]


def write_celeba(root: Path, partition=(0, 0, 0, 0, 0, 1, 2, 2, 2), attributes=ATTRIBUTES, seed: int = 0) -> dict:
    """celeba/: img_align_celeba/*.jpg (178×218, PNG bytes: exact pixels), list_attr_celeba.txt
    (count, names, ±1 rows padded with double spaces as in the real file), list_eval_partition.txt."""
    folder = root / "celeba"
    rng = np.random.default_rng(seed)
    n = len(partition)
    values = rng.integers(0, 2, size=(n, len(attributes)))
    images = rng.integers(0, 256, size=(n, 3, 218, 178), dtype=np.uint8)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name, image in zip(names, images):
        _save(folder / "img_align_celeba" / name, image, format="PNG")
    rows = [f"{name} " + " ".join(f"{2 * v - 1:2d}" for v in row) for name, row in zip(names, values)]
    (folder / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(attributes) + " \n" + "\n".join(rows) + "\n")
    (folder / "list_eval_partition.txt").write_text("".join(f"{name} {p}\n" for name, p in zip(names, partition)))
    return {"images": images, "attributes": values, "partition": np.asarray(partition)}
