"""Sample files: images drawn from a generator, as HDF5, for `dimctl generate score`.

The same checksummed container as feature files (io/features.py: a 512-byte user block with the
sha256 of the rest, checked before libhdf5 reads anything), holding one uint8 dataset
``/samples/images`` of shape (N, C, H, W), the images exactly as a dataset's are held. Root
attributes: ``dimctl.kind`` = "samples", ``dimctl.schema``, ``dimctl.generator`` (JSON: sha256,
path, method), ``dimctl.dataset`` (JSON: what the generator was trained on), ``dimctl.seed``,
``dimctl.version``.

Reading one checks the images' declared shape against the file's size before reading them
(io/hdf5_contained.py's ``check_declared_sizes``: no more than the file holds uncompressed, 64×
it or 256 MiB compressed, never more than the machine's memory).
"""

import io
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from dimctl import __version__
from dimctl.errors import ArtifactError
from dimctl.io.atomic import write_bytes
from dimctl.io.features import MAGIC, create_feature_file, seal_bytes, verify_seal
from dimctl.io.hdf5_contained import check_contained, check_declared_sizes, declared
from dimctl.io.reading import open_regular, require_file

SCHEMA = 1
IMAGES = "samples/images"


@dataclass
class Samples:
    images: torch.Tensor  # uint8 (N, C, H, W)
    generator: dict
    dataset: dict
    seed: int
    name: str  # where it was read from, for messages


def _fill(f: h5py.File, images: torch.Tensor, generator: dict, dataset: dict, seed: int) -> None:
    f.attrs["dimctl.kind"] = "samples"
    f.attrs["dimctl.schema"] = SCHEMA
    f.attrs["dimctl.generator"] = json.dumps(generator)
    f.attrs["dimctl.dataset"] = json.dumps(dataset)
    f.attrs["dimctl.seed"] = seed
    f.attrs["dimctl.version"] = __version__
    f.create_dataset(IMAGES, data=images.cpu().numpy())


def _check_images(images: torch.Tensor) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"samples must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")


def write_samples(path: str | Path, images: torch.Tensor, generator: dict, dataset: dict, seed: int) -> Path:
    """Write atomically to ``path``. The file is made in memory and written as plain bytes: libhdf5
    writing to disk met a full disk with a two-line message naming the temporary file (and a crash
    as its objects were freed); a plain write fails with one "No space left on device" naming
    ``path``. The images are in memory already, and the file is barely larger."""
    write_bytes(path, samples_bytes(images, generator, dataset, seed))
    return Path(path)


def samples_bytes(images: torch.Tensor, generator: dict, dataset: dict, seed: int) -> bytes:
    """The file's bytes, for stdout (h5py cannot write to a pipe, which cannot seek)."""
    _check_images(images)
    buffer = io.BytesIO()
    with create_feature_file(buffer) as f:
        _fill(f, images, generator, dataset, seed)
    return seal_bytes(buffer.getvalue())


def read_samples(source: str | Path | bytes, name: str | None = None) -> Samples:
    """Read and validate a sample file from a path or from its bytes (a pipe)."""
    if isinstance(source, bytes):
        name = name or "<stdin>"
        data = source
    else:
        name = name or str(source)
        require_file(source)  # a FIFO or device is refused, never read (it would block or never end)
        with open_regular(source) as f:
            data = f.read()
    if not data.startswith(MAGIC):
        raise ArtifactError(f"{name} is not a dimctl sample file; make one with `dimctl generate sample GENERATOR -o FILE.h5`")
    verify_seal(data, name)
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            check_contained(f, name)  # no data from outside the file, before any is read
            kind = f.attrs.get("dimctl.kind")
            if kind != "samples":
                raise ArtifactError(f"{name} holds dimctl {kind}, not samples; make samples with "
                                    f"`dimctl generate sample GENERATOR -o FILE.h5`")
            if int(f.attrs.get("dimctl.schema", -1)) != SCHEMA:
                raise ArtifactError(f"{name} has samples schema {f.attrs.get('dimctl.schema')}; this dimctl reads {SCHEMA}")
            node = f.get(IMAGES)
            if not isinstance(node, h5py.Dataset) or node.dtype != np.uint8 or node.ndim != 4:
                raise ArtifactError(f"{name}: /{IMAGES} must be a uint8 (N, C, H, W) dataset")
            # A crafted header can claim any shape: held against the file's size before reading.
            check_declared_sizes([declared(node, f"/{IMAGES}")], len(data), name)
            images = torch.from_numpy(node[()])
            generator = json.loads(f.attrs["dimctl.generator"])
            dataset = json.loads(f.attrs["dimctl.dataset"])
            seed = int(f.attrs["dimctl.seed"])
    except ArtifactError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, OverflowError) as e:
        raise ArtifactError(f"{name} is not a readable sample file ({type(e).__name__}: {e})") from e
    return Samples(images, generator, dataset, seed, name)
