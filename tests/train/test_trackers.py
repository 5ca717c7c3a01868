"""`--log-with` (pretrain, finetune, generate train): every metrics.jsonl number (and the learning rate) reaches the tracker,
read back from its own files; a tracker whose package is missing is one clear usage error."""

import csv
import json

import pytest

from dimctl.errors import UsageError
from dimctl.train import trackers
from tests.cli.test_cli import assert_one_line_error, run_here

SMALL = ["--dataset", "digits", "--mi-units", "32", "--width", "0.25", "--fc-dim", "64", "--batch-size", "32",
         "--checkpoint-every", "0", "--epochs", "1", "--log-every", "11"]


def _numbers(run_dir):
    return {line["step"]: {k: v for k, v in line.items() if k not in ("step", "time", "elapsed_s")}
            for line in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def test_csv_tracker_holds_every_logged_number_and_the_learning_rate(tmp_path):
    assert run_here("pretrain", *SMALL, "--log-with", "csv", "--out", tmp_path / "run").returncode == 0
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    logged = {}
    for row in rows:
        logged.setdefault(int(row["step"]), {})[row["name"]] = float(row["value"])
    expected = _numbers(tmp_path / "run")
    assert logged.keys() == expected.keys() == {11, 22, 33, 44}
    for step, values in expected.items():
        assert logged[step].pop("lr") == 1e-4
        assert logged[step] == pytest.approx(values, rel=1e-9)


def test_tensorboard_tracker_writes_the_same_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert run_here("pretrain", *SMALL, "--log-with", "tensorboard", "--out", tmp_path / "tb").returncode == 0
    events = EventAccumulator(str(tmp_path / "tb" / "tb")).Reload()
    expected = _numbers(tmp_path / "tb")
    loss = {e.step: e.value for e in events.Scalars("loss")}
    assert loss.keys() == expected.keys()
    assert all(loss[s] == pytest.approx(expected[s]["loss"], rel=1e-6) for s in loss)
    assert {"local_mi", "images_per_s", "lr"} <= set(events.Tags()["scalars"])


def test_missing_tracker_package_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r"needs the wandb package.*pip install wandb"):
        trackers.check_tracker("wandb")
    bad = run_here("pretrain", *SMALL, "--log-with", "mlflow", "--out", tmp_path / "m")
    assert_one_line_error(bad, 2)
    assert not (tmp_path / "m").exists()  # refused before anything was written


@pytest.mark.parametrize("command", ["finetune", "generate train"])
def test_finetune_and_generate_train_log_to_the_tracker_too(command, tmp_path):
    if command == "finetune":
        assert run_here("pretrain", *SMALL[:6], "--epochs", "0", "--out", tmp_path / "random").returncode == 0
        args = ["finetune", tmp_path / "random" / "encoder.safetensors", "--labels-fraction", "0.1", "--epochs", "2"]
    else:
        args = ["generate", "train", "--width", "4", "--z-dim", "16", "--batch-size", "16", "--steps", "3",
                "--sample-every", "0", "--log-every", "1", "--dataset", "digits"]
    result = run_here(*args, "--log-with", "csv", "--checkpoint-every", "0", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr.decode()
    logged = {}
    for row in csv.DictReader(open(tmp_path / "run" / "metrics.csv")):
        logged.setdefault(int(row["step"]), {})[row["name"]] = float(row["value"])
    expected = _numbers(tmp_path / "run")
    assert logged.keys() == expected.keys() and len(expected) >= 2
    for step, values in expected.items():
        rates = {k: logged[step].pop(k) for k in list(logged[step]) if k.endswith("lr")}
        assert rates["lr"] > 0 and (command == "finetune" or rates["critic_lr"] > 0)
        assert logged[step] == pytest.approx(values, rel=1e-9)
