"""End to end through real subprocesses: the commands, the pipe, and every error's exit code.

Error cases whose point is the message and the code (not the process) run in-process through the
same entry point (`run_here`), sparing an interpreter start-up each; every family keeps one real
subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from safetensors.torch import save_file
import torch

from dimctl.cli.main import run as run_in_process
from tests.cli.helpers import DIMCTL, ENV, TINY_PRETRAIN, assert_one_line_error, run, run_here, sh


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    result = run("pretrain", *TINY_PRETRAIN, "--out", root / "run")
    assert result.returncode == 0, result.stderr.decode()
    path = Path(result.stdout.decode().strip())
    assert path == root / "run" / "encoder.safetensors" and path.is_file()
    return path


def test_pretrain_writes_run_folder(encoder):
    run_dir = encoder.parent
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["mi_units"] == 32 and config["config"]["preset"] == "dim-l"
    assert (run_dir / "metrics.jsonl").read_text().strip()
    assert any((run_dir / "checkpoints").iterdir())


def test_extract_file_then_probe_json(encoder, tmp_path, capsys):
    out = tmp_path / "f.h5"
    assert run("extract", encoder, "--layer", "conv,fc,y,pixels", "-o", out).returncode == 0
    with h5py.File(out) as f:
        assert f["train/conv"].shape == (1438, 256, 4, 4) and f["test/y"].shape == (359, 64)
        assert f.attrs["dimctl.schema"] == 1
    # probe in-process (the pipe test below runs it as a process)
    assert run_in_process(["probe", str(out), "--layer", "y,pixels", "--classifier", "logreg,knn", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["layer"], r["classifier"]) for r in rows] == [("y", "logreg"), ("y", "knn"), ("pixels", "logreg"), ("pixels", "knn")]
    assert all(0.5 < r["accuracy"] <= 1 and r["dataset"] == "digits" and len(r["encoder"]) == 64 for r in rows)
    assert run_in_process(["probe", str(out), "--layer", "y"]) == 0
    table = capsys.readouterr().out
    assert "accuracy" in table and "svm" in table


def test_extract_pipe_into_probe_and_head(encoder, tmp_path):
    piped = sh(f"{' '.join(DIMCTL)} extract {encoder} --dataset digits | {' '.join(DIMCTL)} probe --json --layer y", tmp_path)
    assert piped.returncode == 0, piped.stderr.decode()
    (row,) = [json.loads(line) for line in piped.stdout.decode().splitlines()]
    assert row["layer"] == "y" and row["features"] == "<stdin>"
    head = sh(f"{' '.join(DIMCTL)} extract {encoder} | {' '.join(DIMCTL)} probe --json | head -1", tmp_path)
    assert head.returncode == 0 and b"Traceback" not in head.stderr and head.stderr.strip() == b"", head.stderr.decode()
    assert len(head.stdout.decode().splitlines()) == 1


def test_probe_table_names_a_piped_file_by_its_encoders_run(tmp_path):
    # extract | probe, in-process: the bytes extract writes to stdout are what probe reads from stdin.
    made = run_here("pretrain", "--epochs", "0", "--mi-units", "8", "--width", "0.125", "--fc-dim", "16",
                    "--out", tmp_path / "runs" / "dim-demo")
    assert made.returncode == 0, made.stderr.decode()
    piped = run_here("extract", tmp_path / "runs" / "dim-demo" / "encoder.safetensors", "--layer", "y", "-o", "-")
    assert piped.returncode == 0, piped.stderr.decode()
    table = run_here("probe", "--classifier", "logreg", input=piped.stdout)
    assert table.returncode == 0, table.stderr.decode()
    header = table.stdout.decode().splitlines()[1].split()
    assert header == ["layer", "classifier", "dim-demo"]  # not <stdin>
    rows = run_here("probe", "--classifier", "logreg", "--json", input=piped.stdout).stdout
    assert json.loads(rows)["features"] == "<stdin>"  # the result line names its source as it was

    from dimctl.cli.probe import encoder_run

    assert encoder_run({"path": "/abs/runs/ft/encoder.safetensors"}) == "ft"
    assert encoder_run({"path": "my-encoder.safetensors"}) == "my-encoder"
    assert encoder_run({}) is None  # another tool's file: its column stays <stdin>


def test_inspect_and_version(encoder):
    info = json.loads(run("inspect", encoder).stdout)
    assert info["kind"] == "encoder" and info["config"]["arch"] == "dcgan" and info["parameters"] > 1_000_000
    assert run("--version").stdout.decode().startswith("dimctl ")
    script = Path(sys.executable).parent / "dimctl"  # the console script
    assert subprocess.run([script, "--help"], capture_output=True).returncode == 0


def test_missing_files_are_usage_errors(tmp_path):
    assert_one_line_error(run("extract", tmp_path / "nope.safetensors", "-o", tmp_path / "f.h5"), 2)
    assert_one_line_error(run_here("probe", tmp_path / "nope.h5"), 2)
    assert_one_line_error(run_here("inspect", tmp_path / "nope.h5"), 2)


def test_unknown_dataset_and_flag_are_usage_errors(encoder, tmp_path):
    assert_one_line_error(run_here("pretrain", "--dataset", "imagenet", "--out", tmp_path / "r"), 2)
    assert_one_line_error(run_here("pretrain", "--no-such-flag"), 2)
    assert_one_line_error(run_here("probe", "--classifier", "forest", tmp_path / "x.h5"), 2)
    assert_one_line_error(run_here("extract", encoder, "--layer", "nope", "-o", tmp_path / "f.h5"), 2)
    assert not (tmp_path / "f.h5").exists()


def test_bad_artifacts_exit_3_and_leave_no_output(encoder, tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    out = tmp_path / "f.h5"
    assert_one_line_error(run_here("extract", plain, "-o", out), 3)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(100))
    assert_one_line_error(run_here("extract", garbage, "-o", out), 3)
    wrong = tmp_path / "wrong.h5"
    with h5py.File(wrong, "w") as f:
        f.attrs["dimctl.kind"] = "features"
        f.attrs["dimctl.schema"] = 42
    assert_one_line_error(run_here("probe", wrong), 3)
    assert_one_line_error(run_here("probe", input=b"not hdf5 at all"), 3)
    assert not out.exists()


def test_encoder_dataset_mismatch_exits_3(encoder, tmp_path):
    # The encoder takes 1-channel digits; a (fake) CIFAR-10 has 3 channels.
    from tests.data.test_datasets import _write_fake_cifar10

    _write_fake_cifar10(tmp_path / "data")
    out = tmp_path / "f.h5"
    result = run("extract", encoder, "--dataset", "cifar10", "--data-root", tmp_path / "data", "-o", out)
    assert_one_line_error(result, 3)
    assert "3×32×32" in result.stderr.decode()
    assert not out.exists() and not list(tmp_path.glob(".f.h5*"))


def test_existing_run_needs_resume_or_force(encoder, tmp_path):
    assert_one_line_error(run_here("pretrain", *TINY_PRETRAIN, "--out", encoder.parent), 2)
    resumed = run_here("pretrain", *TINY_PRETRAIN, "--out", encoder.parent, "--resume")
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert_one_line_error(run_here("pretrain", *TINY_PRETRAIN[:-2], "--lr", "0.1", "--out", encoder.parent, "--resume"), 2)


def test_config_file_and_environment(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[pretrain]\nepochs = 0\nmi-units = 16\n')
    result = run_here("pretrain", "--config", config, "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr.decode()
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert saved["epochs"] == 0 and saved["mi_units"] == 16
    # Flag beats environment beats file.
    env_result = subprocess.run([*DIMCTL, "pretrain", "--config", str(config), "--out", str(tmp_path / "e"), "--epochs", "0"],
                                capture_output=True, env={**ENV, "DIMCTL_PRETRAIN_MI_UNITS": "8"})
    assert env_result.returncode == 0, env_result.stderr.decode()
    assert json.loads((tmp_path / "e" / "config.json").read_text())["config"]["mi_units"] == 8
    config.write_text('[pretrain]\nepoch = 3\n')
    bad = run_here("pretrain", "--config", config, "--out", tmp_path / "b")
    assert_one_line_error(bad, 2)
    assert "'epoch'" in bad.stderr.decode()


def test_config_file_nested_tables_for_command_groups(tmp_path):
    """`[generate.train]` configures `dimctl generate train` (and only it); a top-level key goes to
    the command being run; a wrong key in a nested table is one line naming the command."""
    import typer

    from dimctl.cli.config_file import load_default_map
    from dimctl.cli.main import app

    group = typer.main.get_command(app)
    config = tmp_path / "gen.toml"
    config.write_text('seed = 3\n[generate.train]\nsteps = 7\nwidth = 8\n[generate.sample]\nnum = 5\n'
                      '[probe]\nclassifier = "knn"\n')
    assert load_default_map(config, group, ["generate", "train"]) == {"generate": {"train": {"seed": 3, "steps": 7, "width": 8}}}
    assert load_default_map(config, group, ["generate", "sample", "G"]) == {"generate": {"sample": {"seed": 3, "n": 5}}}
    assert load_default_map(config, group, ["probe", "-"]) == {"probe": {"seed": 3, "classifier": "knn"}}
    config.write_text('[generate.train]\nstep = 7\n')
    bad = run_here("generate", "train", "--config", config, "--out", tmp_path / "g")
    assert_one_line_error(bad, 2)
    assert "'step'" in bad.stderr.decode() and "generate train" in bad.stderr.decode()


def test_environment_variables_follow_one_rule():
    """Every option of every command reads DIMCTL_<COMMAND words>_<its long flag> and nothing else;
    --help and --version read no variable (DIMCTL_VERSION=1 once turned any command into --version)."""
    from dimctl.cli.main import COMMANDS, load_command

    def walk(command, path):
        for param in command.params:
            longs = [f for f in getattr(param, "opts", ()) if f.startswith("--")]
            if getattr(param, "param_type_name", "") == "option" and longs:
                yield param, "_".join(["DIMCTL", *path, longs[0][2:]]).upper().replace("-", "_")
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    seen = 0
    for name in COMMANDS:
        for param, expected in walk(load_command(name), [name]):
            assert param.envvar == expected, (name, param.opts, param.envvar)
            seen += 1
    assert seen > 150
    help_text = run_here("probe", "--help", env={"DIMCTL_VERSION": "1"})
    assert help_text.returncode == 0 and b"Usage: dimctl probe" in help_text.stdout
    not_help = run_here("probe", "-", env={"DIMCTL_PROBE_HELP": "1"})
    assert_one_line_error(not_help, 3)  # probed stdin (empty), did not print help


def test_pretrain_help_in_panels_and_nothing_cut_at_80_columns():
    result = run_here("pretrain", "--help", env={"COLUMNS": "80"})
    text = result.stdout.decode()
    assert result.returncode == 0
    panels = [line.split("─")[1].strip() for line in text.splitlines() if line.startswith("╭─")]
    assert panels == ["Options", "Data", "Encoder", "DIM family", "Objective", "CPC", "Optimisation", "Run",
                      "Online evaluation", "Devices", "Checkpoints and logging"]
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    devices = text[text.index("─ Devices"):]
    assert all(flag in devices for flag in ("--cpu", "--precision", "--channels-last", "--compile", "--sync-bn"))
    for command in ("finetune", "neighbors", "extract", "probe"):  # the options' help, not an example's "…"
        options = run_here(command, "--help", env={"COLUMNS": "80"}).stdout.decode().split("─ Options")[1]
        assert "…" not in options.replace("fc, y, …", ""), command


def test_encoder_commands_default_to_the_encoders_own_dataset(tmp_path):
    # An encoder trained on (a small fake) CIFAR-10: extract and reconstruct without --dataset run
    # on CIFAR-10, not on the digits default of pretrain, which would fit the encoder's input too.
    from tests.data.test_datasets import _write_fake_cifar10

    _write_fake_cifar10(tmp_path / "data")
    data = ["--data-root", tmp_path / "data"]
    trained = run_here("pretrain", "--dataset", "cifar10", *data, "--epochs", "0", "--mi-units", "8",
                       "--width", "0.125", "--fc-dim", "16", "--batch-size", "8", "--out", tmp_path / "run")
    assert trained.returncode == 0, trained.stderr.decode()
    encoder = tmp_path / "run" / "encoder.safetensors"
    assert run_here("extract", encoder, *data, "--layer", "y", "-o", tmp_path / "f.h5").returncode == 0
    with h5py.File(tmp_path / "f.h5") as f:
        assert json.loads(f.attrs["dimctl.dataset"])["name"] == "cifar10" and f["train/y"].shape[0] == 30
    rebuilt = run_here("reconstruct", encoder, *data, "--epochs", "0", "--batch-size", "8", "--out", tmp_path / "rec")
    assert rebuilt.returncode == 0 and json.loads(rebuilt.stdout)["dataset"] == "cifar10", rebuilt.stderr.decode()


def test_no_arguments_is_a_short_usage_on_stderr():
    bare = run_here()
    assert bare.returncode == 2 and bare.stdout == b""
    (line,) = bare.stderr.decode().splitlines()
    assert line.startswith("usage: dimctl COMMAND") and "--help" in line


def test_a_run_folder_stands_for_its_encoder(tmp_path):
    """`dimctl extract runs/fm` means runs/fm/encoder.safetensors, for every command taking an encoder."""
    made = run_here("pretrain", "--epochs", "0", "--mi-units", "8", "--width", "0.125", "--fc-dim", "16",
                    "--out", tmp_path / "run")
    assert made.returncode == 0, made.stderr.decode()
    file = tmp_path / "run" / "encoder.safetensors"
    by_folder = run_here("extract", tmp_path / "run", "--layer", "y", "-o", "-")
    assert by_folder.returncode == 0, by_folder.stderr.decode()
    assert by_folder.stdout == run_here("extract", file, "--layer", "y", "-o", "-").stdout  # the file's path recorded too
    ndm = run_here("ndm", tmp_path / "run", "--layer", "y", "--steps", "2")
    assert ndm.returncode == 0, ndm.stderr.decode()
    assert json.loads(ndm.stdout)["source"] == str(file)  # an encoder, not a folder of VISSL's .npy features
    (tmp_path / "empty").mkdir()
    empty = run_here("extract", tmp_path / "empty", "-o", tmp_path / "f.h5")
    assert_one_line_error(empty, 2)
    assert "is a folder without encoder.safetensors" in empty.stderr.decode()


def test_a_runs_config_json_recreates_its_settings(tmp_path):
    """`--config RUN/config.json` gives a new run the same resolved settings: with a preset (whose
    recorded weights must not turn it into a custom run) and with weights of one's own."""
    small = ["--epochs", "0", "--mi-units", "8", "--width", "0.125", "--fc-dim", "16", "--lr", "0.001", "--seed", "3"]
    for name, flags in (("preset", ["--preset", "dim-g", "--estimator", "infonce", "--hflip"]),
                        ("custom", ["--alpha", "0.5", "--beta", "1", "--gamma", "0", "--log-every", "7"])):
        first = run_here("pretrain", *small, *flags, "--out", tmp_path / name)
        assert first.returncode == 0, first.stderr.decode()
        again = run_here("pretrain", "--config", tmp_path / name / "config.json", "--out", tmp_path / f"{name}-again")
        assert again.returncode == 0, again.stderr.decode()
        saved, recreated = (json.loads((tmp_path / n / "config.json").read_text())["config"]
                            for n in (name, f"{name}-again"))
        assert recreated == saved
    assert saved["preset"] is None and saved["alpha"] == 0.5  # the custom run stayed custom
    flag_wins = run_here("pretrain", "--config", tmp_path / "preset" / "config.json", "--seed", "4",
                         "--out", tmp_path / "seed4")
    assert flag_wins.returncode == 0, flag_wins.stderr.decode()
    assert json.loads((tmp_path / "seed4" / "config.json").read_text())["config"]["seed"] == 4
    wrong = run_here("probe", "--config", tmp_path / "preset" / "config.json", tmp_path / "x.h5")
    assert_one_line_error(wrong, 2)
    assert "settings of a `dimctl pretrain` run" in wrong.stderr.decode()
