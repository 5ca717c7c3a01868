"""The generator training loop: every method trains on digits with finite losses, resumes exactly,
and stops before a non-finite update, or skips it under --nan-policy skip."""

import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dimctl.data.registry import load_dataset
from dimctl.errors import NonFiniteLoss, UsageError
from dimctl.io.artifacts import load_generator
from dimctl.io.images import grid_shape
from dimctl.objectives import generative
from dimctl.train.generate import GenerateConfig, train_generator

TINY = dict(width=4, z_dim=16, batch_size=16, log_every=1, sample_every=2, checkpoint_every=0)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.parametrize("method", ["ie", "nsgan-cp", "wgan-gp"])
def test_each_method_trains_on_digits_with_finite_losses(digits, tmp_path, method):
    result = train_generator(GenerateConfig(method=method, steps=3, **TINY), digits, tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3]
    assert all(math.isfinite(v) for m in lines for k, v in m.items() if k != "time")  # time: an ISO 8601 string
    assert {"critic_loss", "generator_loss", "penalty", "mode_overlap", "images_per_s"} <= set(lines[-1])
    if method == "ie":
        assert {"jsd_real", "jsd_fake", "encoded_real_mean", "encoded_fake_mean"} <= set(lines[-1])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    # Method defaults are resolved into the record: Gulrajani et al.'s 5 critic steps and λ = 10 for WGAN-GP.
    assert saved["critic_steps"] == generative.DEFAULT_CRITIC_STEPS[method]
    assert saved["penalty"] == generative.DEFAULT_PENALTY[method]
    artifact = load_generator(result.generator_path)
    assert artifact.training["method"] == method and artifact.config.width == 4
    with Image.open(tmp_path / "run" / "samples" / "step_00000002.png") as png:
        assert png.size == (8 * 32 + 9 * 2,) * 2 and png.mode == "L"  # 8×8 grey samples, 2-pixel gaps
    assert (tmp_path / "run" / "samples.png").is_file()


def test_resume_continues_exactly(digits, tmp_path):
    straight = train_generator(GenerateConfig(method="nsgan-cp", steps=4, **TINY), digits, tmp_path / "straight")
    train_generator(GenerateConfig(method="nsgan-cp", steps=2, **TINY), digits, tmp_path / "split")
    seen = []
    resumed = train_generator(GenerateConfig(method="nsgan-cp", steps=4, **TINY), digits, tmp_path / "split",
                              resume=True, on_progress=lambda p: seen.append(p.step))
    assert seen == [3, 4]  # it continued from the step-2 checkpoint rather than starting again
    a, b = load_file(str(straight.generator_path)), load_file(str(resumed.generator_path))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_a_non_finite_loss_stops_before_the_update(digits, tmp_path, monkeypatch):
    def broken(self, fake):
        return torch.tensor(float("nan"), requires_grad=True) * fake.sum(), {}

    monkeypatch.setattr(generative.NonSaturatingGAN, "generator_loss", broken)
    with pytest.raises(NonFiniteLoss, match="generator loss .* at step 1; no update was made"):
        train_generator(GenerateConfig(method="nsgan-cp", steps=2, **TINY), digits, tmp_path / "run")
    assert not (tmp_path / "run" / "generator.safetensors").exists()


def test_nan_policy_skip_leaves_out_only_the_bad_update(digits, tmp_path, monkeypatch):
    real, calls = generative.NonSaturatingGAN.generator_loss, []

    def bad_once(self, fake):  # the second step's generator loss is NaN; the rest are the real loss
        calls.append(1)
        loss, terms = real(self, fake)
        return (loss * float("nan"), terms) if len(calls) == 2 else (loss, terms)

    monkeypatch.setattr(generative.NonSaturatingGAN, "generator_loss", bad_once)
    config = GenerateConfig(method="nsgan-cp", steps=4, nan_policy="skip", **TINY)
    result = train_generator(config, digits, tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["skipped_steps"] for line in lines] == [0, 1, 1, 1]
    assert all(torch.isfinite(w).all() for w in load_file(str(result.generator_path)).values())
    with pytest.raises(UsageError, match="--nan-policy 'later' is not one of: stop, skip"):
        train_generator(GenerateConfig(steps=1, nan_policy="later", **TINY), digits, tmp_path / "other")


def test_bad_settings_are_usage_errors(digits, tmp_path):
    with pytest.raises(UsageError, match="--method"):
        train_generator(GenerateConfig(method="vae", steps=1, **TINY), digits, tmp_path / "a")
    with pytest.raises(UsageError, match="32 or 64"):
        train_generator(GenerateConfig(image_size=48, steps=1, **TINY), digits, tmp_path / "b")
    with pytest.raises(UsageError, match="fewer than one batch"):
        train_generator(GenerateConfig(steps=1, **{**TINY, "batch_size": 4096}), digits, tmp_path / "c")


def test_grid_shape_is_nearly_square():
    assert [grid_shape(n) for n in (1, 2, 10, 64, 65)] == [(1, 1), (1, 2), (3, 4), (8, 8), (8, 9)]
