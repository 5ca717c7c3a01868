"""The speed options (--precision, --channels-last, --compile) train the same model; fp16 is
refused where it cannot run. Their speed is measured in benchmarks/, not here."""

import json
import os
import subprocess
import sys

import torch

from dimctl.cli.main import run
from dimctl.data.registry import load_dataset
from dimctl.io.artifacts import load_encoder
from dimctl.train.config import PretrainConfig
from dimctl.train.pretrain import make_accelerator, prepare_models, step_losses


def test_channels_last_gives_the_same_losses_and_gradients():
    accelerator = make_accelerator(PretrainConfig.of(precision="fp32", cpu=True))
    x = (load_dataset("digits").train_images[:16].float() / 127.5 - 1)
    results = []
    for channels_last in (False, True):
        config = PretrainConfig.of(mi_units=32, batch_size=16, alpha=0.5, channels_last=channels_last, precision="fp32")
        _, model, discriminator, _ = prepare_models(config, accelerator, 1, 32)
        memory = torch.channels_last if channels_last else torch.contiguous_format
        torch.manual_seed(0)  # the prior's samples
        loss, terms, _ = step_losses(model, discriminator, x.contiguous(memory_format=memory), config, accelerator)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((loss.detach(), grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-3, atol=1e-4)


def test_bf16_channels_last_and_compile_train_through_the_cli(tmp_path):
    # Its own process: Accelerate's mixed-precision setting is process-wide.
    env = {**os.environ, "DIMCTL_NO_PROGRESS": "1"}
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "dimctl", "pretrain", "--mi-units", "32", "--epochs", "1",
                           "--batch-size", "128", "--precision", "bf16", "--channels-last", "--compile",
                           "--width", "0.125", "--fc-dim", "128",  # narrow: bf16 is emulated on some CPUs
                           "--log-every", "1", "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 11 and all(torch.isfinite(torch.tensor(m["loss"])) for m in metrics)
    assert json.loads((out / "config.json").read_text())["config"]["precision"] == "bf16"
    encoder = load_encoder(out / "encoder.safetensors").encoder  # weights stay fp32 under autocast
    assert all(p.dtype == torch.float32 for p in encoder.parameters())


def test_fp16_on_the_cpu_is_a_usage_error(tmp_path, capsys):
    assert run(["pretrain", "--precision", "fp16", "--cpu", "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    assert "fp16 needs a GPU" in capsys.readouterr().err
    assert not (tmp_path / "r" / "encoder.safetensors").exists()
    assert run(["pretrain", "--precision", "fp8", "--out", str(tmp_path / "r")]) == 2


def test_deterministic_switches_torch_to_deterministic_kernels_for_one_run(monkeypatch):
    # What it does on a GPU is measured there (results/gpu_resume.csv: fp32 runs bit-identical with
    # it, 0.127 apart without); here: the switch is set per run, and reset by a run without it.
    from dimctl.train.pretrain import deterministic_gpu_kernels

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert PretrainConfig.of().run.deterministic is False
    try:
        deterministic_gpu_kernels(True)
        assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        deterministic_gpu_kernels(False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert PretrainConfig.of(deterministic=True).run.deterministic
