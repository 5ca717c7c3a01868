"""Feature files: HDF5 with one group per split and one float32 dataset per layer.

Schema 1: ``/train`` and ``/test`` groups; in each, float32 datasets (N, …) named by layer and an
int64 ``labels`` dataset (N,) (or (N, K) multi-label). Root attributes: ``dimctl.kind`` =
"features", ``dimctl.schema``, ``dimctl.encoder`` (JSON: the encoder's metadata and sha256),
``dimctl.dataset`` (JSON), ``dimctl.layers`` (JSON list), ``dimctl.version``.
"""

import io
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dimctl import __version__
from dimctl.errors import ArtifactError, UsageError

SCHEMA = 1
SPLITS = ("train", "test")


def init_feature_file(f: h5py.File, encoder: dict, dataset: dict, layers: list[str],
                      sizes: dict[str, int], shapes: dict[str, tuple[int, ...]]) -> None:
    """Create every dataset at full size, so extraction can fill them batch by batch."""
    f.attrs["dimctl.kind"] = "features"
    f.attrs["dimctl.schema"] = SCHEMA
    f.attrs["dimctl.encoder"] = json.dumps(encoder)
    f.attrs["dimctl.dataset"] = json.dumps(dataset)
    f.attrs["dimctl.layers"] = json.dumps(layers)
    f.attrs["dimctl.version"] = __version__
    for split, n in sizes.items():
        group = f.create_group(split)
        for layer in layers:
            group.create_dataset(layer, shape=(n, *shapes[layer]), dtype="float32")
        group.create_dataset("labels", shape=(n,), dtype="int64")


@dataclass
class Features:
    layers: list[str]
    splits: dict[str, dict[str, np.ndarray]]  # split → layer (and "labels") → array
    encoder: dict
    dataset: dict
    name: str  # where it was read from, for messages

    def layer(self, split: str, layer: str) -> np.ndarray:
        return self.splits[split][layer]


def read_features(source: str | Path | bytes, name: str | None = None) -> Features:
    """Read and validate a feature file from a path or from the bytes of one (a pipe)."""
    if isinstance(source, bytes):
        name = name or "<stdin>"
        if not source:
            raise ArtifactError(f"{name}: no data (did the command before the pipe fail?)")
        handle = io.BytesIO(source)
    else:
        name = name or str(source)
        if not Path(source).is_file():
            raise UsageError(f"{source}: no such file")
        handle = str(source)
    try:
        with h5py.File(handle, "r") as f:
            return _read_validated(f, name)
    except OSError as e:
        raise ArtifactError(f"{name} is not a readable HDF5 feature file ({e})") from e


def _read_validated(f: h5py.File, name: str) -> Features:
    if f.attrs.get("dimctl.kind") != "features":
        raise ArtifactError(f"{name} is HDF5 but not a dimctl feature file; make one with `dimctl extract`")
    if int(f.attrs.get("dimctl.schema", -1)) != SCHEMA:
        raise ArtifactError(f"{name} has feature schema {f.attrs.get('dimctl.schema')}; this dimctl reads schema {SCHEMA}")
    try:
        layers = json.loads(f.attrs["dimctl.layers"])
        encoder = json.loads(f.attrs["dimctl.encoder"])
        dataset = json.loads(f.attrs["dimctl.dataset"])
    except (KeyError, ValueError) as e:
        raise ArtifactError(f"{name}: broken dimctl attributes ({e})") from e
    splits = {}
    for split in SPLITS:
        if split not in f:
            raise ArtifactError(f"{name} has no /{split} group")
        group = f[split]
        arrays = {}
        for key in [*layers, "labels"]:
            if key not in group:
                raise ArtifactError(f"{name} has no /{split}/{key} dataset")
            arrays[key] = group[key][()]
        n = arrays["labels"].shape[0]
        for layer in layers:
            a = arrays[layer]
            if a.dtype != np.float32 or a.shape[0] != n:
                raise ArtifactError(f"{name}: /{split}/{layer} must be float32 with {n} rows, got {a.dtype} {a.shape}")
            if not np.isfinite(a).all():
                raise ArtifactError(f"{name}: /{split}/{layer} holds NaN or infinite values")
        splits[split] = arrays
    for layer in layers:
        if splits["train"][layer].shape[1:] != splits["test"][layer].shape[1:]:
            raise ArtifactError(f"{name}: train and test shapes of layer {layer!r} disagree")
    return Features(layers, splits, encoder, dataset, name)
