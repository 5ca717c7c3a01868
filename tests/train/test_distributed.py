"""Two processes on the CPU (gloo, through torchrun) train exactly like one process with the
whole batch: same loss, same gradients, identical weights on every rank, and resumable.

The workers are real `torchrun` launches of tests/train/distributed_worker.py and of
`python -m dimctl pretrain`, as a user would start them on several GPUs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from distributed_worker import ESTIMATORS, TRAIN_CONFIG, reference_grads  # noqa: E402

from dimctl.cli.main import run  # noqa: E402
from dimctl.errors import UsageError  # noqa: E402
from dimctl.train.distributed import convert_sync_batchnorm  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")
WORKER = Path(__file__).parent / "distributed_worker.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def _launch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != "DIMCTL_THREADS"}, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "DIMCTL_NO_PROGRESS": "1",
           "PYTHONWARNINGS": "ignore::FutureWarning"}
    done = subprocess.run(TORCHRUN + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("per_process", [8])
def test_two_processes_with_batch_b_equal_one_process_with_batch_2b(tmp_path, per_process):
    _launch([str(WORKER), "grads", str(tmp_path), str(per_process)], tmp_path)
    for estimator in ESTIMATORS:
        two = load_file(str(tmp_path / f"grads-{estimator}.safetensors"))
        one = reference_grads(estimator, 2 * per_process)
        assert set(two) == set(one)
        for key in [k for k in one if k.startswith("term.")]:
            torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=f"{estimator} {key}")
        # The gradients match to float32 round-off; a gradient dropped at the gather, or scaled by
        # the number of processes, misses by 50 % or more (LayerNorm biases' gradients are ~0 and
        # pure round-off, so tolerances are set against the largest gradient).
        scale = max(one[k].abs().max().item() for k in one if k.startswith("grad."))
        for key in [k for k in one if k.startswith("grad.")]:
            torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5 * scale, msg=f"{estimator} {key}")


def test_two_process_training_keeps_ranks_identical_and_resumes_through_the_cli(tmp_path):
    _launch([str(WORKER), "train", str(tmp_path)], tmp_path)
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    assert ranks == {"identical": True, "processes": 2, "steps": ranks["steps"]} and ranks["steps"] > 0

    # The same run as `torchrun -m dimctl pretrain`, stopped after one epoch, then resumed.
    flags = ["--mi-units", str(TRAIN_CONFIG["mi_units"]), "--batch-size", str(TRAIN_CONFIG["batch_size"]),
             "--seed", str(TRAIN_CONFIG["seed"]), "--checkpoint-every", "0", "--log-every", "5",
             "--precision", "fp32", "--out", str(tmp_path / "cli")]  # the worker's Accelerator runs fp32
    first = _launch(["-m", "dimctl", "pretrain", *flags, "--epochs", "1"], tmp_path)
    assert first.stdout.strip() == str(tmp_path / "cli" / "encoder.safetensors")  # printed once, by rank 0
    _launch(["-m", "dimctl", "pretrain", *flags, "--epochs", "2", "--resume"], tmp_path)
    config = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert config["num_processes"] == 2 and config["global_batch_size"] == 2 * TRAIN_CONFIG["batch_size"]
    straight = load_file(str(tmp_path / "run" / "encoder.safetensors"))
    resumed = load_file(str(tmp_path / "cli" / "encoder.safetensors"))
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)

    # A 2-process checkpoint cannot silently continue in 1 process (its steps and RNG states differ).
    assert run(["pretrain", *flags, "--epochs", "3", "--resume"]) == 2


@pytest.mark.parametrize("method", ["nat", "cpc", "bigan"])
def test_comparison_methods_train_in_two_processes(tmp_path, method):
    """NAT solves its assignment on the gathered batch, CPC gathers its embeddings and freezes the
    layers it does not train (DDP would stop at the second step waiting for their gradients), BiGAN
    has an adversary of its own: each runs under torchrun to the end with finite losses."""
    out = tmp_path / method
    done = _launch(["-m", "dimctl", "pretrain", "--method", method, "--width", "0.25", "--fc-dim", "32", "--mi-units", "16",
                    "--batch-size", "16", "--epochs", "1", "--max-steps", "8", "--checkpoint-every", "0", "--log-every", "5",
                    "--out", str(out)],
                   tmp_path)
    assert done.stdout.strip() == str(out / "encoder.safetensors")
    config = json.loads((out / "config.json").read_text())
    assert config["num_processes"] == 2 and config["config"]["method"] == method
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == config["total_steps"] == 8  # past the second step, where a frozen layer would hang DDP
    assert all(v == v and abs(v) < float("inf") for m in metrics for k, v in m.items() if k != "time")


def test_sync_bn_converts_on_accelerators_and_refuses_the_cpu():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    assert convert_sync_batchnorm(model, torch.device("cpu"), 1) is model  # one process: nothing to sync
    with pytest.raises(UsageError, match="sync-bn"):
        convert_sync_batchnorm(model, torch.device("cpu"), 2)
    converted = convert_sync_batchnorm(model, torch.device("cuda"), 2)
    assert isinstance(converted[1], torch.nn.SyncBatchNorm)
