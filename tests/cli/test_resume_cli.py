"""The training commands' run options: --resume reads the run's config.json (`--resume` alone
continues a run, `--epochs N` extends it, a setting that cannot change is refused by name)
(in-process: no subprocess proves more here)."""

import json

from dimctl.cli.main import run


def _config(run_dir):
    return json.loads((run_dir / "config.json").read_text())


def test_pretrain_resume_takes_the_saved_settings_and_extends_by_epochs(tmp_path, capsys):
    out = tmp_path / "r"
    flags = ["--mi-units", "16", "--width", "0.125", "--fc-dim", "32", "--batch-size", "128", "--epochs", "1",
             "--checkpoint-every", "0", "--log-every", "1", "--precision", "fp32", "--seed", "3"]
    assert run(["pretrain", *flags, "--out", str(out)]) == 0
    first = _config(out)
    assert run(["pretrain", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    second = _config(out)
    assert second["config"] == {**first["config"], "epochs": 2}
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 2 * first["steps_per_epoch"] + 1))  # continued, not restarted
    capsys.readouterr()
    assert run(["pretrain", "--out", str(out), "--resume", "--mi-units", "32"]) == 2
    assert "--resume: mi_units was 16" in capsys.readouterr().err


def test_generate_train_resume_takes_the_saved_settings_and_extends_by_steps(tmp_path, capsys):
    out = tmp_path / "g"
    flags = ["--width", "8", "--z-dim", "8", "--batch-size", "16", "--steps", "2", "--sample-every", "0",
             "--checkpoint-every", "0", "--log-every", "1", "--seed", "2"]
    assert run(["generate", "train", *flags, "--out", str(out)]) == 0
    first = _config(out)
    assert run(["generate", "train", "--out", str(out), "--resume", "--steps", "3"]) == 0
    assert _config(out)["config"] == {**first["config"], "steps": 3}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3] and all("epoch" in r for r in lines)
