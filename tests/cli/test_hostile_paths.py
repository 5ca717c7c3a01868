"""Named paths that are not regular files, and settings that are not what their option takes
(issue 40): one line and exit 2, never a hang, never a write through a link.

A command that would block on a FIFO runs in a subprocess with a timeout, so a regression fails
instead of hanging the suite."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.cli.helpers import DIMCTL, ENV, assert_one_line_error, run_here

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")

TINY = ("--dataset", "digits", "--epochs", "1", "--mi-units", "16", "--width", "0.25", "--fc-dim", "32",
        "--checkpoint-every", "0")


def run_bounded(*args, env=None, timeout=120):
    """The command in a subprocess (run_here's signal handlers need the main thread), failing, not
    hanging, when it is still blocked after ``timeout`` seconds (subprocess.run then kills it)."""
    try:
        return subprocess.run([*DIMCTL, *map(str, args)], capture_output=True, timeout=timeout,
                              env={**ENV, **(env or {})})
    except subprocess.TimeoutExpired:
        pytest.fail(f"dimctl {' '.join(map(str, args))} blocked (a FIFO opened for reading?)")


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "c.toml"
    os.mkfifo(path)
    return path


def test_a_fifo_config_is_refused_not_waited_on(fifo, tmp_path):
    for env, args in (({}, ("--config", fifo)), ({"DIMCTL_CONFIG": str(fifo)}, ())):
        result = run_bounded("probe", *args, tmp_path / "f.h5", env=env)
        assert_one_line_error(result, 2)
        assert f"{fifo}: not a regular file (a FIFO)" in result.stderr.decode()


def test_a_command_config_variable_naming_a_fifo_is_never_opened(fifo, tmp_path):
    # Not a variable dimctl reads (--config is a global flag: DIMCTL_CONFIG); it must not block either.
    result = run_bounded("probe", tmp_path / "f.h5", env={"DIMCTL_PROBE_CONFIG": str(fifo)})
    assert_one_line_error(result, 2)
    assert "f.h5: no such file" in result.stderr.decode()


def test_config_devices_and_folders_are_refused(tmp_path):
    for path, kind in (("/dev/zero", "a device"), (tmp_path, "a folder")):
        result = run_here("probe", "--config", path, tmp_path / "f.h5")
        assert_one_line_error(result, 2)
        assert f"not a regular file ({kind})" in result.stderr.decode()


def test_ndm_refuses_a_fifo(fifo):
    result = run_bounded("ndm", fifo)
    assert_one_line_error(result, 2)
    assert f"{fifo}: not a regular file (a FIFO)" in result.stderr.decode()


def test_metrics_csv_that_is_a_fifo_or_a_link_is_refused_before_training(tmp_path):
    fifo_run, link_run = tmp_path / "fifo-run", tmp_path / "link-run"
    fifo_run.mkdir()
    link_run.mkdir()
    os.mkfifo(fifo_run / "metrics.csv")
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("kept\n")
    (link_run / "metrics.csv").symlink_to(elsewhere)
    for run, what in ((fifo_run, "is not a regular file"), (link_run, "is a link")):
        args = ("pretrain", *TINY, "--log-with", "csv", "--out", run)
        result = run_bounded(*args) if run == fifo_run else run_here(*args)  # only a FIFO could block
        assert_one_line_error(result, 2)
        assert f"{run / 'metrics.csv'} {what}" in result.stderr.decode()
        assert not (run / "encoder.safetensors").exists()  # refused before training
    assert elsewhere.read_text() == "kept\n"


@pytest.mark.parametrize("command, key", [("pretrain", "epochs"), ("pretrain", "lr"), ("probe", "knn-k"),
                                          ("probe", "knn-temperature")])
def test_toml_booleans_are_not_numbers(tmp_path, command, key):
    config = tmp_path / "c.toml"
    config.write_text(f"{key} = true\n")
    target = ("--out", tmp_path / "run") if command == "pretrain" else (tmp_path / "f.h5",)
    result = run_here(command, "--config", config, *target)
    assert_one_line_error(result, 2)
    assert f"key '{key}' is true, but --{key} takes a value" in result.stderr.decode()
    assert not (tmp_path / "run").exists()


def test_a_run_config_with_a_boolean_for_a_number_is_refused(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"command": "pretrain", "config": {"epochs": False, "lr": 0.1}}))
    result = run_here("pretrain", "--config", config, "--out", tmp_path / "run")
    assert_one_line_error(result, 2)
    assert "key 'epochs' is false, but --epochs takes a value" in result.stderr.decode()


SAVE = """
import sys, torch
from torch import nn
from dimctl.io.artifacts import _save
torch.manual_seed(0)
_save(sys.argv[1], nn.Linear(4, 3), "encoder", {"arch": "dcgan", "width": 0.25, "layers": [1, 2]},
      {"name": "digits", "size": 8}, 7, {"lr": 0.1, "seed": 0, "note": "é"}, {"encoder": {"sha256": "ab"}})
"""


def test_safetensors_header_is_canonical_across_processes(tmp_path):
    """safetensors writes its header from a Rust HashMap, in a random order per process."""
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"e{seed}.safetensors"
        subprocess.run([sys.executable, "-c", SAVE, str(out)], check=True, timeout=120,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    length = int.from_bytes(outputs[0][:8], "little")
    header = json.loads(outputs[0][8:8 + length])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])



# Names that would split a message, forge a line, or drive the terminal if printed raw → as shown.
CONTROL_NAMES = {"a\nb.h5": r"a\nb.h5", "\r dimctl: error: forged.h5": r"\r dimctl: error: forged.h5",
                 "\x1b]0;title\x07.h5": r"\x1b]0;title\x07.h5", "\x1b[2J.h5": r"\x1b[2J.h5",
                 "\x9b2J\x7f\u2028\u202e.h5": r"\x9b2J\x7f\u2028\u202e.h5"}
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("command", ["probe", "inspect", "extract"])
@pytest.mark.parametrize("name", CONTROL_NAMES, ids=ascii)
def test_control_characters_in_names_stay_escaped_on_one_line(tmp_path, command, name):
    result = run_here(command, tmp_path / name)  # missing: the message names it
    err = result.stderr.decode()
    assert_one_line_error(result, 2)
    assert err.count("\n") == 1 and not RAW_CONTROL.search(err), ascii(err)
    assert CONTROL_NAMES[name] in err, ascii(err)


@pytest.mark.parametrize("name", CONTROL_NAMES, ids=ascii)
def test_notes_escape_control_characters(name):
    import io
    from unittest import mock

    from dimctl.cli.output import note

    with mock.patch.object(sys, "stderr", io.StringIO()) as err:
        note(f"read {name}")
    assert err.getvalue() == f"dimctl: read {CONTROL_NAMES[name]}\n", ascii(err.getvalue())
