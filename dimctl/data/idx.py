"""Reader for the idx format of MNIST and Fashion-MNIST, plain or gzip-compressed.

torchvision's FashionMNIST class rejects the re-compressed files of Debian's
``dataset-fashion-mnist`` package (their checksums differ), so the format is read directly.
"""

import gzip
from pathlib import Path

import numpy as np

from dimctl.errors import ArtifactError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ArtifactError(f"cannot read {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ArtifactError(f"{path} is not an idx file (bad magic number)")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    array = np.frombuffer(data, dtype=_DTYPES[data[2]], offset=offset)
    if array.size != int(np.prod(dims)):
        raise ArtifactError(f"{path} is truncated: header says {dims}, found {array.size} values")
    return array.reshape(dims)


def find_idx(folder: Path, stem: str) -> Path | None:
    """``stem`` plain or with .gz, in the folder."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None
