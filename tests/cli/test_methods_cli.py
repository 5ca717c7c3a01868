"""`dimctl pretrain --method …` for every comparison method: each trains on digits through the CLI
with finite losses (one in a real subprocess, the rest in-process through the same entry point, to
spare interpreter start-ups), and its encoder round-trips through extract → probe (one through a
pipe, the rest in-process); the decoders and generators trained alongside are artifacts the other
commands accept."""

import contextlib
import io
import json
import math

import pytest

from dimctl.cli.main import run as run_in_process
from tests.cli.helpers import DIMCTL, assert_one_line_error, run, run_here, sh

SMALL = ["--dataset", "digits", "--width", "0.25", "--fc-dim", "32", "--mi-units", "16", "--epochs", "1",
         "--max-steps", "8", "--checkpoint-every", "0", "--log-every", "5"]
BASELINES = ["ae", "vae", "beta-vae", "aae", "bigan", "nat", "cpc"]
COMPANION = {"ae": "decoder", "vae": "decoder", "beta-vae": "decoder", "aae": "decoder", "bigan": "generator"}
# The terms each method logs, beyond loss / images_per_s / skipped_steps.
TERMS = {
    "ae": {"reconstruction_mse"},
    "vae": {"reconstruction_mse", "kl"},
    "beta-vae": {"reconstruction_mse", "kl"},
    "aae": {"reconstruction_mse", "prior_encoder", "prior_discriminator"},
    "bigan": {"adversarial_encoder", "adversarial_discriminator"},
    "nat": {"nat_l2"},
    "cpc": {"cpc_mi", "cpc_mi_1", "cpc_mi_2", "cpc_mi_3"},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    for method in BASELINES:
        if method == "cpc":  # one method through a real process, as a user runs it
            result = run("pretrain", *SMALL, "--method", method, "--out", root / method)
            assert result.returncode == 0, f"{method}: {result.stderr.decode()}"
            printed = result.stdout.decode()
        else:  # the rest through the same entry point in-process, sparing interpreter start-ups
            with contextlib.redirect_stdout(io.StringIO()) as stdout:
                assert run_in_process(["pretrain", *SMALL, "--method", method, "--out", str(root / method)]) == 0, method
            printed = stdout.getvalue()
        assert printed.strip() == str(root / method / "encoder.safetensors")
    return root


@pytest.mark.parametrize("method", BASELINES)
def test_method_trains_with_finite_losses_and_records_itself(runs, method):
    folder = runs / method
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 8  # --max-steps
    for m in metrics:
        assert TERMS[method] <= set(m), set(m)
        assert all(math.isfinite(v) for k, v in m.items() if k != "time")  # time: an ISO 8601 string
    config = json.loads((folder / "config.json").read_text())["config"]
    assert config["method"] == method and config["preset"] is None
    assert config["estimator"] == ("infonce" if method == "cpc" else "jsd")
    info = json.loads(run_here("inspect", folder / "encoder.safetensors").stdout)
    assert info["kind"] == "encoder" and info["training"]["method"] == method
    files = {p.name for p in folder.glob("*.safetensors")}
    assert files == {"encoder.safetensors"} | ({f"{COMPANION[method]}.safetensors"} if method in COMPANION else set())


def test_encoder_round_trips_through_extract_pipe_and_probe(runs, tmp_path):
    encoder = runs / "vae" / "encoder.safetensors"
    result = sh(f"{' '.join(DIMCTL)} extract {encoder} --layer conv,y | {' '.join(DIMCTL)} probe --classifier svm --json",
                cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert {r["layer"] for r in rows} == {"conv", "y"}


def test_every_encoder_round_trips_through_extract_and_probe(runs, tmp_path, capsys):
    files = []
    for method in BASELINES:
        files.append(tmp_path / f"{method}.h5")
        assert run_in_process(["extract", str(runs / method / "encoder.safetensors"), "--layer", "conv,y",
                               "-o", str(files[-1])]) == 0
    capsys.readouterr()
    assert run_in_process(["probe", *map(str, files), "--classifier", "svm", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["features"], r["layer"]) for r in rows} == {(str(f), layer) for f in files for layer in ("conv", "y")}
    for r in rows:
        assert r["dataset"] == "digits" and 0.1 < r["accuracy"] <= 1  # ten classes: above chance
        assert r["solver"] == "libsvm" and r["solver_converged"] is True  # 1,438 samples: the exact solver

    # An iteration cap that stops the solver short is on record and warned about, not silent.
    assert run_in_process(["probe", str(files[0]), "--layer", "y", "--classifier", "svm-torch",
                           "--svm-max-iter", "2", "--json"]) == 0
    captured = capsys.readouterr()
    (row,) = [json.loads(line) for line in captured.out.splitlines()]
    assert row["solver"] == "admm" and row["solver_iterations"] == 2 and row["solver_converged"] is False
    assert "stopped at its iteration cap (2)" in captured.err and "--svm-max-iter" in captured.err


def test_report_names_each_method(runs, tmp_path):
    assert run_in_process(["report", *[str(runs / m) for m in BASELINES], "-o", str(tmp_path / "report.md")]) == 0
    text = (tmp_path / "report.md").read_text()
    for name in ("AE", "VAE", "β-VAE β=4", "AAE γ=1", "BiGAN", "NAT", "CPC infoNCE 3 rows"):
        assert name in text, name


def test_autoencoder_decoder_is_scored_by_reconstruct(runs, tmp_path):
    folder = runs / "ae"
    info = json.loads(run_here("inspect", folder / "decoder.safetensors").stdout)
    assert info["kind"] == "decoder" and info["encoder"]["layer"] == "y"
    assert info["config"]["width"] == 0.25 and info["config"]["in_features"] == 64
    result = run("reconstruct", folder / "encoder.safetensors", "--decoder", folder / "decoder.safetensors",
                 "--out", tmp_path / "rec")
    assert result.returncode == 0, result.stderr.decode()
    row = json.loads(result.stdout)
    assert row["epochs"] == 0 and row["started_from"] == str(folder / "decoder.safetensors")
    # A decoder trained jointly for a whole epoch beats a fresh decoder (the floor).
    floor = json.loads(run_here("reconstruct", folder / "encoder.safetensors", "--epochs", "0",
                                "--out", tmp_path / "floor").stdout)
    assert row["ms_ssim"] > floor["ms_ssim"] and row["mse"] < floor["mse"]

    # Another encoder's decoder is refused.
    other = run_here("reconstruct", runs / "vae" / "encoder.safetensors", "--decoder", folder / "decoder.safetensors",
                     "--out", tmp_path / "other")
    assert_one_line_error(other, 3)


def test_bigan_generator_draws_samples(runs, tmp_path):
    generator = runs / "bigan" / "generator.safetensors"
    info = json.loads(run_here("inspect", generator).stdout)
    assert info["kind"] == "generator" and info["config"]["arch"] == "dcgan" and info["config"]["z_dim"] == 64
    result = run_here("generate", "sample", generator, "-n", "16", "-o", tmp_path / "grid.png")
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "grid.png").stat().st_size > 0


@pytest.mark.parametrize("flags, needle", [
    (["--method", "ae", "--arch", "alexnet"], "32×32"),
    (["--method", "vae", "--occlude"], "--occlude"),
    (["--method", "ae", "--beta", "2"], "--beta"),
    (["--method", "nat", "--preset", "dim-g"], "--preset"),
    (["--method", "cpc", "--cpc-rows", "8"], "--cpc-rows"),
    (["--method", "gan"], "--method"),
])
def test_bad_method_settings_are_usage_errors(flags, needle, tmp_path, capsys):
    assert run_in_process(["pretrain", *SMALL, *flags, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dimctl: error:") and needle in err, err
    assert not (tmp_path / "run").exists()
