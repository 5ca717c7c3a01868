"""Every numeric option of every command, from one table: NaN and infinity, negative counts and
sizes, zero learning rates and seeds beyond 32 bits are refused while parsing — exit 2, one line
naming the flag — before any work."""

import pytest

from dimctl.cli.main import COMMANDS, load_command
from tests.cli.helpers import assert_one_line_error, run_here


def numeric_options():
    """(command words, flag, annotation, takes a positional argument) of every int/float option."""
    found = []

    def walk(command, path):
        positional = any(getattr(p, "param_type_name", "") == "argument" for p in command.params)
        for p in command.params:
            annotation = getattr(getattr(p, "type_descriptor", None), "annotation", None)
            if getattr(p, "param_type_name", "") == "option" and annotation in (int, float):
                found.append((path, max(p.opts, key=len), annotation, positional))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    for name in COMMANDS:
        walk(load_command(name), [name])
    return found


OPTIONS = numeric_options()


def bad_values(flag, annotation):
    values = ["nan", "inf", "-inf"] if annotation is float else []
    if flag == "--seed":
        values += ["-1", str(2**32)]
    elif flag not in ("--mu-real", "--mu-fake"):
        values.append("-1")
    if flag.endswith("-lr") or flag == "--lr":
        values.append("0")
    return values


def test_the_table_covers_every_command_with_numbers():
    commands = {" ".join(path) for path, *_ in OPTIONS}
    assert {"pretrain", "probe", "mi", "mine", "ndm", "finetune", "reconstruct", "generate train"} <= commands
    assert len(OPTIONS) > 80


@pytest.mark.parametrize("path,flag,annotation,positional", OPTIONS, ids=[f"{' '.join(o[0])} {o[1]}" for o in OPTIONS])
def test_bad_numbers_are_refused_naming_the_flag(path, flag, annotation, positional):
    for value in bad_values(flag, annotation):
        # The flag comes first, so it is checked before the (dummy) positional argument is looked at.
        result = run_here(*path, flag, value, *(["x"] if positional else []))
        assert_one_line_error(result, 2)
        assert f"{flag}'" in result.stderr.decode(), (flag, value)


def test_a_config_nested_past_the_recursion_limit_is_one_line(tmp_path):
    config = tmp_path / "deep.toml"
    config.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = run_here("probe", "--config", config, tmp_path / "f.h5")
    assert_one_line_error(result, 2)
    assert "--config" in result.stderr.decode()
