"""`make demo` as the Makefile spells it (a dry run, `make -n`): no command is given a flag twice,
and the README's table of its output has the rows and columns its probe prints."""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_commands() -> list[list[str]]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    commands = []
    for line in done.stdout.splitlines():
        words = shlex.split(line)
        at = next((i for i, w in enumerate(words) if w.endswith("/dimctl")), None)
        if at is not None:
            commands.append(words[at + 1:])
    assert [c[0] for c in commands] == ["pretrain", "pretrain", "extract", "extract", "probe"]
    return commands


def test_no_demo_command_gets_a_flag_twice(demo_commands):
    for command in demo_commands:
        flags = [w.split("=", 1)[0] for w in command if w.startswith("--")]
        assert len(flags) == len(set(flags)), command
    assert demo_commands[1][demo_commands[1].index("--epochs") + 1] == "0"  # the random encoder stays untrained


def test_readme_demo_table_has_the_rows_the_demo_prints(demo_commands):
    def option(command, flag):
        return command[command.index(flag) + 1].split(",")

    extract_trained, extract_random, probe = demo_commands[2:]
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"`make demo` ends with this table.*?```\n(.*?)```", readme, flags=re.S).group(1)
    lines = table.splitlines()
    assert lines[0] == "test accuracy (%)" and lines[1].split() == ["layer", "classifier", "dim-l", "random"]
    rows = [line.split() for line in lines[3:]]
    assert [r[:2] for r in rows] == [[layer, clf] for layer in option(extract_trained, "--layer")
                                     for clf in option(probe, "--classifier")]
    for layer, _, trained, random in rows:
        assert re.fullmatch(r"\d+\.\d\d", trained)
        assert (random == "-") == (layer not in option(extract_random, "--layer"))
