"""Start-up stays light: subcommands load when used, and help needs no torch (nothing here is timed;
benchmarks/startup.py measures)."""

import importlib
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from dimctl.cli.main import COMMANDS, load_command, run
from dimctl.evaluate.probe_names import CLASSIFIER_NAMES
from dimctl.io.features import create_feature_file, init_feature_file, seal_bytes


def in_fresh_python(code: str) -> dict:
    """Run code in a new interpreter; it prints one JSON object as its last line."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "DIMCTL_NO_PROGRESS": "1"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_version_and_probe_help_import_no_torch(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[probe]\nsvm-c = 2.0\n[pretrain]\nepochs = 1\n")
    found = in_fresh_python(f"""
import contextlib, io, json, sys
from dimctl.cli.main import run
out = {{}}
def step(name, argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        rc = run(argv)
    out[name] = {{"rc": rc, "err": err.getvalue(), "torch": "torch" in sys.modules,
                 "loaded": sorted(m for m in sys.modules if m.startswith("dimctl.cli.") and m != "dimctl.cli.main")}}
step("import", [])
step("help", ["--help"])
step("version", ["--version"])
step("typo", ["prob"])
step("probe help", ["probe", "--help"])
step("config probe help", ["--config", {str(config)!r}, "probe", "--help"])
step("inspect help", ["inspect", "--help"])
print(json.dumps(out))
""")
    for name in ("import", "help", "version", "typo", "probe help", "config probe help", "inspect help"):
        assert not found[name]["torch"], f"{name} imported torch"
    assert found["help"]["rc"] == found["version"]["rc"] == 0
    # no subcommand: only the modules main itself needs (none of them imports torch)
    assert found["version"]["loaded"] == ["dimctl.cli.config_file", "dimctl.cli.deprecations", "dimctl.cli.output"]
    assert found["typo"]["rc"] == 2 and "Did you mean 'probe'?" in found["typo"]["err"]
    assert found["probe help"]["rc"] == found["config probe help"]["rc"] == 0
    assert "dimctl.cli.pretrain" not in found["config probe help"]["loaded"]  # its table is not even checked


def feature_file(path):
    """A sealed feature file: 8-dim `y`, two classes, 30 train and 10 test rows."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with create_feature_file(buf) as f:
        init_feature_file(f, {"sha256": "ab"}, {"name": "digits", "channels": 1, "image_size": 32}, ["y"],
                          {"train": 30, "test": 10}, {"y": (8,)})
        for split, n in (("train", 30), ("test", 10)):
            labels = np.arange(n) % 2
            f[split]["labels"][:] = labels
            f[split]["y"][:] = (rng.standard_normal((n, 8)) + 3 * labels[:, None]).astype(np.float32)
    path.write_bytes(seal_bytes(buf.getvalue()))
    return path


def test_probe_on_a_feature_file_imports_no_torchvision(tmp_path):
    features = feature_file(tmp_path / "f.h5")
    found = in_fresh_python(f"""
import contextlib, io, json, sys
from dimctl.cli.main import run
with contextlib.redirect_stdout(io.StringIO()) as out:
    rc = run(["probe", {str(features)!r}, "--classifier", "all", "--mlp-epochs", "2", "--json"])
print(json.dumps({{"rc": rc, "rows": len(out.getvalue().splitlines()),
                  "heavy": [m for m in ("torchvision", "matplotlib") if m in sys.modules]}}))
""")
    assert found["rc"] == 0 and found["rows"] == len(CLASSIFIER_NAMES)
    assert found["heavy"] == []


def test_the_light_classifier_names_are_the_probes():
    from dimctl.evaluate.probes import CLASSIFIERS

    assert list(CLASSIFIER_NAMES) == list(CLASSIFIERS)


def _first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n")[0].split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_loads_and_shows_its_help(name, capsys):
    command = load_command(name)
    assert command.name == name
    assert _first_paragraph(command.help) == COMMANDS[name][2]  # the table's line is the command's own
    assert run([name, "--help"]) == 0
    assert f"dimctl {name}" in capsys.readouterr().out
    for sub in getattr(command, "commands", {}):  # a group (generate): each of its commands too
        assert run([name, sub, "--help"]) == 0
        assert f"dimctl {name} {sub}" in capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, _, line) in COMMANDS.items():
        assert name in out and line.split()[0] in out


def test_shell_completion_installs_and_completes(tmp_path):
    """`dimctl --install-completion`, run from bash, writes a script that bash sources; with it, bash completes
    subcommand names, a group's subcommands and a subcommand's options (one real shell)."""
    dimctl = os.path.join(os.path.dirname(sys.executable), "dimctl")
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    # Run from bash: the option detects the shell it is installed for from its parent processes
    # (a second command keeps bash from exec-ing dimctl in its own place).
    installed = subprocess.run(["bash", "-c", f"'{dimctl}' --install-completion; exit $?"], capture_output=True,
                               text=True, env=env, timeout=60)
    assert installed.returncode == 0, installed.stderr
    script = tmp_path / ".bash_completions" / "dimctl.sh"
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    complete = (f"source '{script}'; for words in 'dimctl pro' 'dimctl generate sa' 'dimctl probe --classi'; do "
                "COMP_WORDS=($words); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _dimctl_completion dimctl; "
                'echo "${COMPREPLY[*]}"; done')
    result = subprocess.run(["bash", "-c", complete], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["probe", "sample", "--classifier"], result.stdout


def test_a_signal_during_a_commands_imports_stops_it_once_they_are_done(monkeypatch):
    # A KeyboardInterrupt raised inside a library's module body was swallowed (the command ran on to
    # exit 0) or left the library half-initialised (numpy's __getattr__ recursed: RecursionError).
    import dimctl.cli.main as cli_main

    real_import, finished = importlib.import_module, []

    def import_while_signalled(name, *args):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode: inside this import
        finished.append(name)
        return real_import(name, *args)

    previous = signal.signal(signal.SIGTERM, cli_main._terminate)  # as `dimctl` runs
    try:
        monkeypatch.setattr(cli_main.importlib, "import_module", import_while_signalled)
        with pytest.raises(KeyboardInterrupt):  # the CLI's "interrupted", exit 130
            cli_main.load_command("inspect")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert finished == ["dimctl.cli.inspect"]
