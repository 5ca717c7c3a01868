"""Semi-supervised fine-tuning: the labelled subset, a real run on digits, the artifact it leaves."""

import json

import pytest
import torch
from safetensors.torch import load_file

from dimctl.cli.main import run
from dimctl.io.artifacts import load_encoder
from dimctl.train.finetune import balanced_subset
from tests.data.fakes import write_celeba


def test_balanced_subset_takes_the_fraction_of_every_class_seeded():
    labels = torch.tensor([0] * 50 + [1] * 20 + [2] * 3 + [-1] * 10)
    chosen = balanced_subset(labels, 0.1, seed=0)
    counts = torch.bincount(labels[chosen], minlength=3).tolist()
    assert counts == [5, 2, 1]  # round(10%) per class, at least one; unlabelled (-1) never
    assert torch.equal(chosen, balanced_subset(labels, 0.1, seed=0))
    assert not torch.equal(chosen, balanced_subset(labels, 0.1, seed=1))
    assert chosen.unique().numel() == chosen.numel() and torch.equal(chosen, chosen.sort().values)
    assert balanced_subset(labels, 1.0, seed=0).numel() == 73


def test_finetune_on_digits_trains_the_encoder_and_publishes_it(tmp_path, capsys):
    assert run(["pretrain", "--epochs", "0", "--mi-units", "8", "--out", str(tmp_path / "random")]) == 0
    random_path = tmp_path / "random" / "encoder.safetensors"
    capsys.readouterr()
    out = tmp_path / "ft"
    assert run(["finetune", str(random_path), "--labels-fraction", "0.1", "--epochs", "10", "--lr", "1e-3",
                "--out", str(out)]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out)
    assert "finetune step 30/30 epoch 10/10 loss" in captured.err
    assert row["command"] == "finetune" and row["dataset"] == "digits" and row["labels_fraction"] == 0.1
    assert row["n_labels"] == 144 and row["steps"] == 30  # 10% of each digit's 1,438 training images
    assert row["encoder"] == load_encoder(random_path).sha256
    # Measured (seed 0, 144 labels, 10 epochs): 0.947; the same classifier on the frozen random encoder
    # 0.936, chance 0.10. The bar catches a run that learns nothing or mixes up the labels.
    assert row["accuracy"] > 0.85, row
    assert json.loads((out / "finetune.jsonl").read_text()) == row

    # The whole encoder up to conv trained; fc and Y took no part.
    before, after = load_file(str(random_path)), load_file(str(out / "encoder.safetensors"))
    assert set(before) == set(after)
    for key in before:
        same = torch.equal(before[key], after[key])
        if key.startswith(("block1.0", "block2.0", "block3.0")):
            assert not same, key
        if key.startswith(("fc.0", "head")):
            assert same, key
    artifact = load_encoder(out / "encoder.safetensors")
    training = json.loads(artifact.metadata["dimctl.training"])
    assert training["command"] == "finetune" and training["pretrained"]["sha256"] == row["encoder"]
    assert artifact.sha256 == row["finetuned_sha256"]
    # extract and probe accept the fine-tuned encoder.
    assert run(["extract", str(out / "encoder.safetensors"), "--layer", "conv", "-o", str(tmp_path / "f.h5")]) == 0
    assert run(["probe", str(tmp_path / "f.h5"), "--classifier", "logreg", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["accuracy"] > 0.85


def test_finetune_refuses_bad_fractions_and_multi_label_data(tmp_path, capsys):
    assert run(["pretrain", "--epochs", "0", "--mi-units", "8", "--out", str(tmp_path / "r")]) == 0
    encoder = str(tmp_path / "r" / "encoder.safetensors")
    assert run(["finetune", encoder, "--labels-fraction", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--labels-fraction must be in (0, 1]" in capsys.readouterr().err
    write_celeba(tmp_path)
    assert run(["finetune", encoder, "--dataset", "celeba", "--data-root", str(tmp_path), "--out", str(tmp_path / "x")]) == 3
    assert "takes 1×32×32 images" in capsys.readouterr().err  # a 1-channel encoder and RGB faces
    assert not (tmp_path / "x").exists()


def test_finetune_library_refuses_multi_label(tmp_path):
    from dimctl.data.registry import load_dataset
    from dimctl.errors import UsageError
    from dimctl.models.encoders import EncoderConfig, build_encoder
    from dimctl.train.finetune import FinetuneConfig, finetune

    write_celeba(tmp_path)
    data = load_dataset("celeba", tmp_path, image_size=32)
    encoder = build_encoder(EncoderConfig(in_channels=3, width=0.125, fc_dim=8))
    with pytest.raises(UsageError, match="multi-label"):
        finetune(encoder, data, FinetuneConfig(cpu=True), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _small_encoder(nan_weight: bool = False):
    from dimctl.models.encoders import EncoderConfig, build_encoder

    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(in_channels=1, image_size=32, width=0.125, fc_dim=16))
    if nan_weight:
        with torch.no_grad():
            next(encoder.parameters()).view(-1)[0] = float("nan")
    return encoder


@pytest.fixture(scope="module")
def digits():
    from dimctl.data.registry import load_dataset

    return load_dataset("digits")


def test_finetune_stopped_then_resumed_equals_an_uninterrupted_run(tmp_path, digits):
    from dimctl.errors import Interrupted
    from dimctl.train.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(labels_fraction=0.1, epochs=3, lr=1e-3, checkpoint_every=2, cpu=True)
    whole = finetune(_small_encoder(), digits, config, tmp_path / "whole")
    polls = iter(range(1000))
    with pytest.raises(Interrupted, match=r"stopped at step 4/9 .*dimctl finetune ENCODER --out .* --resume"):
        finetune(_small_encoder(), digits, config, tmp_path / "cut", should_stop=lambda: next(polls) == 3)
    assert (tmp_path / "cut" / "checkpoints").is_dir()
    resumed = finetune(_small_encoder(), digits, config, tmp_path / "cut", resume=True)
    assert whole.steps == resumed.steps == 9  # 144 labels, batches of 64: 3 steps an epoch
    assert resumed.accuracy == whole.accuracy
    for (name, a), b in zip(whole.encoder.state_dict().items(), resumed.encoder.state_dict().values()):
        assert torch.equal(a, b), name
    lines = [[json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("whole", "cut")]
    assert [(r["step"], r["epoch"], r["loss"]) for r in lines[0]] == [(r["step"], r["epoch"], r["loss"]) for r in lines[1]]
    assert [r["step"] for r in lines[0]] == [3, 6, 9]  # one line per epoch
    saved = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert saved["command"] == "finetune" and saved["n_labels"] == 144 and saved["total_steps"] == 9


def test_finetune_never_applies_a_non_finite_update(tmp_path, digits):
    from dimctl.errors import NonFiniteLoss
    from dimctl.train.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(labels_fraction=0.1, epochs=1, cpu=True)
    with pytest.raises(NonFiniteLoss, match="the loss became nan at step 1; no update was made"):
        finetune(_small_encoder(nan_weight=True), digits, config, tmp_path / "stop")
    encoder = _small_encoder(nan_weight=True)
    before = {k: v.detach().clone() for k, v in encoder.named_parameters()}
    finetune(encoder, digits, FinetuneConfig(**{**config.to_dict(), "nan_policy": "skip"}), tmp_path / "skip")
    line = json.loads((tmp_path / "skip" / "metrics.jsonl").read_text())
    assert line["skipped_steps"] == 3
    for key, value in encoder.named_parameters():  # (batch norm's running statistics are not updates)
        assert torch.equal(value.detach().cpu().nan_to_num(), before[key].nan_to_num()), key
