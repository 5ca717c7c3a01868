"""`dimctl reconstruct` end to end: the run itself through a real subprocess, the set-up, the
inspection and the errors in-process (tests/cli/helpers.py `run_here`)."""

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.cli.helpers import assert_one_line_error, run, run_here


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    root = tmp_path_factory.mktemp("reconstruct")
    result = run_here("pretrain", "--dataset", "digits", "--mi-units", "32", "--epochs", "0", "--out", root / "random")
    assert result.returncode == 0, result.stderr.decode()
    return Path(result.stdout.decode().strip())


def test_reconstruct_writes_decoder_grid_and_metrics(encoder, tmp_path):
    out = tmp_path / "rec"
    # A quarter-width decoder: the paper's full one is the default, and the same code at any width.
    result = run("reconstruct", encoder, "--dataset", "digits", "--epochs", "1", "--decoder-width", "0.25", "--out", out)
    assert result.returncode == 0, result.stderr.decode()
    (line,) = result.stdout.decode().splitlines()
    row = json.loads(line)
    assert set(row) == {"command", "layer", "ms_ssim", "mse", "ms_ssim_setting", "encoder", "dataset", "epochs",
                        "decoder_width", "decoder"}
    assert row["command"] == "reconstruct" and row["layer"] == "y" and row["dataset"] == "digits" and row["epochs"] == 1
    assert row["decoder_width"] == 0.25
    assert 0 < row["ms_ssim"] <= 1 and row["mse"] > 0 and len(row["encoder"]) == 64
    assert row["ms_ssim_setting"]["scales"] == 3 and row["ms_ssim_setting"]["win_size"] == 5
    assert row["decoder"] == str(out / "decoder.safetensors")

    info = json.loads(run_here("inspect", out / "decoder.safetensors").stdout)
    assert info["kind"] == "decoder" and info["schema"] == 1 and info["step"] == 22  # 1438 // 64 steps
    assert info["config"] == {"in_features": 64, "out_channels": 1, "image_size": 32, "source_layer": "y", "width": 0.25}
    assert info["encoder"]["sha256"] == row["encoder"] and info["encoder"]["layer"] == "y"
    assert info["dataset"]["name"] == "digits"

    with Image.open(out / "reconstructions.png") as png:
        assert png.format == "PNG"
        assert png.size == (8 * 32 + 9 * 2, 2 * 32 + 3 * 2)  # 8 columns, 2 rows, 2-pixel gaps
    metrics = [json.loads(m) for m in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1] and metrics[0]["train_mse"] > 0
    assert json.loads((out / "result.json").read_text()) == row  # the folder carries its result for the report
    assert not list(out.glob(".*.tmp"))  # every temporary file was renamed


def test_bad_layer_is_a_usage_error(encoder, tmp_path):
    result = run_here("reconstruct", encoder, "--layer", "pixels", "--out", tmp_path / "rec")
    err = result.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("dimctl: error:"), err
    assert "--layer" in err and not (tmp_path / "rec").exists()


@pytest.mark.parametrize("flags, named", [(["--decoder-width", "0"], "must be positive"),
                                          (["--decoder-width", "0.5", "--decoder", "d.safetensors"], "own width")])
def test_a_decoder_width_that_cannot_be_is_a_usage_error(encoder, tmp_path, flags, named):
    result = run_here("reconstruct", encoder, *flags, "--out", tmp_path / "rec")
    assert named in assert_one_line_error(result, 2) and not (tmp_path / "rec").exists()


def test_encoder_that_does_not_fit_the_dataset_exits_3(encoder, tmp_path):
    from tests.data.test_datasets import _write_fake_cifar10

    _write_fake_cifar10(tmp_path / "data")
    result = run_here("reconstruct", encoder, "--dataset", "cifar10", "--data-root", tmp_path / "data",
                      "--out", tmp_path / "rec")
    err = result.stderr.decode()
    assert result.returncode == 3 and err.startswith("dimctl: error:") and len(err.splitlines()) == 1, err
    assert "1×32×32" in err and "3×32×32" in err and not (tmp_path / "rec").exists()
