"""A method is its module plus one registry entry: a toy method defined here, and nowhere else,
trains through the path `dimctl pretrain` uses (the CLI with its own setting's option, the config's
checks, its default estimator and run name, the loop, the adversary, the published encoder and its
companion network, --resume, the report's name)."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dimctl.cli.main import run
from dimctl.errors import UsageError
from dimctl.methods import METHODS, Companion, Method, MethodOutput, register_method
from dimctl.models.discriminators import PriorDiscriminator
from dimctl.report.measures import family, method_objective
from dimctl.settings import setting


class SpreadModel(nn.Module):
    """Y's coordinates, through a projector trained beside the encoder, pushed apart: the loss is
    minus their mean standard deviation."""

    prior = "uniform"  # the default adversary matches sigmoid(Y) to U(0, 1)

    def __init__(self, encoder: nn.Module, y_dim: int, width: int):
        super().__init__()
        self.encoder = encoder
        self.projector = nn.Linear(y_dim, width)

    def forward(self, x, index=None):
        y = self.encoder(x)["y"]
        terms = {"spread": self.projector(y).float().std(0).mean()}
        return MethodOutput(y, terms, self.loss(terms))

    def loss(self, terms):
        return -terms["spread"]


def save_projector(model, path, run):
    save_file({k: v.detach().cpu().contiguous() for k, v in model.projector.state_dict().items()}, path,
              metadata={"step": str(run.step), "estimator": run.training["estimator"]})


@dataclass(frozen=True)
class SpreadSettings:
    PANEL = "Spread"  # its --help heading

    spread_width: int = setting(8, "--method spread: outputs of the projector whose spread is maximised.",
                                positive=True)


class Spread(Method):
    name, label, help = "spread", "Spread", "spread (a test's own method)"
    weights = {"gamma": 0.5}
    default_estimator = "infonce"  # recorded, though the toy loss uses none
    companions = (Companion("projector.safetensors", save_projector),)
    settings = SpreadSettings  # its own: --spread-width

    def build(self, config, encoder, encoder_config, num_train):
        discriminator = PriorDiscriminator(config.encoder.y_dim) if config.objective.gamma > 0 else None
        return SpreadModel(encoder, config.encoder.y_dim, self.own_settings(config).spread_width), discriminator

    def validate(self, config):
        if config.optimiser.batch_size < 8:
            raise UsageError("--method spread needs --batch-size ≥ 8 (a standard deviation over the batch)")

    def describe(self, settings, weight=str):
        return f"{self.label} γ={weight(settings.get('gamma'))}"


@pytest.fixture
def spread():
    register_method(Spread())
    yield
    METHODS.pop("spread")


FLAGS = ["--method", "spread", "--width", "0.125", "--fc-dim", "32", "--batch-size", "64", "--epochs", "1",
         "--checkpoint-every", "0", "--log-every", "1", "--precision", "fp32"]


def test_a_registered_method_trains_through_the_pretrain_command(spread, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no --out: the method names its run folder under runs/
    out = tmp_path / "runs" / "spread-digits"
    assert run(["pretrain", *FLAGS, "--spread-width", "4"]) == 0
    assert capsys.readouterr().out.strip() == str(Path("runs/spread-digits/encoder.safetensors"))
    settings = json.loads((out / "config.json").read_text())["config"]
    assert settings["method"] == "spread" and settings["gamma"] == 0.5 and settings["alpha"] == settings["beta"] == 0
    assert settings["estimator"] == "infonce" and settings["preset"] is None and settings["spread_width"] == 4
    # its companion network is published beside the encoder, as trained, at its own setting's width
    projector = load_file(out / "projector.safetensors")
    assert projector["weight"].shape == (4, 64) and torch.isfinite(projector["weight"]).all()
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"spread", "prior_encoder", "prior_discriminator", "loss"} <= set(lines[0])
    # The logged loss is the method's own (its loss plus γ·prior), not the adversary's.
    assert lines[-1]["loss"] == pytest.approx(-lines[-1]["spread"] + 0.5 * lines[-1]["prior_encoder"], rel=1e-5)
    assert lines[-1]["spread"] > lines[0]["spread"]  # it trained: Y spread out
    assert family(settings) == "Spread" and method_objective(settings) == "Spread γ=0.5"
    # --resume hands the run's recorded settings back to the method (its unused weights as 0) and extends it
    assert run(["pretrain", "--method", "spread", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    resumed = json.loads((out / "config.json").read_text())["config"]
    assert resumed == {**settings, "epochs": 2}
    # a --force'd run of another method in that folder removes the companion: it belongs to this encoder
    assert run(["pretrain", "--method", "ae", *FLAGS[2:], "--out", str(out), "--force"]) == 0
    assert not (out / "projector.safetensors").exists() and (out / "decoder.safetensors").is_file()


def test_a_registered_method_owns_its_checks_and_weights(spread, tmp_path, capsys):
    assert run(["pretrain", *FLAGS, "--batch-size", "4", "--out", str(tmp_path / "a")]) == 2
    assert "--method spread needs --batch-size ≥ 8" in capsys.readouterr().err
    assert run(["pretrain", *FLAGS, "--beta", "1", "--out", str(tmp_path / "b")]) == 2
    assert "--beta does not apply to --method spread (its weights: --gamma)" in capsys.readouterr().err
    assert run(["pretrain", *FLAGS, "--occlude", "--out", str(tmp_path / "c")]) == 2
    assert "--occlude is a DIM option" in capsys.readouterr().err
    assert run(["pretrain", *FLAGS, "--cpc-rows", "4", "--out", str(tmp_path / "d")]) == 2  # another method's own setting
    assert "--cpc-rows is a --method cpc setting; --method spread does not use it" in capsys.readouterr().err
    assert run(["pretrain", "--spread-width", "4", "--epochs", "0", "--out", str(tmp_path / "e")]) == 2
    assert "--spread-width is a --method spread setting; --method dim does not use it" in capsys.readouterr().err
    assert run(["pretrain", *FLAGS, "--spread-width", "0", "--out", str(tmp_path / "f")]) == 2  # its declared range
    assert "Invalid value for '--spread-width': 0 must be positive" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abcdef")


def test_registered_methods_and_their_entries():
    assert list(METHODS) == ["dim", "ae", "vae", "beta-vae", "aae", "bigan", "nat", "cpc"]
    assert {m.image_size for m in METHODS.values()} == {None, 32}
    assert all(METHODS[name].name == name and METHODS[name].help for name in METHODS)
    with pytest.raises(UsageError, match="does not apply to --method ae"):
        METHODS["ae"].resolve_weights(None, {"alpha": None, "beta": 1.0, "gamma": None})
    assert METHODS["beta-vae"].resolve_weights(None, {"alpha": None, "beta": None, "gamma": None}) == {
        "alpha": 0.0, "beta": 4.0, "gamma": 0.0}
    assert METHODS["dim"].resolve_weights("dim-g", {"alpha": None, "beta": None, "gamma": 0.0})["gamma"] == 0.0
