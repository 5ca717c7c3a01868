"""Dataset registry: a name → a loader returning an ``ImageDataset`` (uint8, fixed split).

Nothing is downloaded unless ``download=True``. A dataset whose files are missing raises
``DatasetNotFound`` naming where they are expected.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dimctl.data import celeba, cifar, idx, stl10, tiny_imagenet
from dimctl.data.dataset import ImageDataset, seeded_split
from dimctl.data.folder import load_folder
from dimctl.data.hf import is_hf, load_hf
from dimctl.data.transforms import pad_to, resize
from dimctl.errors import DatasetNotFound, UsageError

# Every loader takes (root, download, image_size, skip_bad_images); only an image folder can hold
# individually unreadable files, so the others ignore the last.
# Where Debian's dataset-fashion-mnist package puts the files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_IMAGE_SIZE = 32


def load_digits(root: Path | None, download: bool, image_size: int, skip_bad_images: bool) -> ImageDataset:
    """scikit-learn's 1,797 real 8×8 handwritten digits (values 0–16), resized; no files needed."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    images = resize(images, image_size)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train, test = seeded_split(len(labels), 0.2)
    return ImageDataset("digits", images[train], labels[train], images[test], labels[test],
                        classes=[str(d) for d in range(10)], source="sklearn.datasets.load_digits")


def _idx_loader(name: str, subfolder: str, torchvision_class: str, classes: list[str], default_root: Path | None):
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

    def candidates(root: Path) -> list[Path]:
        return [root / subfolder / "raw", root / subfolder, root]

    def find(root: Path) -> list[Path] | None:
        for folder in candidates(root):
            found = [idx.find_idx(folder, s) for s in stems]
            if all(found):
                return found
        return None

    def load(root: Path | None, download: bool, image_size: int, skip_bad_images: bool) -> ImageDataset:
        roots = [root] if root is not None else [Path("data")] + ([default_root] if default_root else [])
        files = next((f for f in (find(r) for r in roots) if f), None)
        if files is None and download:
            import torchvision.datasets

            target = roots[0]
            getattr(torchvision.datasets, torchvision_class)(str(target), train=True, download=True)
            getattr(torchvision.datasets, torchvision_class)(str(target), train=False, download=True)
            files = find(target)
        if files is None:
            where = " or ".join(str(candidates(r)[0]) for r in roots)
            hint = " (or `apt-get install dataset-fashion-mnist`)" if default_root else ""
            raise DatasetNotFound(
                f"{name} files (train-images-idx3-ubyte[.gz], …) not found in {where}; "
                f"pass --data-root DIR, or --download to fetch them{hint}"
            )
        arrays = [idx.read_idx(f) for f in files]

        def images(a):
            return fit_to_size(torch.from_numpy(a.copy()).unsqueeze(1), image_size)

        return ImageDataset(name, images(arrays[0]), torch.from_numpy(arrays[1].astype(np.int64)),
                            images(arrays[2]), torch.from_numpy(arrays[3].astype(np.int64)),
                            classes=classes, source=str(files[0].parent))

    return load


def fit_to_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """28×28 digits are zero-padded to 32 (keeping every pixel); other sizes are resized."""
    h = images.shape[-1]
    if h == size:
        return images
    if h < size and size - h <= 4:
        return pad_to(images, size)
    return resize(images, size)


def _cifar_loader(which: str, torchvision_class: str, num_classes: int):
    def load(root: Path | None, download: bool, image_size: int, skip_bad_images: bool) -> ImageDataset:
        root = root if root is not None else Path("data")
        if not cifar.is_present(root, which) and download:
            import torchvision.datasets

            getattr(torchvision.datasets, torchvision_class)(str(root), train=True, download=True)
        if not cifar.is_present(root, which):
            raise DatasetNotFound(
                f"{which} not found: expected {root / cifar.LAYOUTS[which][0]}/ (torchvision's python format); "
                f"pass --data-root DIR, or --download to fetch it"
            )
        train_x, train_y, test_x, test_y = cifar.read_cifar(root, which)
        tx, ex = (fit_to_size(torch.from_numpy(a), image_size) for a in (train_x, test_x))
        return ImageDataset(which, tx, torch.from_numpy(train_y), ex, torch.from_numpy(test_y),
                            classes=[str(i) for i in range(num_classes)], source=str(root / cifar.LAYOUTS[which][0]))

    return load


def _stl10(root: Path | None, download: bool, image_size: int, skip_bad_images: bool) -> ImageDataset:
    """STL-10 (torchvision's binary layout); the unlabelled images join only the pretraining pool."""
    root = root if root is not None else Path("data")
    if not stl10.is_present(root) and download:
        import torchvision.datasets

        torchvision.datasets.STL10(str(root), split="train+unlabeled", download=True)  # one archive, every split
    if not stl10.is_present(root):
        raise DatasetNotFound(
            f"stl10 not found: expected {root / stl10.FOLDER}/ with train_X.bin, train_y.bin, test_X.bin, test_y.bin "
            f"(and unlabeled_X.bin for pretraining; torchvision's layout); pass --data-root DIR, or --download to fetch it"
        )
    return stl10.load(root, image_size)


def _tiny_imagenet(root: Path | None, download: bool, image_size: int, skip_bad_images: bool) -> ImageDataset:
    root = root if root is not None else Path("data")
    if not tiny_imagenet.is_present(root):
        if download:
            raise UsageError(
                f"--download is not available for tiny-imagenet: torchvision has no loader for it; fetch "
                f"{tiny_imagenet.URL} yourself and unzip it into {root}/"
            )
        raise DatasetNotFound(
            f"tiny-imagenet not found: expected {root / tiny_imagenet.FOLDER}/ with wnids.txt, train/ and "
            f"val/val_annotations.txt (unzip {tiny_imagenet.URL} there); pass --data-root DIR"
        )
    return tiny_imagenet.load(root, image_size)


def _celeba(root: Path | None, download: bool, image_size: int, skip_bad_images: bool) -> ImageDataset:
    """CelebA's aligned faces with their 40 attributes as (N, 40) 0/1 labels."""
    root = root if root is not None else Path("data")
    if not celeba.is_present(root) and download:
        import torchvision.datasets

        try:
            torchvision.datasets.CelebA(str(root), split="all", download=True)
        except RuntimeError as e:
            if "gdown" in str(e):  # torchvision fetches CelebA from Google Drive through gdown
                raise UsageError("--download of celeba needs the gdown package: pip install gdown") from e
            raise
    if not celeba.is_present(root):
        raise DatasetNotFound(
            f"celeba not found: expected {root / celeba.FOLDER}/ with {celeba.IMAGES}/, {celeba.ATTRIBUTES} and "
            f"{celeba.PARTITION} (torchvision's layout); pass --data-root DIR, or --download to fetch it (needs gdown)"
        )
    return celeba.load(root, image_size)


def _folder(root: Path | None, download: bool, image_size: int, skip_bad_images: bool) -> ImageDataset:
    if root is None:
        raise DatasetNotFound("--dataset folder needs --data-root DIR (a folder of images, class sub-folders optional)")
    return load_folder(root, image_size, skip_bad_images)


DATASETS: dict[str, Callable[[Path | None, bool, int, bool], ImageDataset]] = {
    "digits": load_digits,
    "mnist": _idx_loader("mnist", "MNIST", "MNIST", [str(d) for d in range(10)], None),
    "fashion-mnist": _idx_loader(
        "fashion-mnist", "FashionMNIST", "FashionMNIST",
        ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"],
        DEBIAN_FASHION_MNIST,
    ),
    "cifar10": _cifar_loader("cifar10", "CIFAR10", 10),
    "cifar100": _cifar_loader("cifar100", "CIFAR100", 100),
    "stl10": _stl10,
    "tiny-imagenet": _tiny_imagenet,
    "celeba": _celeba,
    "folder": _folder,
}


def load_dataset(name: str, data_root: str | Path | None = None, download: bool = False,
                 image_size: int = DEFAULT_IMAGE_SIZE, skip_bad_images: bool = False) -> ImageDataset:
    root = Path(data_root).expanduser() if data_root else None
    if is_hf(name):  # a spec, not a fixed name: hf:PATH?image=COLUMN&label=COLUMN (data/hf.py)
        return load_hf(name, root, download, image_size, skip_bad_images)
    if name not in DATASETS:
        raise DatasetNotFound(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}, hf:PATH")
    return DATASETS[name](root, download, image_size, skip_bad_images)
