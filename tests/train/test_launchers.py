"""`torchrun` and `accelerate launch` start dimctl as one process group on whatever device there
is (here: the CPU, gloo), with the global batch over all processes recorded; a launch that asked
for several processes but started one is refused before anything is written.

Real launches of `-m dimctl pretrain`, as the user types them (no ACCELERATE_USE_CPU, no --cpu):
before dimctl chose the CPU group itself, each torchrun process on a machine without a GPU ran its
own single-process copy into the same folder (config.json said 1 process, rank 1 crashed).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from tests.cli.helpers import assert_one_line_error, run_here

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")
BIN = Path(sys.executable).parent
BATCH = 32
TINY = ["--dataset", "digits", "--epochs", "1", "--mi-units", "16", "--width", "0.25", "--fc-dim", "64",
        "--checkpoint-every", "0", "--batch-size", str(BATCH)]
DIGITS_TRAIN = 1437  # digits' training split: steps per epoch = this // global batch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(command: list[str], port: int, cwd: Path) -> subprocess.CompletedProcess:
    # Only what the test needs fixed; the launcher's own device choice is what is under test.
    env = {k: v for k, v in os.environ.items() if k not in ("ACCELERATE_USE_CPU", "WORLD_SIZE", "RANK", "DIMCTL_THREADS")}
    env.update(OMP_NUM_THREADS="1", DIMCTL_NO_PROGRESS="1", MASTER_PORT=str(port),
               PYTHONWARNINGS="ignore::FutureWarning")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _assert_one_two_process_run(done: subprocess.CompletedProcess, out: Path) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [str(out / "encoder.safetensors")]  # printed once, by rank 0
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["encoder.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["num_processes"] == 2 and config["global_batch_size"] == 2 * BATCH
    assert config["steps_per_epoch"] == config["total_steps"] == DIGITS_TRAIN // (2 * BATCH)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == config["total_steps"]  # one writer, no duplicate lines


def test_torchrun_runs_dimctl_as_one_two_process_group(tmp_path):
    port = _free_port()
    done = _launch([str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(port),
                    "-m", "dimctl", "pretrain", *TINY, "--out", str(tmp_path / "run")], port, tmp_path)
    _assert_one_two_process_run(done, tmp_path / "run")


def test_accelerate_launch_multi_gpu_runs_dimctl_as_one_two_process_group(tmp_path):
    port = _free_port()
    done = _launch([str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
                    "-m", "dimctl", "pretrain", *TINY, "--out", str(tmp_path / "run")], port, tmp_path)
    _assert_one_two_process_run(done, tmp_path / "run")


def test_accelerate_launch_cpu_starts_one_process_and_is_refused_before_writing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()  # an existing folder: not even the run lock may be written into it
    port = _free_port()
    # --quiet: Accelerate's launcher passes the child's stderr through and exits 1 on its failure
    # (without it, it adds its own traceback); dimctl's own exit status is checked below.
    done = _launch([str(BIN / "accelerate"), "launch", "--quiet", "--cpu", "--num_processes", "2", "--num_machines",
                    "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
                    "-m", "dimctl", "pretrain", *TINY, "--out", str(out)], port, tmp_path)
    lines = done.stderr.splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("dimctl: error: accelerate launch started one process")
    assert "--multi_gpu --num_processes N" in lines[0] and "torchrun --nproc_per_node N" in lines[0]
    assert os.listdir(out) == [] and done.stdout == ""


def test_the_one_process_launch_exits_2_and_leaves_no_folder(tmp_path, monkeypatch):
    # What Accelerate's one-process launcher gives the process: a MASTER_PORT, its own settings, no world size.
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    env = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
           "ACCELERATE_DYNAMO_BACKEND": "NO", "ACCELERATE_MIXED_PRECISION": "no"}
    result = run_here("pretrain", *TINY, "--out", tmp_path / "run", env=env)
    assert_one_line_error(result, 2)
    assert os.listdir(tmp_path) == []
