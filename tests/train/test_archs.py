"""Every --arch trains a few steps, round-trips through safetensors (rebuilt from its header alone)
and extracts features whose shapes match its taps; the pretrain flags that choose them."""

import json
import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dimctl.cli.main import run
from dimctl.data.registry import load_dataset
from dimctl.evaluate.extract import iter_features
from dimctl.io.artifacts import load_encoder
from dimctl.models.encoders import ENCODERS, INPUT_SIZES, EncoderConfig, build_encoder, tap_shapes
from dimctl.train.config import PretrainConfig
from dimctl.train.pretrain import pretrain
from tests.data.fakes import write_stl10

SMALL = dict(width=0.125, fc_dim=32, mi_units=16, batch_size=8, checkpoint_every=0, log_every=1)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """An image folder of 16 training and 4 test images (two classes of grey 20×20 squares)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 2)):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, size=(20, 20), dtype=np.uint8)).save(root / split / label / f"{i}.png")
    return root


@pytest.mark.parametrize("arch", list(ENCODERS))
def test_arch_trains_round_trips_and_extracts(arch, images, tmp_path, capsys):
    size = INPUT_SIZES[arch]
    data = load_dataset("folder", images, image_size=size)  # 20-px images resized to the encoder's size
    config = PretrainConfig.of(arch=arch, epochs=2, **SMALL)
    result = pretrain(config, data, tmp_path / "run")
    assert result.steps == 4 and all(np.isfinite(v) for v in result.final_metrics.values())

    artifact = load_encoder(result.encoder_path)  # the architecture comes from the header alone
    assert artifact.config == EncoderConfig(arch=arch, in_channels=1, image_size=size, fc_dim=32, width=0.125)
    stored = load_file(str(result.encoder_path))
    initial = build_encoder(artifact.config).state_dict()
    assert set(stored) == set(initial)
    assert any(not torch.equal(stored[k], initial[k]) for k in stored if k.endswith("weight"))  # it trained

    out = tmp_path / "f.h5"
    assert run(["extract", str(result.encoder_path), "--dataset", "folder", "--data-root", str(images),
                "--layer", "local,conv,fc,y", "-o", str(out)]) == 0
    shapes = tap_shapes(artifact.config)
    with h5py.File(out) as f:
        for layer, shape in shapes.items():
            assert f["train"][layer].shape == (16, *shape) and f["test"][layer].shape == (4, *shape)
        _, first = next(iter_features(artifact.encoder, data.test_images, ["y"], 4))
        np.testing.assert_allclose(f["test"]["y"][:], first["y"], rtol=1e-5, atol=1e-5)


def test_pretrain_cli_arch_flag_loads_at_the_encoders_size(images, tmp_path, capsys):
    assert run(["pretrain", "--arch", "alexnet", "--dataset", "folder", "--data-root", str(images), "--width", "0.125",
                "--fc-dim", "16", "--mi-units", "8", "--epochs", "1", "--batch-size", "8", "--checkpoint-every", "0",
                "--out", str(tmp_path / "a")]) == 0
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["config"]["arch"] == "alexnet" and saved["encoder"]["image_size"] == 64
    assert saved["dataset"]["image_size"] == 64
    assert load_encoder(tmp_path / "a" / "encoder.safetensors").config.arch == "alexnet"


@pytest.mark.parametrize("flags, message", [
    (["--arch", "vgg"], "--arch 'vgg' is not one of"),
    (["--arch", "alexnet", "--image-size", "32"], "takes 64×64 images"),
    (["--arch", "alexnet", "--crop-size", "64"], "needs --image-size larger"),
    (["--crop-size", "16", "--image-size", "48"], "crops must be 32"),
    (["--width", "0"], "--width"),
])
def test_pretrain_cli_refuses_inconsistent_encoder_flags(tmp_path, capsys, flags, message):
    assert run(["pretrain", *flags, "--out", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_stl10_pretrains_on_random_crops_of_its_pool(tmp_path):
    write_stl10(tmp_path, n_train=10, n_test=4, n_unlabeled=22)
    pool = load_dataset("stl10", tmp_path, image_size=96).pretraining_pool()
    config = PretrainConfig.of(arch="alexnet", image_size=96, crop_size=64, hflip=True, epochs=1, **SMALL)
    result = pretrain(config, pool, tmp_path / "run")
    assert result.steps == 4  # 32 pooled images (10 labelled + 22 unlabelled) at 8 per step
    artifact = load_encoder(result.encoder_path)
    assert artifact.config.image_size == 64 and artifact.dataset["image_size"] == 96
    # Evaluation loads STL-10 at the encoder's size: the central 64×64 windows.
    assert load_dataset("stl10", tmp_path, image_size=artifact.config.image_size).test_images.shape[-1] == 64
