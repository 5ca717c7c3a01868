"""STL-10, Tiny ImageNet and CelebA read from tiny fake copies of their on-disk layouts."""

import numpy as np
import pytest
import torch
from PIL import Image

from dimctl.data.decode import decode_images
from dimctl.data.registry import load_dataset
from dimctl.data.transforms import augment, centre_crop, random_crop_to, resize
from dimctl.errors import ArtifactError, DatasetNotFound, UsageError
from tests.data.fakes import ATTRIBUTES, write_celeba, write_stl10, write_tiny_imagenet


def test_stl10_reads_torchvision_binary_layout_and_keeps_unlabelled_for_pretraining(tmp_path):
    written = write_stl10(tmp_path)
    ds = load_dataset("stl10", tmp_path, image_size=96)
    assert ds.train_images.shape == (6, 3, 96, 96) and ds.test_images.shape == (4, 3, 96, 96)
    assert np.array_equal(ds.train_images.numpy(), written["train_images"])  # the transpose to rows is right
    assert np.array_equal(ds.test_labels.numpy(), written["test_labels"])  # 1–10 on disk, 0–9 here
    assert ds.classes[0] == "airplane" and not ds.multi_label
    pool = ds.pretraining_pool()
    assert pool.train_images.shape[0] == 6 + 5 and pool.test_images.shape[0] == 4
    assert np.array_equal(pool.train_images[6:].numpy(), written["unlabeled_images"])
    assert (pool.train_labels[6:] == -1).all() and torch.equal(pool.train_labels[:6], ds.train_labels)
    assert pool.pretraining_pool() is pool


def test_stl10_below_96_px_is_the_central_64_window(tmp_path):
    written = write_stl10(tmp_path)
    at64 = load_dataset("stl10", tmp_path, image_size=64)
    assert np.array_equal(at64.test_images.numpy(), written["test_images"][:, :, 16:80, 16:80])
    at32 = load_dataset("stl10", tmp_path, image_size=32)
    assert torch.equal(at32.train_images, resize(at64.train_images, 32))
    assert at64.pretraining_pool().train_images.shape == (11, 3, 64, 64)


def test_stl10_without_unlabelled_file_and_damaged_files(tmp_path):
    write_stl10(tmp_path)
    (tmp_path / "stl10_binary" / "unlabeled_X.bin").unlink()
    ds = load_dataset("stl10", tmp_path, image_size=96)
    assert ds.pretraining_pool() is ds
    with open(tmp_path / "stl10_binary" / "test_X.bin", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="test_X.bin.*not a whole number"):
        load_dataset("stl10", tmp_path, image_size=96)


def test_tiny_imagenet_folder_layout(tmp_path):
    written = write_tiny_imagenet(tmp_path)
    ds = load_dataset("tiny-imagenet", tmp_path, image_size=64)
    assert ds.classes == ["n01", "n02", "n03"]  # sorted wnids give the class indices
    assert ds.train_images.shape == (10, 3, 64, 64) and ds.test_images.shape == (4, 3, 64, 64)
    # Classes in sorted order; images in file-name order within each class.
    first_n02 = ds.train_labels.tolist().index(1)
    assert np.array_equal(ds.train_images[first_n02].numpy(), written["train"][("n02", 0)])
    grey = first_n02 + 3  # n02_3 is the greyscale one, loaded as three equal channels
    assert np.array_equal(ds.train_images[grey].numpy(), written["train"][("n02", 3)])
    image, wnid = written["val"][2]
    assert np.array_equal(ds.test_images[2].numpy(), image) and ds.test_labels[2] == ds.classes.index(wnid)
    assert load_dataset("tiny-imagenet", tmp_path, image_size=32).train_images.shape == (10, 3, 32, 32)


def test_tiny_imagenet_has_no_download_and_says_so(tmp_path):
    with pytest.raises(UsageError, match="torchvision has no loader.*tiny-imagenet-200.zip"):
        load_dataset("tiny-imagenet", tmp_path, download=True)
    with pytest.raises(DatasetNotFound, match="wnids.txt"):
        load_dataset("tiny-imagenet", tmp_path)


def test_tiny_imagenet_bad_annotation_names_the_line(tmp_path):
    write_tiny_imagenet(tmp_path)
    with open(tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt", "a") as f:
        f.write("val_9.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(ArtifactError, match="line 5"):
        load_dataset("tiny-imagenet", tmp_path)


def test_celeba_attributes_are_multi_label_and_partitions_split(tmp_path):
    written = write_celeba(tmp_path)
    ds = load_dataset("celeba", tmp_path, image_size=178)
    train, test = written["partition"] == 0, written["partition"] == 2  # validation (1) left out
    assert ds.multi_label and ds.classes == ATTRIBUTES
    assert ds.train_labels.shape == (5, 3) and ds.test_labels.shape == (3, 3) and ds.train_labels.dtype == torch.int64
    assert np.array_equal(ds.train_labels.numpy(), written["attributes"][train])
    # The central 178×178 square of each 178×218 face.
    assert np.array_equal(ds.test_images.numpy(), written["images"][test][:, :, 20:198, :])
    assert ds.describe()["attributes"] == ATTRIBUTES and ds.describe()["multi_label"]
    assert load_dataset("celeba", tmp_path, image_size=64).train_images.shape == (5, 3, 64, 64)


def test_celeba_missing_and_malformed(tmp_path):
    with pytest.raises(DatasetNotFound, match="img_align_celeba.*list_attr_celeba.txt"):
        load_dataset("celeba", tmp_path)
    write_celeba(tmp_path)
    path = tmp_path / "celeba" / "list_attr_celeba.txt"
    path.write_text(path.read_text().replace(" 1", " 0", 1))
    with pytest.raises(ArtifactError, match="list_attr_celeba.txt line"):
        load_dataset("celeba", tmp_path)


def test_real_jpegs_decode_to_their_colours_at_reduced_scale(tmp_path):
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(4, 4, 3))
    blocks = np.kron(colours, np.ones((32, 32, 1))).astype(np.uint8)  # 128×128: 4×4 blocks of 32 px
    Image.fromarray(blocks).save(tmp_path / "a.jpg", quality=95)
    out = decode_images([tmp_path / "a.jpg"], 32)[0].numpy().transpose(1, 2, 0).astype(int)  # blocks of 8 px
    centres = out[4::8, 4::8]
    assert out.shape == (32, 32, 3) and np.abs(centres - colours).max() < 8  # measured: 1
    with pytest.raises(ArtifactError, match="cannot read image"):
        decode_images([tmp_path / "missing.jpg"], 32)


def test_random_crop_to_takes_windows_of_the_image():
    x = torch.arange(3 * 2 * 12 * 12, dtype=torch.uint8).view(3, 2, 12, 12)
    out = random_crop_to(x, 8, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 2, 8, 8)
    for n in range(3):
        assert any(torch.equal(x[n, :, dy:dy + 8, dx:dx + 8], out[n]) for dy in range(5) for dx in range(5))
    offsets = {tuple(random_crop_to(x, 8)[0, 0, 0, :1].tolist()) for _ in range(30)}
    assert len(offsets) > 3  # the window moves
    assert torch.equal(centre_crop(x, 8), x[..., 2:10, 2:10])
    assert augment(x, crop_size=8, hflip=True).shape == (3, 2, 8, 8)
    with pytest.raises(ValueError):
        random_crop_to(x, 13)


def test_chunked_resize_matches_one_pass():
    x = torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8)
    assert torch.equal(resize(x, 11, chunk=2), resize(x, 11, chunk=100))
