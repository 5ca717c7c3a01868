"""--dataset hf:DIR: a Hugging Face dataset saved with save_to_disk reads as the same images written
as an image folder, through every command (pretrain, extract, probe)."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dimctl.data.registry import load_dataset
from dimctl.errors import ArtifactError, DatasetNotFound, UsageError
from tests.cli.helpers import run_here

datasets = pytest.importorskip("datasets")

TINY = ("--epochs", "1", "--mi-units", "16", "--width", "0.25", "--fc-dim", "32", "--checkpoint-every", "0")
CLASSES = [str(d) for d in range(10)]


def _digits(n: int, offset: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """n of scikit-learn's real 8×8 digits as uint8 0–255, sorted by class (an image folder's order)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images[offset:offset + n] * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target[offset:offset + n].tolist()
    order = sorted(range(n), key=lambda i: (labels[i], i))
    return [images[i] for i in order], [labels[i] for i in order]


def _hf_split(images, labels, image="image", label="label"):
    features = datasets.Features({image: datasets.Image(), label: datasets.ClassLabel(names=CLASSES)})
    return datasets.Dataset.from_dict({image: [Image.fromarray(a) for a in images], label: labels}, features=features)


def _write_folder(root, images, labels):
    """Class sub-folders; zero-padded names keep the rows' order (the folder loader sorts by name)."""
    for i, (a, y) in enumerate(zip(images, labels)):
        (root / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / str(y) / f"{i:04d}.png")


@pytest.fixture(scope="module")
def same_digits(tmp_path_factory):
    """The same digits as a DatasetDict (train, test) on disk and as an image folder with train/ and test/."""
    root = tmp_path_factory.mktemp("hf")
    (train_x, train_y), (test_x, test_y) = _digits(160), _digits(60, offset=1000)
    datasets.DatasetDict({"train": _hf_split(train_x, train_y), "test": _hf_split(test_x, test_y)}) \
        .save_to_disk(str(root / "saved"))
    _write_folder(root / "folder" / "train", train_x, train_y)
    _write_folder(root / "folder" / "test", test_x, test_y)
    return root


def test_saved_dataset_loads_like_the_same_image_folder(same_digits):
    hf = load_dataset(f"hf:{same_digits / 'saved'}", image_size=32)
    folder = load_dataset("folder", same_digits / "folder", image_size=32)
    assert hf.train_images.shape == (160, 1, 32, 32) and hf.test_images.shape == (60, 1, 32, 32)  # grey stays 1 channel
    for split in ("train", "test"):
        assert torch.equal(hf.split(split)[0], folder.split(split)[0])
        assert torch.equal(hf.split(split)[1], folder.split(split)[1])
    assert hf.classes == CLASSES == folder.classes
    assert hf.describe()["name"] == f"hf:{(same_digits / 'saved').resolve()}"


def test_pretrain_extract_probe_from_hf_equal_the_image_folder(same_digits, tmp_path):
    saved = same_digits / "saved"
    made = run_here("pretrain", "--dataset", f"hf:{saved}", *TINY, "--out", tmp_path / "run")
    assert made.returncode == 0, made.stderr.decode()
    encoder = made.stdout.decode().strip()
    from_hf, from_folder = tmp_path / "hf.h5", tmp_path / "folder.h5"
    # No --dataset: the encoder's header names the saved dataset, found again from its absolute path.
    result = run_here("extract", encoder, "--layer", "y,fc", "-o", from_hf)
    assert result.returncode == 0, result.stderr.decode()
    result = run_here("extract", encoder, "--layer", "y,fc", "--dataset", "folder", "--data-root",
                      same_digits / "folder", "-o", from_folder)
    assert result.returncode == 0, result.stderr.decode()
    from dimctl.api import load_features

    a, b = load_features(from_hf), load_features(from_folder)
    assert a.dataset["name"] == f"hf:{saved.resolve()}" and a.dataset["num_train"] == 160
    for split in ("train", "test"):
        np.testing.assert_array_equal(a[split]["labels"], b[split]["labels"])
        for layer in ("y", "fc"):
            np.testing.assert_allclose(a[split][layer], b[split][layer], rtol=1e-6, atol=1e-6)
    assert np.ptp(a["train"]["y"], axis=0).max() > 0  # real features, not a constant
    # The Python API preprocesses a PIL image as the hf loader decoded it (PIL's bilinear resize, as a folder's).
    from dimctl.api import load_encoder

    first = Image.fromarray(_digits(160)[0][0])
    loaded = load_dataset(f"hf:{saved}", image_size=32).train_images[:1].float()
    np.testing.assert_allclose(load_encoder(encoder).preprocess(first).numpy(), (loaded / 127.5 - 1).numpy(), atol=1e-6)
    probe = run_here("probe", from_hf, "--layer", "y", "--classifier", "logreg", "--json")
    assert probe.returncode == 0, probe.stderr.decode()
    row = json.loads(probe.stdout.decode().splitlines()[0])
    assert row["accuracy"] > 0.2  # ten classes: chance is 0.1


def test_single_dataset_is_split_as_an_image_folder_and_columns_are_chosen_in_the_spec(tmp_path):
    images, labels = _digits(50)
    _hf_split(images, labels, image="img", label="digit").save_to_disk(str(tmp_path / "one"))
    _write_folder(tmp_path / "loose", images, labels)  # no train/ and test/: the seeded 80/20 split
    hf = load_dataset(f"hf:{tmp_path / 'one'}?image=img&label=digit", image_size=16)
    folder = load_dataset("folder", tmp_path / "loose", image_size=16)
    assert hf.train_images.shape[0] == 40 and hf.test_images.shape[0] == 10
    assert torch.equal(hf.train_images, folder.train_images) and torch.equal(hf.test_images, folder.test_images)
    assert torch.equal(hf.test_labels, folder.test_labels)
    with pytest.raises(UsageError, match="no image column 'image'.*img, digit"):
        load_dataset(f"hf:{tmp_path / 'one'}")
    with pytest.raises(UsageError, match="unknown key 'colour'"):
        load_dataset(f"hf:{tmp_path / 'one'}?image=img&colour=red")


def test_validation_is_the_test_split_and_string_labels_become_classes(tmp_path):
    images, labels = _digits(30)
    names = ["odd" if y % 2 else "even" for y in labels]

    def split(rows):
        return datasets.Dataset.from_dict({"image": [Image.fromarray(images[i]).convert("RGB") for i in rows],
                                           "label": [names[i] for i in rows]},
                                          features=datasets.Features({"image": datasets.Image(),
                                                                      "label": datasets.Value("string")}))

    datasets.DatasetDict({"train": split(range(20)), "validation": split(range(20, 30))}).save_to_disk(str(tmp_path / "d"))
    ds = load_dataset(f"hf:{tmp_path / 'd'}", image_size=8)
    assert ds.channels == 3 and ds.test_images.shape[0] == 10
    assert ds.classes == ["even", "odd"]
    assert ds.test_labels.tolist() == [names[i] == "odd" for i in range(20, 30)]
    assert np.array_equal(ds.test_images[0, 0].numpy(), images[20])  # 8×8 read as is: no resize at 8


def test_damaged_image_is_refused_or_skipped(tmp_path):
    images, labels = _digits(20)
    rows = [{"bytes": _png(a), "path": None} for a in images]
    rows[3] = {"bytes": b"not an image", "path": None}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    datasets.Dataset.from_dict({"image": rows, "label": labels}, features=features).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(ArtifactError, match="cannot read image .*--skip-bad-images"):
        load_dataset(f"hf:{tmp_path / 'd'}", image_size=8)
    ds = load_dataset(f"hf:{tmp_path / 'd'}", image_size=8, skip_bad_images=True)
    assert ds.train_images.shape[0] + ds.test_images.shape[0] == 19


def _png(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_missing_folder_missing_extra_and_data_root_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFound, match="no folder .*--download"):
        load_dataset(f"hf:{tmp_path / 'nowhere'}")
    with pytest.raises(UsageError, match="--data-root is not used"):
        load_dataset(f"hf:{tmp_path}", data_root=tmp_path)
    with pytest.raises(UsageError, match="not a dataset saved with save_to_disk"):
        load_dataset(f"hf:{tmp_path}")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the hf extra were not installed
    with pytest.raises(UsageError, match=r"needs the hf extra: pip install 'dimctl\[hf\]'"):
        load_dataset(f"hf:{tmp_path}")
    result = run_here("pretrain", "--dataset", f"hf:{tmp_path}", *TINY, "--out", tmp_path / "run")
    assert result.returncode == 2 and "dimctl[hf]" in result.stderr.decode()


def test_a_name_that_is_no_folder_is_asked_of_the_hub_only_with_download(tmp_path, monkeypatch):
    from huggingface_hub import constants

    images, labels = _digits(20)
    asked = []

    def fake_load_dataset(path):  # stands in for the Hub: nothing is downloaded in tests
        offline = datasets.config.HF_HUB_OFFLINE and constants.HF_HUB_OFFLINE
        asked.append((path, offline))
        if offline:  # as datasets says when the name is not in its cache
            raise ConnectionError(f"Couldn't reach the Hugging Face Hub for dataset '{path}': Offline mode is enabled.")
        if path != "someone/digits":
            raise FileNotFoundError(f"Dataset '{path}' doesn't exist on the Hub\nor cannot be accessed.")
        return datasets.DatasetDict({"train": _hf_split(images[:15], labels[:15]),
                                     "test": _hf_split(images[15:], labels[15:])})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFound, match="no dataset 'someone/digits' in the local Hugging Face cache .*--download"):
        load_dataset("hf:someone/digits")
    assert asked == [("someone/digits", True)]  # without --download, only the cache is asked
    assert not datasets.config.HF_HUB_OFFLINE and not constants.HF_HUB_OFFLINE  # and the mode is restored
    ds = load_dataset("hf:someone/digits", download=True, image_size=8)
    assert asked[-1] == ("someone/digits", False)
    assert ds.name == "hf:someone/digits" and ds.test_images.shape[0] == 5 and ds.classes == CLASSES
    with pytest.raises(DatasetNotFound, match=r"could not load 'nobody/none' \(Dataset 'nobody/none' doesn't exist on the Hub\)$"):
        load_dataset("hf:nobody/none", download=True)


def test_a_hub_dataset_in_the_local_cache_loads_offline_without_download(tmp_path, monkeypatch):
    """The cache as a Hub download leaves it (a parquet builder's prepared Arrow files under
    NAMESPACE___NAME/CONFIG/VERSION/HASH), read back by the real datasets.load_dataset in offline mode."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    images, labels = _digits(40)
    files = {}
    for split, rows in (("train", slice(0, 30)), ("test", slice(30, 40))):
        files[split] = str(tmp_path / f"{split}.parquet")
        _hf_split(images[rows], labels[rows]).to_parquet(files[split])
    cache = tmp_path / "hf-cache"
    Parquet(cache_dir=str(cache), dataset_name="tinydigits", hash="0123abcd", data_files=files).download_and_prepare()
    # Moved to where a download of someone/tinydigits from the Hub puts it: the builder refuses local
    # files under a repo_id, and names their config default-<hash of the files> (a Hub one: default).
    hub = cache / "someone___tinydigits"
    (cache / "tinydigits").rename(hub)
    (config,) = hub.iterdir()
    config.rename(hub / "default")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    ds = load_dataset("hf:someone/tinydigits", image_size=8)
    assert ds.train_images.shape == (30, 1, 8, 8) and ds.test_images.shape[0] == 10 and ds.classes == CLASSES
    assert ds.train_labels.tolist() == labels[:30]


def test_stream_decodes_the_rows_in_workers_and_trains_as_in_memory(same_digits, tmp_path):
    from safetensors.torch import load_file

    from dimctl.data.hf import open_streaming_hf
    from dimctl.data.streaming import stream_batches

    spec = f"hf:{same_digits / 'saved'}"
    memory = load_dataset(spec, image_size=32)
    streamed = open_streaming_hf(spec, 32, skip_bad_images=False)
    assert (streamed.num_train, streamed.channels, streamed.classes) == (160, 1, CLASSES)
    order = torch.randperm(160, generator=torch.Generator().manual_seed(1))
    batches = [order[i:i + 16].tolist() for i in range(0, 48, 16)]
    got = torch.cat(list(stream_batches(streamed, batches, torch.device("cpu"), workers=1)))
    assert torch.equal(got, memory.train_images[order[:48]])
    flags = ("pretrain", "--dataset", spec, *TINY, "--batch-size", "32")
    for out, extra in (("memory", ()), ("stream", ("--stream", "--workers", "1"))):
        result = run_here(*flags, *extra, "--out", tmp_path / out)
        assert result.returncode == 0, result.stderr.decode()
    a, b = (load_file(str(tmp_path / out / "encoder.safetensors")) for out in ("memory", "stream"))
    for key in a:
        assert torch.equal(a[key], b[key]), key
