"""Tiny ImageNet in its own folder layout (the unzipped tiny-imagenet-200.zip):

    ROOT/tiny-imagenet-200/wnids.txt                    the 200 class ids (WordNet ids), one a line
    ROOT/tiny-imagenet-200/words.txt                    optional: id <tab> human-readable name
    ROOT/tiny-imagenet-200/train/<wnid>/images/*.JPEG   500 training images per class
    ROOT/tiny-imagenet-200/val/images/*.JPEG            10,000 validation images …
    ROOT/tiny-imagenet-200/val/val_annotations.txt      … labelled here: file <tab> wnid <tab> box

The labelled validation set is the test split (the official test images have no labels).
Images are 64×64 (a few are greyscale; all load as RGB). Class indices follow the sorted wnids.
torchvision has no Tiny ImageNet loader, so there is nothing to ``--download`` with.
"""

from pathlib import Path

import torch

from dimctl.data.dataset import ImageDataset
from dimctl.data.decode import decode_images
from dimctl.errors import ArtifactError

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
EXTENSIONS = {".jpeg", ".jpg", ".png"}


def is_present(root: Path) -> bool:
    folder = root / FOLDER
    return (folder / "wnids.txt").is_file() and (folder / "train").is_dir() and \
        (folder / "val" / "val_annotations.txt").is_file()


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS) if folder.is_dir() else []


def load(root: Path, image_size: int) -> ImageDataset:
    folder = root / FOLDER
    wnids = sorted(set((folder / "wnids.txt").read_text().split()))
    index = {wnid: i for i, wnid in enumerate(wnids)}
    train_paths, train_labels = [], []
    for wnid in wnids:
        paths = _images_in(folder / "train" / wnid / "images")
        train_paths += paths
        train_labels += [index[wnid]] * len(paths)
    test_paths, test_labels = [], []
    for number, line in enumerate((folder / "val" / "val_annotations.txt").read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise ArtifactError(f"{folder / 'val' / 'val_annotations.txt'} line {number}: expected "
                                f"'file<TAB>wnid…' with a wnid from wnids.txt, got {line[:80]!r}")
        test_paths.append(folder / "val" / "images" / fields[0])
        test_labels.append(index[fields[1]])
    if not train_paths or not test_paths:
        raise ArtifactError(f"{folder}: no training images under train/<wnid>/images/ or no validation images listed")
    return ImageDataset(
        "tiny-imagenet",
        decode_images(train_paths, image_size), torch.tensor(train_labels, dtype=torch.int64),
        decode_images(test_paths, image_size), torch.tensor(test_labels, dtype=torch.int64),
        classes=wnids, source=str(folder),
    )
