"""Feature files: HDF5 with one group per split and one float32 dataset per layer.

The file starts with a 512-byte HDF5 user block holding ``dimctl-features``, the schema and the
sha256 of every byte after the block. Readers check it before libhdf5 parses anything: a
truncated or damaged file is refused at once (and libhdf5, which can hang on some damaged
attributes, never sees one).

Schema 1: ``/train`` and ``/test`` groups; in each, float32 datasets (N, …) named by layer and an
int64 ``labels`` dataset (N,) (or (N, K) multi-label). Root attributes: ``dimctl.kind`` =
"features", ``dimctl.schema``, ``dimctl.encoder`` (JSON: the encoder's metadata and sha256),
``dimctl.dataset`` (JSON), ``dimctl.layers`` (JSON list), ``dimctl.version``.
"""

import hashlib
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
USERBLOCK = 512
MAGIC = b"dimctl-features"


def looks_like_features(path: str | Path) -> bool:
    """By its first bytes: a dimctl feature file (or some other HDF5 file) rather than safetensors."""
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
    return head.startswith(MAGIC) or head.startswith(b"\x89HDF")


def create_feature_file(target) -> h5py.File:
    """An HDF5 file (path or binary file object) with room for the checksum block; call ``seal`` after closing it."""
    return h5py.File(target, "w", userblock_size=USERBLOCK)


def _block(digest: str) -> bytes:
    header = b"%s schema=%d sha256=%s\n" % (MAGIC, SCHEMA, digest.encode())
    return header.ljust(USERBLOCK, b"\0")


def seal_block(data: bytes | memoryview) -> bytes:
    """The checksum block for a whole file's bytes (its first USERBLOCK bytes are replaced by it)."""
    return _block(hashlib.sha256(memoryview(data)[USERBLOCK:]).hexdigest())


def seal_bytes(data: bytes | memoryview) -> bytes:
    return seal_block(data) + bytes(memoryview(data)[USERBLOCK:])


def seal_file(path: str | Path) -> None:
    # Hashed in chunks: a feature file can be larger than the memory left over.
    h = hashlib.sha256()
    with open(path, "r+b") as f:
        f.seek(USERBLOCK)
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
        f.seek(0)
        f.write(_block(h.hexdigest()))


def verify_seal(data: bytes, name: str) -> None:
    """Refuse (ArtifactError) anything but a whole, undamaged dimctl feature file."""
    if len(data) < USERBLOCK or not data.startswith(MAGIC):
        raise ArtifactError(f"{name} is not a dimctl feature file (no dimctl header); make one with `dimctl extract`")
    fields = dict(item.split(b"=", 1) for item in data[len(MAGIC):USERBLOCK].split(b"\n")[0].split() if b"=" in item)
    if fields.get(b"schema") != str(SCHEMA).encode():
        raise ArtifactError(f"{name} has feature schema {fields.get(b'schema', b'?').decode(errors='replace')}; "
                            f"this dimctl reads schema {SCHEMA}")
    if fields.get(b"sha256") != hashlib.sha256(memoryview(data)[USERBLOCK:]).hexdigest().encode():
        raise ArtifactError(f"{name} is damaged or truncated (its checksum does not match)")


def init_feature_file(f: h5py.File, encoder: dict, dataset: dict, layers: list[str],
                      sizes: dict[str, int], shapes: dict[str, tuple[int, ...]],
                      label_shape: tuple[int, ...] = ()) -> None:
    """Create every dataset at full size, so extraction can fill them batch by batch.
    ``label_shape`` is () for one class per sample, (K,) for K binary attributes."""
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
        group.create_dataset("labels", shape=(n, *label_shape), dtype="int64")


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
        data = source
    else:
        name = name or str(source)
        if not Path(source).is_file():
            raise UsageError(f"{source}: no such file")
        data = Path(source).read_bytes()
    verify_seal(data, name)
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            return _read_validated(f, name, len(data))
    except ArtifactError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, OverflowError, MemoryError) as e:
        # h5py reports a damaged file through any of these, depending on where the damage is.
        raise ArtifactError(f"{name} is not a readable HDF5 feature file ({type(e).__name__}: {e})") from e


def _read_validated(f: h5py.File, name: str, file_size: int) -> Features:
    if f.attrs.get("dimctl.kind") != "features":
        raise ArtifactError(f"{name} is HDF5 but not a dimctl feature file; make one with `dimctl extract`")
    if int(f.attrs.get("dimctl.schema", -1)) != SCHEMA:
        raise ArtifactError(f"{name} has feature schema {f.attrs.get('dimctl.schema')}; this dimctl reads schema {SCHEMA}")
    try:
        layers = json.loads(f.attrs["dimctl.layers"])
        encoder = json.loads(f.attrs["dimctl.encoder"])
        dataset = json.loads(f.attrs["dimctl.dataset"])
    except (KeyError, ValueError, TypeError) as e:
        raise ArtifactError(f"{name}: broken dimctl attributes ({e})") from e
    if not (isinstance(layers, list) and all(isinstance(x, str) for x in layers)
            and isinstance(encoder, dict) and isinstance(dataset, dict)):
        raise ArtifactError(f"{name}: dimctl.layers must be a list of names, dimctl.encoder and dimctl.dataset objects")
    splits = {}
    for split in SPLITS:
        if split not in f:
            raise ArtifactError(f"{name} has no /{split} group")
        group = f[split]
        arrays = {}
        for key in [*layers, "labels"]:
            node = group.get(key)
            if not isinstance(node, h5py.Dataset):
                raise ArtifactError(f"{name} has no /{split}/{key} dataset")
            # A crafted header can claim any shape; never allocate more than the file could hold.
            if node.size * node.dtype.itemsize > file_size:
                raise ArtifactError(f"{name}: /{split}/{key} claims {node.shape}, more data than the file holds")
            arrays[key] = node[()]
        labels = arrays["labels"]
        if labels.dtype.kind not in "iu" or labels.ndim not in (1, 2):
            raise ArtifactError(f"{name}: /{split}/labels must be integers of shape (N,) or (N, K), got {labels.dtype} {labels.shape}")
        n = labels.shape[0]
        for layer in layers:
            a = arrays[layer]
            if a.dtype != np.float32 or a.ndim < 2 or a.shape[0] != n:
                raise ArtifactError(f"{name}: /{split}/{layer} must be float32 (N, …) with N = {n}, got {a.dtype} {a.shape}")
            if not np.isfinite(a).all():
                raise ArtifactError(f"{name}: /{split}/{layer} holds NaN or infinite values")
        splits[split] = arrays
    for layer in layers:
        if splits["train"][layer].shape[1:] != splits["test"][layer].shape[1:]:
            raise ArtifactError(f"{name}: train and test shapes of layer {layer!r} disagree")
    return Features(layers, splits, encoder, dataset, name)
