import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dimctl.data import cifar
from dimctl.data.registry import DEBIAN_FASHION_MNIST, load_dataset
from dimctl.errors import ArtifactError, DatasetNotFound


def test_digits_is_real_fixed_and_32px():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.train_images.shape == (1438, 1, 32, 32) and a.test_images.shape == (359, 1, 32, 32)
    assert a.train_images.dtype == torch.uint8
    assert torch.equal(a.test_labels, b.test_labels) and torch.equal(a.train_images, b.train_images)
    assert set(a.train_labels.tolist()) == set(range(10))
    assert a.train_images.float().mean() > 10  # real strokes, not blank


def _write_fake_cifar10(root: Path, n_per_batch: int = 6) -> np.ndarray:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        first = data if first is None else first
        batch = {b"batch_label": name.encode(), b"labels": list(rng.integers(0, 10, n_per_batch)), b"data": data}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return first


def test_fake_cifar10_in_torchvision_format_loads(tmp_path):
    first = _write_fake_cifar10(tmp_path)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train_images.shape == (30, 3, 32, 32) and ds.test_images.shape == (6, 3, 32, 32)
    # torchvision's layout: each row is 1024 red, then green, then blue values, row-major.
    assert np.array_equal(ds.train_images[0].numpy(), first[0].reshape(3, 32, 32))


def test_cifar_reader_refuses_code_in_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(ArtifactError, match="refusing"):
        cifar.read_batch(path)


def test_missing_dataset_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFound, match=r"cifar-10-batches-py.*--download"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DatasetNotFound, match="--download"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DatasetNotFound, match="unknown dataset"):
        load_dataset("imagenet")


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_files_load_and_pad_to_32(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (7, 28, 28))
    _idx(raw / "train-images-idx3-ubyte.gz", train)
    _idx(raw / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 7))
    _idx(raw / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (3, 28, 28)))
    _idx(raw / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 3))
    ds = load_dataset("mnist", tmp_path)
    assert ds.train_images.shape == (7, 1, 32, 32)
    assert np.array_equal(ds.train_images[:, 0, 2:30, 2:30].numpy(), train)  # padded, not resampled
    assert ds.train_images[:, :, :2].sum() == 0


def test_truncated_idx_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / stem).write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 100) + b"\x00" * 10)
    with pytest.raises(ArtifactError, match="truncated"):
        load_dataset("mnist", tmp_path)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir() and not os.environ.get("CI"),
                    reason="apt-get install dataset-fashion-mnist (.ci/run installs it)")
def test_fashion_mnist_from_the_debian_package():
    ds = load_dataset("fashion-mnist")
    assert ds.train_images.shape == (60000, 1, 32, 32) and ds.test_images.shape == (10000, 1, 32, 32)
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10


def test_image_folder_with_classes(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    ds = load_dataset("folder", tmp_path)
    assert ds.classes == ["cat", "dog"]
    assert ds.train_images.shape == (8, 3, 32, 32) and ds.test_images.shape == (2, 3, 32, 32)
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ArtifactError, match="broken.png"):
        load_dataset("folder", tmp_path)
    skipped = load_dataset("folder", tmp_path, skip_bad_images=True)
    assert skipped.train_images.shape[0] + skipped.test_images.shape[0] == 10
    Image.fromarray(rng.integers(0, 256, (50, 70), dtype=np.uint8)).save(tmp_path / "cat" / "grey.png")  # other mode and size
    mixed = load_dataset("folder", tmp_path, skip_bad_images=True)
    assert mixed.train_images.shape[1:] == (3, 32, 32) and len(mixed.train_labels) + len(mixed.test_labels) == 11
