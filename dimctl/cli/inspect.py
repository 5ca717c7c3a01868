"""`dimctl inspect`: what a dimctl artifact is and how it was made, as JSON."""

import io
import json
import math
from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.output import emit
from dimctl.errors import ArtifactError

# The readers (torch through io/artifacts.py, h5py) are imported when the command runs, so that
# `dimctl inspect --help` starts in milliseconds.


def inspect(file: Annotated[Path, typer.Argument(help="A .safetensors artifact or an HDF5 feature file.")]):
    """Print an artifact's metadata, shapes and sha256 as one JSON object.

    Example:

      dimctl inspect runs/demo/encoder.safetensors
    """
    from dimctl.io.artifacts import sha256_of
    from dimctl.io.features import looks_like_features

    from dimctl.io.reading import require_file

    require_file(file)  # a FIFO or device is refused, never read (it would block or never end)
    info = _hdf5(file) if looks_like_features(file) else _safetensors(file)
    emit(json.dumps({"file": str(file), "sha256": sha256_of(file), **info}, indent=2))


def _safetensors(file: Path) -> dict:
    from dimctl.io.artifacts import describe_metadata, read_metadata

    metadata, shapes = read_metadata(file)
    if "dimctl.kind" not in metadata:
        raise ArtifactError(f"{file} is a safetensors file without dimctl metadata")
    info = {"format": "safetensors"}
    info.update(describe_metadata(metadata, str(file)))
    info["parameters"] = sum(math.prod(s) for s in shapes.values())
    info["tensors"] = shapes
    return info


def _hdf5(file: Path) -> dict:
    import h5py

    from dimctl.io.artifacts import describe_metadata
    from dimctl.io.features import verify_seal
    from dimctl.io.hdf5_contained import check_contained

    data = file.read_bytes()
    verify_seal(data, str(file))  # damaged bytes never reach libhdf5
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            check_contained(f, str(file))  # inspect lists shapes only, but never follows a file outward
            attrs = describe_metadata({k: v if isinstance(v, str) else json.dumps(_plain(v))
                                       for k, v in f.attrs.items()}, str(file))
            if "kind" not in attrs:
                raise ArtifactError(f"{file} is HDF5 but not a dimctl file")
            splits = {name: {k: list(d.shape) for k, d in group.items()}
                      for name, group in f.items() if isinstance(group, h5py.Group)}
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ArtifactError(f"{file} is not a readable HDF5 file ({e})") from e
    return {"format": "hdf5", **attrs, "splits": splits}


def _plain(value):
    return value.item() if hasattr(value, "item") else value
