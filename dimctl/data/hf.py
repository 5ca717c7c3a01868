"""Hugging Face datasets as input: ``--dataset hf:PATH`` (optional extra ``dimctl[hf]``).

PATH is a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``, read
offline, or a Hub dataset name. Without ``--download`` a name is looked up in the local Hugging
Face cache alone (``datasets`` in offline mode, so no request leaves the machine); with it,
``datasets.load_dataset`` asks the Hub, which it may download from.

Columns are chosen in the spec, ``hf:PATH?image=img&label=fine_label`` (defaults ``image`` and
``label``), so every command that takes --dataset takes them, and the encoder's header, which
records the spec, finds the same data again. Splits: a DatasetDict's ``train`` is train; its
``test``, else ``validation``, is test; a DatasetDict with train only, or a single Dataset, is
split 80/20 with the same fixed seed as an image folder. Images are decoded as an image folder's
files are (data/folder.py): greyscale if every image is, else RGB, resized bilinearly, and a
damaged image refused or, with --skip-bad-images, left out. ClassLabel names become the classes.
With --stream (pretrain), the train split's rows are decoded batch by batch by data/streaming.py's
workers, as an image folder's files are.
"""

import io
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import torch

from dimctl.data.dataset import ImageDataset, seeded_split
from dimctl.data.decode import BAD_IMAGE, open_image
from dimctl.data.folder import _to_tensor
from dimctl.data.streaming import StreamingFolder
from dimctl.errors import ArtifactError, DatasetNotFound, UsageError

PREFIX = "hf:"
COLUMNS = {"image": "image", "label": "label"}  # spec key → default column name
ROWS_PER_READ = 512  # rows read from the Arrow table at a time: the encoded bytes never all sit in memory


def is_hf(name: str) -> bool:
    return name.startswith(PREFIX)


def parse_spec(spec: str) -> tuple[str, dict[str, str], set[str]]:
    """``hf:PATH?image=…&label=…`` → (PATH, columns, the keys given explicitly)."""
    body = spec[len(PREFIX):]
    path, _, query = body.partition("?")
    if not path:
        raise UsageError(f"--dataset {spec}: give a folder or a dataset name after hf:")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise UsageError(f"--dataset {spec}: the part after ? must be image=COLUMN&label=COLUMN") from None
    columns, given = dict(COLUMNS), set()
    for key, value in pairs:
        if key not in COLUMNS:
            raise UsageError(f"--dataset {spec}: unknown key {key!r} after ?; use image=COLUMN and label=COLUMN")
        if not value:
            raise UsageError(f"--dataset {spec}: {key}= needs a column name")
        columns[key] = value
        given.add(key)
    return path, columns, given


def _spec(path: str, columns: dict[str, str], given: set[str]) -> str:
    query = urlencode({k: columns[k] for k in COLUMNS if k in given})
    return f"{PREFIX}{path}" + (f"?{query}" if query else "")


def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise UsageError("--dataset hf:… needs the hf extra: pip install 'dimctl[hf]'") from None
    return datasets


@contextmanager
def _offline(datasets):
    """datasets and huggingface_hub in offline mode for the block: a Hub name is then looked up in the
    local cache (datasets' own fallback, as with HF_HUB_OFFLINE=1), whatever the environment says.
    Both read the variable at import, so their module constants are set (and restored)."""
    from huggingface_hub import constants as hub

    saved = datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE = saved


@contextmanager
def _quiet(datasets):
    """None of datasets' own progress bars or notes (such as "Using the latest cached version"): the
    library prints nothing (restored afterwards)."""
    bars_were_off, verbosity = datasets.are_progress_bars_disabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if not bars_were_off:
            datasets.enable_progress_bars()


def _open_spec(spec: str, root: Path | None, download: bool, datasets):
    """(the name the header records, the columns, the keys given, the train and test Datasets (test
    None: split train 80/20))."""
    path, columns, given = parse_spec(spec)
    if root is not None:
        raise UsageError(f"--data-root is not used with --dataset {spec}; put the folder in the spec: hf:DIR")
    folder = Path(path).expanduser()
    if folder.is_dir():
        try:
            loaded = datasets.load_from_disk(str(folder))
        except FileNotFoundError as e:
            raise UsageError(f"{folder} is not a dataset saved with save_to_disk ({e})") from None
        # The header records the absolute folder, so `extract` without --dataset finds it from anywhere.
        name = _spec(str(folder.resolve()), columns, given)
    elif download:
        try:
            loaded = datasets.load_dataset(path)  # the Hub, or the local cache when it holds the dataset
        except Exception as e:  # the Hub's and the builders' errors share no base class; one line for each
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DatasetNotFound(f"--dataset {spec}: datasets could not load {path!r} ({detail})") from e
        name = spec
    else:
        try:
            with _offline(datasets):  # the local Hugging Face cache only: never a request to the Hub
                loaded = datasets.load_dataset(path)
        except Exception:  # not cached (datasets says so in several ways): the one line below
            raise DatasetNotFound(
                f"--dataset {spec}: no folder {folder}, and no dataset {path!r} in the local Hugging Face cache "
                f"({datasets.config.HF_DATASETS_CACHE}); give a folder written by save_to_disk, or add --download "
                f"to fetch it from the Hub") from None
        name = spec
    train, test = _splits(loaded, datasets, spec)
    return name, columns, given, train, test


def load_hf(spec: str, root: Path | None, download: bool, image_size: int, skip_bad_images: bool) -> ImageDataset:
    datasets = _import_datasets()
    with _quiet(datasets):
        name, columns, given, train, test = _open_spec(spec, root, download, datasets)
        return _to_image_dataset(name, train, test, columns, given, image_size, skip_bad_images, datasets)


def open_streaming_hf(spec: str, image_size: int, skip_bad_images: bool, download: bool = False) -> StreamingFolder:
    """The train split of ``hf:…`` for --stream: its rows decoded batch by batch by the DataLoader
    workers of data/streaming.py, in place of an image folder's files (the Arrow table is
    memory-mapped, so nothing is read into memory up front)."""
    datasets = _import_datasets()
    with _quiet(datasets):
        name, columns, given, train, test = _open_spec(spec, None, download, datasets)
        image_col, label_col = columns["image"], columns["label"]
        _check_columns(name, train, test, columns, given, datasets)
        has_labels = label_col in train.features
        if test is None:  # the same split the in-memory loader makes
            train = train.select(seeded_split(len(train), 0.2)[0].tolist())
        if len(train) == 0:
            raise UsageError(f"no training images in {name}")
        classes, to_index = _classes(name, train.features[label_col] if has_labels else None, train, test, label_col,
                                     datasets)
        labels = [-1 if v is None else to_index(v) for v in train[label_col]] if has_labels else [-1] * len(train)
        rows = _Rows(train, image_col, name)
        # As for a folder: 1 channel only if the images are greyscale, judged from a sample of them.
        sample = [rows[i] for i in range(0, len(rows), max(1, len(rows) // 256))]
        modes = [m for m in (_mode(item) for item in sample) if m is not None]  # a damaged row says nothing
        grey = bool(modes) and all(m in ("L", "1", "I;16", "I") for m in modes)
    source = name[len(PREFIX):].partition("?")[0]
    return StreamingFolder(rows, labels, 1 if grey else 3, image_size, classes, source, skip_bad_images, name=name)


class _Rows(Sequence):
    """A split's stored images, row by row, as what data/streaming.py opens in place of a file path."""

    def __init__(self, split, column: str, name: str):
        self.split = split.select_columns([column]).cast_column(column, _import_datasets().Image(decode=False))
        self.column, self.name = column, name

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        stored = self.split[int(index)][self.column] or {}
        if stored.get("bytes") is None and stored.get("path"):
            return Path(stored["path"])
        return _RowBytes(stored.get("bytes") or b"", f"row {index} of {self.name}'s train split")


class _RowBytes(io.BytesIO):
    """A row's encoded image; named in messages as the row it is."""

    def __init__(self, data: bytes, label: str):
        super().__init__(data)
        self.label = label

    def __str__(self) -> str:
        return self.label

    def __repr__(self) -> str:  # Pillow's "cannot identify image file …" shows it (not an object address)
        return "(stored bytes)"


def _mode(item) -> str | None:
    try:
        with open_image(item) as img:
            return img.mode
    except BAD_IMAGE:
        return None


def _splits(loaded, datasets, spec: str):
    """(train, test) as two Datasets, or (dataset, None) when a seeded split is to be made."""
    if isinstance(loaded, datasets.Dataset):
        return loaded, None
    if "train" not in loaded:
        raise UsageError(f"--dataset {spec} has splits {', '.join(loaded)} but no train split")
    test = next((loaded[s] for s in ("test", "validation") if s in loaded), None)
    return loaded["train"], test


def _to_image_dataset(name, train, test, columns, given, image_size, skip_bad_images, datasets) -> ImageDataset:
    _check_columns(name, train, test, columns, given, datasets)
    image_col, label_col = columns["image"], columns["label"]
    features = train.features
    has_labels = label_col in features
    classes, to_index = _classes(name, features[label_col] if has_labels else None, train, test, label_col, datasets)

    if test is None:
        train_idx, test_idx = seeded_split(len(train), 0.2)  # as an image folder without train/ and test/
        test, train = train.select(test_idx.tolist()), train.select(train_idx.tolist())
    # Read both splits together so they share one channel count (as data/folder.py does).
    opened, labels, n = [], [], 0
    for which, split in (("train", train), ("test", test)):
        images, split_labels = _read_split(name, which, split, image_col, label_col if has_labels else None,
                                           skip_bad_images, datasets)
        opened += images
        # A row without a label (None, or ClassLabel's -1) is unlabelled, as a loose image in a folder is.
        labels += [-1 if v is None else to_index(v) for v in split_labels] if has_labels else [-1] * len(images)
        n = len(opened) if which == "train" else n
    if n == 0 or n == len(opened):
        raise UsageError(f"{name}: need readable images in both the train and the test split")
    tensor = _to_tensor(opened, image_size)
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    source = name[len(PREFIX):].partition("?")[0]
    return ImageDataset(name, tensor[:n], label_tensor[:n], tensor[n:], label_tensor[n:], classes=classes,
                        source=source)


def _check_columns(name, train, test, columns, given, datasets) -> None:
    image_col, label_col = columns["image"], columns["label"]
    features = train.features
    if image_col not in features:
        raise UsageError(f"{name}: no image column {image_col!r}; it has {', '.join(features)} "
                         f"(choose one with hf:PATH?image=COLUMN)")
    if not isinstance(features[image_col], datasets.Image):
        raise UsageError(f"{name}: column {image_col!r} holds {type(features[image_col]).__name__}, not images")
    has_labels = label_col in features
    if not has_labels and "label" in given:
        raise UsageError(f"{name}: no label column {label_col!r}; it has {', '.join(features)}")
    for split in [test] if test is not None else []:
        missing = [c for c in (image_col, label_col if has_labels else None) if c and c not in split.features]
        if missing:
            raise UsageError(f"{name}: the test split has no column {missing[0]!r}")


def _classes(name, feature, train, test, label_col, datasets):
    """The class names and a function from a stored label to its index."""
    if feature is None:
        return [], None
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names), int
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        values = _present(label_col, train, test)
        if values and min(values) < 0:
            raise UsageError(f"{name}: label column {label_col!r} holds negative values")
        return [str(i) for i in range(max(values, default=-1) + 1)], int
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        values = _present(label_col, train, test)
        names = sorted(set(values))  # like class sub-folders: sorted names give the indices
        index = {v: i for i, v in enumerate(names)}
        return names, index.__getitem__
    raise UsageError(f"{name}: label column {label_col!r} holds {feature!r}; expected class labels, "
                     f"integers or strings (or choose another with hf:PATH?label=COLUMN)")


def _present(column, *splits) -> list:
    """The column's non-missing values over the splits (datasets 5 gives a column as a Column, not a list)."""
    return [v for split in splits if split is not None for v in split[column] if v is not None]


def _read_split(name, which, split, image_col, label_col, skip_bad_images, datasets):
    """The split's images as PIL images (each decoded from its stored bytes, like an image file)
    and the labels of those that could be read."""
    columns = [image_col] + ([label_col] if label_col else [])
    # Undecoded: the stored bytes go through the same checks as an image file (pixel limit, damage).
    raw = split.select_columns(columns).cast_column(image_col, datasets.Image(decode=False))
    opened, labels = [], []
    for start in range(0, len(raw), ROWS_PER_READ):
        rows = raw[start:start + ROWS_PER_READ]
        for k, stored in enumerate(rows[image_col]):
            try:
                opened.append(_open(stored))
            except BAD_IMAGE as e:
                if not skip_bad_images:
                    raise ArtifactError(f"cannot read image {start + k} of {name}'s {which} split ({e}); fix or "
                                        f"remove it, or pass --skip-bad-images") from e
                continue
            if label_col:
                labels.append(rows[label_col][k])
    return opened, labels


def _open(stored):
    if stored is None or (stored.get("bytes") is None and not stored.get("path")):
        raise ValueError("no image stored")
    source = _RowBytes(stored["bytes"], "") if stored.get("bytes") is not None else Path(stored["path"])
    with open_image(source) as img:
        img.load()
        return img.copy()
