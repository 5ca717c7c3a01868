"""Where an estimator's arrays come from: a feature file (path or stdin) or an encoder run over a dataset."""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dimctl.cli.output import note_unverified
from dimctl.cli.stdin_frames import read_stdin_bytes
from dimctl.data.dataset import ImageDataset
from dimctl.data.registry import load_dataset
from dimctl.errors import ArtifactError, UsageError
from dimctl.evaluate.extract import extract_layer
from dimctl.io.artifacts import EncoderArtifact, load_encoder
from dimctl.io.feature_reader import Features, read_features, require_rows

if TYPE_CHECKING:
    from dimctl.models.encoders import EncoderConfig

LABELS = "labels"
ENCODER_FILE = "encoder.safetensors"  # what pretrain and finetune publish in their run folder


@dataclass
class SplitArrays:
    train: np.ndarray
    test: np.ndarray
    encoder: str | None  # sha256 of the encoder the arrays came from
    dataset: str | None


def open_features(source: str, layers: tuple[str, ...] | None = None) -> Features:
    """A feature file (path or - for stdin), reading only ``layers`` of it when given (labels always),
    for a critic trained on one split and evaluated on the other (mi, ndm): each split needs two rows
    to standardise and shuffle (the reader has refused zero-width layers). Refused before the
    unverified note, so a refusal is the command's one line."""
    select = None if layers is None else (lambda available: [name for name in available if name in layers])
    feats = read_features(read_stdin_bytes() if source == "-" else Path(source), select=select)
    require_rows(feats, "an estimate", train=2, test=2)
    note_unverified(feats)
    return feats


def feature_layer(feats: Features, layer: str) -> SplitArrays:
    """A layer, or the labels as one-hot vectors, from both splits of a feature file."""
    if layer == LABELS:
        train, test = feats.layer("train", LABELS), feats.layer("test", LABELS)
        if train.ndim == 1:
            if (train < 0).any() or (test < 0).any():
                raise UsageError(f"{feats.name} has no class labels for every image")
            classes = int(max(train.max(), test.max())) + 1
            train, test = np.eye(classes, dtype=np.float32)[train], np.eye(classes, dtype=np.float32)[test]
    elif layer in feats.layers:
        train, test = feats.layer("train", layer), feats.layer("test", layer)
    else:
        raise UsageError(f"{feats.name} has no layer {layer!r}; it has {', '.join([*(feats.available or feats.layers), LABELS])}")
    return SplitArrays(train.reshape(train.shape[0], -1), test.reshape(test.shape[0], -1),
                       feats.encoder.get("sha256"), feats.dataset.get("name"))


def encoder_file(path: Path) -> Path:
    """A run folder stands for the encoder it publishes (`dimctl extract runs/fm`); any other path is itself."""
    if path.is_dir():
        if (path / ENCODER_FILE).is_file():
            return path / ENCODER_FILE
        raise UsageError(f"{path} is a folder without {ENCODER_FILE}; give an encoder .safetensors file, or the "
                         f"run folder of `dimctl pretrain` or `finetune` once it has published its encoder")
    return path


def encoder_argument(value: Path | None) -> Path | None:
    """Callback of the commands' encoder argument: a run folder becomes its encoder file while the
    command line is parsed, so every path the command records, names its output after or prints
    in a resume hint is the file's."""
    return None if value is None else encoder_file(value)


def dataset_for(artifact: EncoderArtifact, dataset: str | None, data_root: Path | None) -> tuple[str, Path | None]:
    """The dataset an encoder command runs on: the one given, else the one the encoder was trained
    on (its header), whose image folder is reused when it was a `folder` and no --data-root is given."""
    if dataset is not None:
        return dataset, data_root
    trained_on = artifact.dataset  # load_encoder has checked the header holds it
    name = trained_on.get("name", "digits")
    if name == "folder" and data_root is None and trained_on.get("source"):
        data_root = recorded_folder(artifact.path, trained_on["source"])
    return name, data_root


def recorded_folder(encoder: Path, source: str) -> Path:
    """The image folder an encoder's header records, read without --data-root only when it is the
    run's own: inside the folder that holds the encoder (links resolved). The header is a file's
    claim, not the user's word: a crafted one naming "/etc" must not make dimctl scan a folder the
    user never named. Any other recorded folder is a hint that --data-root confirms."""
    folder, run = Path(source).resolve(), encoder.resolve().parent
    if folder == run or run in folder.parents:
        return folder
    raise UsageError(f"{encoder} was trained on the image folder {source!r}, which is not read unless you name "
                     f"it: pass --data-root {source!r} (or another --dataset)")


def check_encoder_fits(encoder_path: Path, config: "EncoderConfig", dataset: str, data: ImageDataset) -> None:
    """An encoder only reads images of the channels and size it was trained on (exit 3 otherwise)."""
    if data.channels != config.in_channels or data.image_size != config.image_size:
        raise ArtifactError(
            f"{encoder_path} takes {config.in_channels}×{config.image_size}×{config.image_size} images "
            f"but {dataset} has {data.channels}×{data.image_size}×{data.image_size}; use an encoder trained on this kind of data")


def encoder_and_dataset(encoder: Path, dataset: str | None, data_root: Path | None, download: bool,
                        device: torch.device, skip_bad_images: bool = False) -> tuple[EncoderArtifact, ImageDataset]:
    """Load an encoder and the dataset it will run on (default: its own); refuse a pair that does not fit (exit 3)."""
    artifact = load_encoder(encoder, device=device)
    dataset, data_root = dataset_for(artifact, dataset, data_root)
    data = load_dataset(dataset, data_root, download, image_size=artifact.config.image_size,
                        skip_bad_images=skip_bad_images)
    check_encoder_fits(encoder, artifact.config, dataset, data)
    return artifact, data


def encoder_layer(artifact: EncoderArtifact, data: ImageDataset, layer: str, device: torch.device,
                  batch_size: int = 256) -> SplitArrays:
    """Run the frozen encoder over both splits and keep one tap."""
    arrays = {}
    for split in ("train", "test"):
        images, _ = data.split(split)
        try:
            arrays[split] = extract_layer(artifact.encoder, images, layer, batch_size, device)
        except KeyError:
            raise UsageError(f"the encoder has no layer {layer!r}; choose local, conv, fc or y") from None
    return SplitArrays(arrays["train"], arrays["test"], artifact.sha256, data.name)


def pick_device(cpu: bool) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
