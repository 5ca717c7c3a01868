"""Reading feature files: dimctl's own (checksum verified, io/features.py) and other tools'
(an HDF5 file of train/test float arrays and labels, an .npz, or a folder of VISSL's .npy
exports), loading only the layers asked for.

Nothing is allocated on a header's word alone. Before any data is read, the sizes the headers
declare are held against the file's real size and the machine's memory (io/hdf5_contained.py's
``check_declared_sizes``: uncompressed data no more than the file, compressed at most 64× it or
256 MiB), and every layer must have one row per label. Once read, the labels' largest class id
must fit the rows: probes size per-class arrays by it (the ADMM SVM's rows × classes targets, the
MLP's last layer, kNN's vote table), so one label of 10,000,000 in a 20-row file would ask for
gigabytes. A dataset has at least one row per class it labels (CIFAR-100: 60,000 rows for 100
classes; ImageNet: 1.33 million for 1,000), but a small sample of one with many classes may not,
so up to ``ALWAYS_ACCEPTED_CLASSES`` classes are accepted at any row count (ImageNet-21k has
21,841): at that count a probe's per-class arrays take about 100 MiB. (N, K) labels are K 0/1
attributes, sized by the file itself.
"""

import io
import json
import lzma
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from dimctl.errors import ArtifactError, UsageError
from dimctl.io.features import HDF5_SIGNATURE, SCHEMA, SPLITS, USERBLOCK, is_npz, verify_sealed
from dimctl.io.hdf5_contained import DeclaredArray, check_contained, check_declared_sizes, declared
from dimctl.io.reading import open_regular, require_file

ALWAYS_ACCEPTED_CLASSES = 1 << 15  # class ids below this pass at any row count (module docstring)


@dataclass
class Features:
    layers: list[str]
    splits: dict[str, dict[str, np.ndarray]]  # split → layer (and "labels") → array
    encoder: dict
    dataset: dict
    name: str  # where it was read from, for messages
    verified: bool = True  # a dimctl file whose checksum held; False: another tool's HDF5 or .npz, read as is
    available: list[str] | None = None  # every layer the file holds (``layers``: those read)

    def layer(self, split: str, layer: str) -> np.ndarray:
        return self.splits[split][layer]

    def __getitem__(self, split: str) -> dict[str, np.ndarray]:
        """``features["train"]["y"]``: a split's arrays by layer (and ``labels``)."""
        return self.splits[split]


Select = Callable[[list[str]], list[str]]


def read_features(source: str | Path | bytes, name: str | None = None, select: Select | None = None) -> Features:
    """Read and validate a feature file from a path or from the bytes of one (a pipe).

    ``select`` picks the layers to load from the file's list (it may raise, e.g. a UsageError for a
    layer the file lacks); only those and the labels are read, from disk, never the file whole.
    A dimctl file must pass its checksum (hashed in chunks from disk): "damaged or truncated" when
    it is shorter than its HDF5 superblock says, "modified after dimctl wrote it" otherwise. Another
    tool's HDF5 with ``train``/``test`` groups of float arrays and ``labels``, or an ``.npz`` with
    ``train_labels``, ``test_labels`` and ``train_<layer>``/``test_<layer>`` arrays, or a folder of
    VISSL's ``extract_features`` output (``PREFIX_SPLIT_LAYER_features.npy`` with ``_targets.npy``
    and ``_inds.npy`` beside it, one prefix per rank and chunk), is read without a checksum
    (``verified`` False; the CLI says so on stderr)."""
    if isinstance(source, bytes):
        name = name or "<stdin>"
        if not source:
            raise ArtifactError(f"{name}: no data (did the command before the pipe fail?)")
        size, head = len(source), source[:USERBLOCK]
    else:
        name = name or str(source)
        if Path(source).is_dir():
            return _read_vissl(Path(source), name, select)
        require_file(source)  # a FIFO or device is refused, never read (it would block or never end)
        size = Path(source).stat().st_size
        with open_regular(source) as f:
            head = f.read(USERBLOCK)
        if is_npz(head, source):
            return _read_npz(Path(source), name, select)
    verified = not head.startswith(HDF5_SIGNATURE)
    if verified:
        verify_sealed(source, head, size, name)
    try:
        with h5py.File(io.BytesIO(source) if isinstance(source, bytes) else source, "r") as f:
            return _read_validated(f, name, size, select, verified)
    except (ArtifactError, UsageError):
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, OverflowError, MemoryError) as e:
        # h5py reports a damaged file through any of these, depending on where the damage is.
        raise ArtifactError(f"{name} is not a readable HDF5 feature file ({type(e).__name__}: {e})") from e


def _pick(select: Select | None, available: list[str]) -> list[str]:
    return list(available) if select is None else list(select(list(available)))


def _read_validated(f: h5py.File, name: str, file_size: int, select: Select | None = None,
                    verified: bool = True) -> Features:
    check_contained(f, name)  # no data from outside the file, before any is read
    if verified:
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
    else:  # another tool's file: the layers are the float arrays both splits have
        if not all(isinstance(f.get(split), h5py.Group) for split in SPLITS):
            raise ArtifactError(f"{name} is HDF5 but has no /train and /test groups of features; "
                                f"make one with `dimctl extract`")
        layers = [key for key, node in f["train"].items() if key != "labels" and isinstance(node, h5py.Dataset)
                  and node.dtype.kind == "f" and isinstance(f["test"].get(key), h5py.Dataset)]
        encoder, dataset = {}, {}
    available, layers = layers, _pick(select, layers)
    nodes = {split: _datasets(f, split, [*layers, "labels"], name) for split in SPLITS}
    # Everything below is decided by the headers, before a byte of data is read or allocated.
    for split in SPLITS:
        _check_rows_agree(nodes[split], split, name)
    check_declared_sizes([declared(node, f"/{split}/{key}") for split in SPLITS for key, node in nodes[split].items()],
                         file_size, name)
    splits = {split: {key: node[()] for key, node in nodes[split].items()} for split in SPLITS}
    return _checked(Features(layers, splits, encoder, dataset, name, verified, available))


def _datasets(f: h5py.File, split: str, keys: list[str], name: str) -> dict[str, h5py.Dataset]:
    """The datasets ``keys`` of a split's group, unread."""
    if split not in f:
        raise ArtifactError(f"{name} has no /{split} group")
    group, nodes = f[split], {}
    for key in keys:
        node = group.get(key)
        if not isinstance(node, h5py.Dataset):
            raise ArtifactError(f"{name} has no /{split}/{key} dataset")
        nodes[key] = node
    return nodes


def _check_rows_agree(nodes: dict[str, h5py.Dataset], split: str, name: str) -> None:
    """One row per label in every layer, by the headers: labels of another length are refused
    without reading anything (``_checked`` checks the rest once read)."""
    labels = nodes["labels"]
    if labels.ndim not in (1, 2):
        return  # _checked names this, after reading a scalar or two
    for key, node in nodes.items():
        if node.ndim >= 1 and node.shape[0] != labels.shape[0]:
            raise ArtifactError(f"{name}: /{split}/{key} has {node.shape[0]} rows but /{split}/labels "
                                f"{labels.shape[0]}; a feature file has one label per row")


def _read_npz(path: Path, name: str, select: Select | None) -> Features:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            if not {"train_labels", "test_labels"} <= keys:
                raise ArtifactError(f"{name}: an .npz of features needs train_labels and test_labels arrays "
                                    f"(and train_<layer>, test_<layer> ones)")
            layers = [k[len("train_"):] for k in archive.files
                      if k.startswith("train_") and k != "train_labels" and "test_" + k[len("train_"):] in keys]
            available, layers = layers, _pick(select, layers)
            wanted = [f"{split}_{key}" for split in SPLITS for key in [*layers, "labels"]]
            # A deflated member of zeros shrinks 1000×, and numpy allocates what its header says.
            check_declared_sizes([_npz_member_declared(archive.zip, key) for key in wanted], path.stat().st_size, name)
            splits = {split: {key: archive[f"{split}_{key}"] for key in [*layers, "labels"]} for split in SPLITS}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, *ZIP_MEMBER_ERRORS) as e:
        raise ArtifactError(f"{name} is not a readable .npz of features ({type(e).__name__}: {e})") from e
    return _checked(Features(layers, splits, {}, {}, name, verified=False, available=available))


# What zipfile raises for a member it cannot open or inflate, beside BadZipFile: an encrypted one
# (RuntimeError: a password is required), an unknown compression method (NotImplementedError), a
# damaged deflate or lzma stream (zlib.error, LZMAError; bz2 raises OSError). Here they can only
# mean a damaged archive, so the caller turns them into ArtifactError.
ZIP_MEMBER_ERRORS = (RuntimeError, NotImplementedError, zlib.error, lzma.LZMAError)


def _npz_member_declared(archive: zipfile.ZipFile, key: str) -> DeclaredArray:
    """The array ``archive[key]`` as its .npy header declares it, read without its data; a member
    that is no .npy (which numpy would read whole, as bytes) is a ValueError."""
    member = key if key in archive.namelist() else f"{key}.npy"  # numpy's lookup order
    info = archive.getinfo(member)
    with archive.open(info) as stream:
        shape, dtype = _npy_header(stream)
    return DeclaredArray(member, shape, dtype, compressed=info.compress_type != zipfile.ZIP_STORED, stored_as=member)


def _npy_header(stream) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an .npy header (ValueError if it is none). Version 3 differs from 2
    only in the header's text encoding, which does not change the sizes."""
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(stream)
    return shape, dtype


VISSL_FEATURES = re.compile(r"(.+)_(train|test)_(.+)_features\.npy")
VISSL_KINDS = ("features", "targets", "inds")


@dataclass(frozen=True)
class _Shard:
    """One VISSL .npy file, as its header declares it (nothing of its data read yet)."""
    path: Path
    array: DeclaredArray  # stored_as: its inode, so a file hard-linked under many names counts once
    size: int


def _vissl_shard(path: Path, root: Path, name: str) -> _Shard:
    """A shard that is a regular file inside ``root`` once links are resolved (the rule of
    report/inputs.py: a folder given is read, never what its links point to), checked by stat
    before it is opened (opening a FIFO blocks), its .npy header against its own size."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ArtifactError(f"{name}: {path.name} is missing; each VISSL features file needs its targets and inds") from None
    if not stat.S_ISREG(info.st_mode):
        raise ArtifactError(f"{name}: {path.name} is not a regular file (a FIFO, device or folder); refused")
    if not path.resolve().is_relative_to(root):
        raise ArtifactError(f"{name}: {path.name} links to a file outside the folder; refused")
    with open(path, "rb") as stream:
        shape, dtype = _npy_header(stream)
    shard = _Shard(path, DeclaredArray(path.name, shape, dtype, compressed=False, stored_as=(info.st_dev, info.st_ino)),
                   info.st_size)
    check_declared_sizes([shard.array], shard.size, name)
    return shard


def _check_vissl_shapes(features: _Shard, targets: _Shard, inds: _Shard, name: str) -> None:
    """From the headers: features (N, …), targets (N,) or (N, K), integer indices (N,) or (N, 1)
    (a NaN or fractional index cannot order rows)."""
    f, t, i = features.array, targets.array, inds.array
    if len(f.shape) < 2 or len(t.shape) not in (1, 2) or not (len(i.shape) == 1 or i.shape[1:] == (1,)):
        raise ArtifactError(f"{name}: {f.label}, {t.label} and {i.label} must be (N, …), (N,) or (N, K) and (N,) "
                            f"arrays, got {f.shape}, {t.shape} and {i.shape}")
    if i.dtype.kind not in "iu":
        raise ArtifactError(f"{name}: {i.label} holds {i.dtype} indices; VISSL's are integers")
    if not (f.shape[0] == t.shape[0] == i.shape[0]):
        raise ArtifactError(f"{name}: {f.label} has {f.shape[0]} rows, {t.label} {t.shape[0]} and "
                            f"{i.label} {i.shape[0]}")


def _read_vissl(folder: Path, name: str, select: Select | None) -> Features:
    """VISSL's exported features: per split and layer, shards (one per rank and chunk) of features,
    targets and dataset indices, merged in index order; an index two ranks both hold (the
    distributed sampler pads the last batch) counts once. Targets are the labels, alike for every layer."""
    shards: dict[tuple[str, str], list[str]] = {}
    for path in sorted(folder.iterdir()):
        match = VISSL_FEATURES.fullmatch(path.name)
        if match:
            shards.setdefault((match.group(2), match.group(3)), []).append(match.group(1))
    layers = sorted({layer for split, layer in shards if split == "train" and ("test", layer) in shards})
    if not layers:
        raise UsageError(f"{name} is a folder without VISSL feature files (PREFIX_train_LAYER_features.npy and "
                         f"PREFIX_test_LAYER_features.npy); give a feature file")
    available, layers = layers, _pick(select, layers)
    splits: dict[str, dict[str, np.ndarray]] = {}
    root = folder.resolve()
    try:
        found = {(split, layer): [[_vissl_shard(folder / f"{prefix}_{split}_{layer}_{kind}.npy", root, name)
                                   for kind in VISSL_KINDS] for prefix in shards[(split, layer)]]
                 for split in SPLITS for layer in layers}
        for parts in found.values():
            for part in parts:
                _check_vissl_shapes(*part, name)
        # The folder is one file to the size rule (io/hdf5_contained.py): its distinct files' bytes
        # are the budget, each inode counted once, so one shard hard-linked under many names is
        # refused as one HDF5 dataset under many names is, before any of it is read.
        every = [shard for parts in found.values() for part in parts for shard in part]
        budget = sum({shard.array.stored_as: shard.size for shard in every}.values())
        check_declared_sizes([shard.array for shard in every], budget, name)
        for split in SPLITS:
            arrays, labels = {}, None
            for layer in layers:
                parts = [[np.load(shard.path, allow_pickle=False) for shard in part] for part in found[(split, layer)]]
                inds = np.concatenate([p[2] for p in parts]).reshape(-1)
                _, first = np.unique(inds, return_index=True)  # index order; the first copy of a padded index
                arrays[layer] = np.concatenate([p[0] for p in parts])[first]
                targets = np.concatenate([p[1] for p in parts])[first]
                targets = targets.reshape(len(targets)) if targets.ndim == 2 and targets.shape[1] == 1 else targets
                if labels is not None and not np.array_equal(labels, targets):
                    raise ArtifactError(f"{name}: the {split} targets of {layer} differ from those of {layers[0]}")
                labels = targets
            arrays["labels"] = labels
            splits[split] = arrays
    except (OSError, ValueError, EOFError) as e:
        raise ArtifactError(f"{name}: unreadable VISSL feature files ({type(e).__name__}: {e})") from e
    return _checked(Features(layers, splits, {}, {}, name, verified=False, available=available))


def _checked(feats: Features) -> Features:
    """Labels are integers (N,) or (N, K); each layer is finite floats (N, …) with train and test
    alike; another tool's floats are converted to float32, dimctl's must be float32 already.
    A file nothing could be computed from is refused here, once for every reader and command: one
    without layers, a layer of zero width (each row an empty array), (N, 0) labels (no
    attributes). Too few rows or classes depend on the command (``require_rows``, ``require_classes``):
    an empty test split is a valid file (`dimctl extract` writes one for a dataset without one)."""
    name = feats.name
    if not (feats.available or feats.layers):
        raise ArtifactError(f"{name} holds no layers of features, only labels; nothing to read")
    for split, arrays in feats.splits.items():
        labels = arrays["labels"]
        if labels.dtype.kind not in "iu" or labels.ndim not in (1, 2):
            raise ArtifactError(f"{name}: /{split}/labels must be integers of shape (N,) or (N, K), got {labels.dtype} {labels.shape}")
        if labels.ndim == 2 and labels.shape[1] == 0:
            raise ArtifactError(f"{name}: /{split}/labels has zero columns (shape {labels.shape}): no attributes to read")
        n = labels.shape[0]
        for layer in feats.layers:
            a = arrays[layer]
            if not feats.verified and a.dtype.kind == "f" and a.dtype != np.float32:
                with np.errstate(over="ignore", invalid="ignore"):  # past float32's range: inf, refused below
                    a = arrays[layer] = a.astype(np.float32)
            if a.dtype != np.float32 or a.ndim < 2 or a.shape[0] != n:
                raise ArtifactError(f"{name}: /{split}/{layer} must be float32 (N, …) with N = {n}, got {a.dtype} {a.shape}")
            if 0 in a.shape[1:]:
                raise ArtifactError(f"{name}: /{split}/{layer} has zero width (shape {a.shape}): no features to read")
            if not np.isfinite(a).all():
                raise ArtifactError(f"{name}: /{split}/{layer} holds NaN or infinite values")
    for layer in feats.layers:
        if feats.splits["train"][layer].shape[1:] != feats.splits["test"][layer].shape[1:]:
            raise ArtifactError(f"{name}: train and test shapes of layer {layer!r} disagree")
    _check_class_count(feats)
    return feats


def _check_class_count(feats: Features) -> None:
    """Class ids against the rows labelled (module constant ``ALWAYS_ACCEPTED_CLASSES``)."""
    rows = sum(arrays["labels"].shape[0] for arrays in feats.splits.values())
    limit = max(rows, ALWAYS_ACCEPTED_CLASSES)
    for split, arrays in feats.splits.items():
        labels = arrays["labels"]
        if labels.ndim != 1 or not labels.size:  # (N, K) labels are K attributes, each 0 or 1 (probe checks)
            continue
        top = int(labels.max())
        if top >= limit:
            raise ArtifactError(f"{feats.name}: /{split}/labels holds class {top}, more classes than the file's "
                                f"{rows} labelled rows can have (at most {limit} accepted); refused before a "
                                f"probe sizes per-class arrays by it")


def require_rows(feats: Features, who: str, train: int, test: int) -> None:
    """Refuse (ArtifactError) a file with fewer rows than ``train`` and ``test`` in those splits:
    ``who`` ("a probe", "mi") cannot train or evaluate on it (an empty split divides by zero, a
    single row has no spread to standardise by or shuffle)."""
    for split, least in (("train", train), ("test", test)):
        n = feats.splits[split]["labels"].shape[0]
        if n < least:
            raise ArtifactError(f"{feats.name}: the {split} split has {n} row{'' if n == 1 else 's'}; "
                                f"{who} needs at least {least} there")


def require_classes(feats: Features) -> None:
    """Refuse (ArtifactError) single-label training data of one class: no classifier can be fitted
    to it (libsvm and the solvers fail with their own errors). (N, K) attributes constant in training
    are predicted as that constant instead (evaluate/probes.py)."""
    labels = feats.splits["train"]["labels"]
    if labels.ndim == 1 and np.unique(labels).size < 2:
        raise ArtifactError(f"{feats.name}: the train split has only one class ({int(labels[0])}); "
                            f"a probe needs at least two classes in the training split")
