"""Reader for torchvision's CIFAR-10/100 on-disk format (the python pickle batches).

The batches are pickles; they are read with an unpickler that can build only numpy arrays and
plain containers, so a hostile file cannot execute code. torchvision's own classes would also
verify MD5 sums of the official archive, which rules out test copies; this reader does not.
"""

import io
import pickle
from pathlib import Path

import numpy as np

from dimctl.errors import ArtifactError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_batch(path: Path) -> dict:
    try:
        batch = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ArtifactError(f"cannot read CIFAR batch {path}: {e}") from e
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


# folder, train batch files, test batch files, label key
LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
}


def read_cifar(root: Path, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images (N, 3, 32, 32) uint8, train labels, test images, test labels)."""
    folder, train_files, test_files, label_key = LAYOUTS[which]

    def load(files):
        images, labels = [], []
        for name in files:
            batch = read_batch(root / folder / name)
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
        return np.concatenate(images), np.concatenate(labels)

    return (*load(train_files), *load(test_files))


def is_present(root: Path, which: str) -> bool:
    folder, train_files, test_files, _ = LAYOUTS[which]
    return all((root / folder / f).is_file() for f in train_files + test_files)
