"""CelebA in torchvision's layout: ROOT/celeba/img_align_celeba/*.jpg with the annotation files

    ROOT/celeba/list_attr_celeba.txt      line 1: image count; line 2: the 40 attribute names;
                                          then "000001.jpg -1  1 …": one ±1 per attribute
    ROOT/celeba/list_eval_partition.txt   "000001.jpg 0": 0 train, 1 validation, 2 test

Labels are the 40 attributes as an (N, 40) int64 array of 0/1 (multi-label: ``probe`` fits one
binary classifier per attribute). The official train partition is the train split and the test
partition the test split; the 19,867 validation images are left out.

The aligned faces are 178×218: each is cropped to its central 178×178 square, then resized to the
image size (the paper uses 64×64). At 64 px the 182,637 train and test images take 2.2 GB.
"""

from pathlib import Path

import numpy as np
import torch

from dimctl.data.dataset import ImageDataset
from dimctl.data.decode import decode_images
from dimctl.errors import ArtifactError

FOLDER = "celeba"
IMAGES = "img_align_celeba"
ATTRIBUTES = "list_attr_celeba.txt"
PARTITION = "list_eval_partition.txt"
TRAIN, VALID, TEST = 0, 1, 2


def is_present(root: Path) -> bool:
    folder = root / FOLDER
    return (folder / IMAGES).is_dir() and (folder / ATTRIBUTES).is_file() and (folder / PARTITION).is_file()


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(attribute names, file names, (N, K) 0/1 int64) from list_attr_celeba.txt."""
    lines = path.read_text().splitlines()
    if len(lines) < 3:
        raise ArtifactError(f"{path}: expected a count line, a names line and one line per image")
    names = lines[1].split()
    files, rows = [], []
    for number, line in enumerate(lines[2:], 3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1 or any(v not in ("1", "-1") for v in fields[1:]):
            raise ArtifactError(f"{path} line {number}: expected a file name and {len(names)} values of ±1")
        files.append(fields[0])
        rows.append([v == "1" for v in fields[1:]])
    return names, files, np.asarray(rows, dtype=np.int64).reshape(len(rows), len(names))


def read_partition(path: Path) -> dict[str, int]:
    partition = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ArtifactError(f"{path} line {number}: expected 'FILE 0|1|2', got {line[:80]!r}")
        partition[fields[0]] = int(fields[1])
    return partition


def load(root: Path, image_size: int) -> ImageDataset:
    folder = root / FOLDER
    names, files, attributes = read_attributes(folder / ATTRIBUTES)
    partition = read_partition(folder / PARTITION)
    missing = [f for f in files if f not in partition]
    if missing:
        raise ArtifactError(f"{folder / PARTITION} does not list {missing[0]} (and {len(missing) - 1} more)")
    splits = {}
    for split, code in (("train", TRAIN), ("test", TEST)):
        rows = [i for i, f in enumerate(files) if partition[f] == code]
        if not rows:
            raise ArtifactError(f"{folder / PARTITION}: no image in the {split} partition ({code})")
        images = decode_images([folder / IMAGES / files[i] for i in rows], image_size, square_crop=True)
        splits[split] = (images, torch.from_numpy(attributes[rows]))
    return ImageDataset("celeba", *splits["train"], *splits["test"], classes=names, source=str(folder))
