"""`dimctl generate train|sample|score` end to end: the CLI in-process (as `dimctl` runs it: flags,
exit codes, stdout and stderr), and a real shell pipe between two processes."""

import contextlib
import io
import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from dimctl.cli.main import run as run_cli
from tests.cli.helpers import DIMCTL, assert_one_line_error, sh

TINY = ["--width", "4", "--z-dim", "16", "--batch-size", "16", "--steps", "2", "--sample-every", "1", "--log-every", "1"]


def run(*args) -> subprocess.CompletedProcess:
    """`dimctl ARGS` in this process; the result looks like subprocess.run's, with bytes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue().encode(), err.getvalue().encode())


def rows(result) -> list[dict]:
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    result = run("generate", "train", "--method", "ie", *TINY, "--out", root / "ie")
    assert result.returncode == 0, result.stderr.decode()
    generator = Path(result.stdout.decode().strip())
    result = run("pretrain", "--dataset", "digits", "--mi-units", "32", "--epochs", "0", "--out", root / "dim")
    assert result.returncode == 0, result.stderr.decode()
    return generator, Path(result.stdout.decode().strip())


def test_train_writes_a_self_describing_generator_and_its_run(trained):
    generator, _ = trained
    run_dir = generator.parent
    assert generator == run_dir / "generator.safetensors"
    info = json.loads(run("inspect", generator).stdout)
    assert info["kind"] == "generator" and info["step"] == 2 and info["dataset"]["name"] == "digits"
    assert info["config"] == {"image_size": 32, "channels": 1, "z_dim": 16, "width": 4, "arch": "resnet"}
    assert info["training"]["method"] == "ie" and info["training"]["mu_fake"] == 1.0
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(np.isfinite([v for k, v in m.items() if k != "time"]).all() for m in metrics)
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_00000001.png", "step_00000002.png"]
    assert (run_dir / "checkpoints").is_dir() and not list(run_dir.glob(".*.tmp"))


def test_sample_grid_is_a_png_of_the_right_size_and_one_seed_repeats(trained, tmp_path):
    generator, _ = trained
    paths = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        result = run("generate", "sample", generator, "-n", 10, "--seed", seed, "-o", tmp_path / f"{name}.png")
        assert result.returncode == 0 and result.stdout.decode().strip() == str(tmp_path / f"{name}.png")
        paths[name] = tmp_path / f"{name}.png"
    with Image.open(paths["a"]) as png:
        assert png.format == "PNG"
        assert png.size == (4 * 32 + 5 * 2, 3 * 32 + 4 * 2)  # 10 images: 3 rows of 4, 2-pixel gaps
        a = np.asarray(png)
    b, c = (np.asarray(Image.open(paths[k])) for k in ("b", "c"))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_samples_h5_scores_in_a_dim_encoders_feature_space(trained, tmp_path):
    generator, encoder = trained
    out = tmp_path / "samples.h5"
    assert run("generate", "sample", generator, "-n", 50, "-o", out).returncode == 0
    with h5py.File(out) as f:
        assert f["samples/images"].shape == (50, 1, 32, 32) and f["samples/images"].dtype == np.uint8
    info = json.loads(run("inspect", out).stdout)
    assert info["kind"] == "samples" and info["generator"]["method"] == "ie"
    by_file = rows(run("generate", "score", out, "--features", encoder, "--layer", "y,fc"))
    assert [(r["metric"], r["features"], r["layer"]) for r in by_file] == [
        ("fd_dim", "dim-encoder:y", "y"), ("fd_dim", "dim-encoder:fc", "fc")]
    encoder_sha = json.loads(run("inspect", encoder).stdout)["sha256"]
    generator_sha = json.loads(run("inspect", generator).stdout)["sha256"]
    for r in by_file:
        assert r["command"] == "generate score" and r["value"] > 0 and r["encoder"] == encoder_sha
        assert r["samples"] == 50 and r["dataset"] == "digits" and r["split"] == "test" and r["reference_images"] == 359
        assert r["generator"] == generator_sha
    # Drawing from the generator directly with the same seed and count scores the same images.
    (direct,) = rows(run("generate", "score", generator, "-n", 50, "--features", encoder))
    assert direct["value"] == by_file[0]["value"]


def test_out_dir_and_pipe(trained, tmp_path):
    generator, encoder = trained
    assert run("generate", "sample", generator, "-n", 3, "--out", tmp_path / "imgs").returncode == 0
    files = sorted((tmp_path / "imgs").iterdir())
    assert [f.name for f in files] == ["sample_000000.png", "sample_000001.png", "sample_000002.png"]
    with Image.open(files[0]) as png:
        assert png.size == (32, 32) and png.mode == "L"
    # An existing output is replaced only with --force, and then wholly: no sample of the larger -n stays.
    assert run("generate", "sample", generator, "-n", 2, "--out", tmp_path / "imgs").returncode == 2
    assert len(list((tmp_path / "imgs").iterdir())) == 3
    assert run("generate", "sample", generator, "-n", 2, "--out", tmp_path / "imgs", "--force").returncode == 0
    assert sorted(f.name for f in (tmp_path / "imgs").iterdir()) == ["sample_000000.png", "sample_000001.png"]
    piped = sh(f"{' '.join(DIMCTL)} generate sample {generator} -n 30 | "
               f"{' '.join(DIMCTL)} generate score - --features {encoder}", tmp_path)
    (row,) = rows(piped)
    assert row["source"] == "-" and row["samples"] == 30 and row["metric"] == "fd_dim"


def test_inception_weights_give_fid_and_inception_score(trained, tmp_path):
    """With a weights file (here the FID network at random weights: nothing is downloaded) and a
    small image folder as the real data, so the 299×299 network runs on few images."""
    from dimctl.evaluate.frechet import FIDInception

    generator, _ = trained
    torch.manual_seed(0)
    network = FIDInception()
    for module in network.modules():  # He initialisation keeps random features from vanishing through 94 layers
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    weights = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in network.net.state_dict().items()}, str(weights))
    folder = tmp_path / "real"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L").save(folder / f"{i}.png")
    samples = tmp_path / "s.h5"
    assert run("generate", "sample", generator, "-n", 12, "-o", samples).returncode == 0
    result = run("generate", "score", samples, "--inception-weights", weights, "--dataset", "folder",
                 "--data-root", folder, "--splits", 3, "--batch-size", 12)
    fid, inception = rows(result)
    assert fid["metric"] == "fid" and fid["features"] == "inception-pool3" and fid["value"] > 0
    assert fid["reference_images"] == 2 and fid["dataset"] == "folder"  # the folder's seeded 20% test split
    assert inception["metric"] == "inception_score" and inception["splits"] == 3
    assert 1 <= inception["value"] <= 1008 and inception["std"] >= 0
    assert fid["inception_weights"] == inception["inception_weights"] and len(fid["inception_weights"]) == 64


def test_errors_are_one_line_with_the_right_exit_code(trained, tmp_path):
    generator, encoder = trained
    err = assert_one_line_error(run("generate", "score", generator), 2)
    assert "--features" in err and "--inception-weights" in err
    err = assert_one_line_error(run("generate", "score", encoder, "--features", encoder), 3)
    assert "holds a dimctl encoder, not a generator" in err
    assert_one_line_error(run("generate", "score", tmp_path / "nope.h5", "--features", encoder), 2)
    assert_one_line_error(run("generate", "sample", generator, "-o", tmp_path / "x.txt"), 2)
    assert_one_line_error(run("generate", "sample", encoder, "-o", tmp_path / "x.png"), 3)
    assert_one_line_error(run("generate", "train", "--method", "vae", "--out", tmp_path / "r"), 2)
    assert_one_line_error(run("generate", "train", *TINY, "--out", generator.parent), 2)  # needs --resume or --force
    err = assert_one_line_error(run("generate", "train", *TINY, "--lr", "0.1", "--out", generator.parent, "--resume"), 2)
    assert "--resume: lr" in err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "r").exists()


def test_samples_that_do_not_fit_the_dataset_exit_3(trained, tmp_path):
    from tests.data.test_datasets import _write_fake_cifar10

    generator, encoder = trained
    _write_fake_cifar10(tmp_path / "data")
    result = run("generate", "score", generator, "-n", 20, "--features", encoder, "--dataset", "cifar10",
                 "--data-root", tmp_path / "data")
    err = assert_one_line_error(result, 3)
    assert "1×32×32" in err and "3×32×32" in err
