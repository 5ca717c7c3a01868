"""`--config FILE.toml`: defaults for a subcommand's options, under flags and DIMCTL_* variables.

Top-level keys apply to the subcommand being run; a table named after a subcommand
(`[pretrain]`, `[probe]`) applies to that subcommand only. Keys are option names, with dashes or
underscores. An unknown key is a usage error naming it (a table's keys are checked when its
subcommand runs).
"""

import tomllib
from pathlib import Path

from dimctl.cli import deprecations
from dimctl.errors import UsageError


def pop_config_flag(args: list[str]) -> tuple[list[str], Path | None]:
    """Remove `--config FILE` / `--config=FILE` from anywhere in args."""
    out, path, i = [], None, 0
    while i < len(args):
        a = args[i]
        if a == "--config":
            if i + 1 >= len(args):
                raise UsageError("--config needs a FILE.toml")
            path, i = Path(args[i + 1]), i + 2
            continue
        if a.startswith("--config="):
            path = Path(a.split("=", 1)[1])
        else:
            out.append(a)
        i += 1
    return out, path


def load_default_map(path: Path, group, args: list[str]) -> dict:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--config {path}: not a readable TOML file ({e})") from None
    # Only the subcommand being run is loaded (and its keys checked): the group imports each
    # subcommand's module on demand, and another command's table is checked when that command runs.
    ctx = group.context_class(group, info_name="dimctl")
    names = group.list_commands(ctx)
    subcommand = next((a for a in args if not a.startswith("-") and a in names), None)
    command = group.get_command(ctx, subcommand) if subcommand is not None else None
    default_map: dict[str, dict] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in names:
            if key == subcommand:
                default_map.setdefault(key, {}).update(_check(path, command, key, value))
        elif subcommand is not None:
            default_map.setdefault(subcommand, {}).update(_check(path, command, subcommand, {key: value}))
        else:
            raise UsageError(f"--config {path}: key {key!r} is outside a [command] table and no command was given")
    return default_map


def _check(path: Path, command, name: str, values: dict) -> dict:
    params = {p.name: p for p in command.params if getattr(p, "param_type_name", "") == "option"}
    checked = {}
    renamed = {old.lstrip("-").replace("-", "_"): new.lstrip("-").replace("-", "_")
               for old, new in deprecations.RENAMED.get((name,), {}).items() if old.startswith("--")}
    for key, value in values.items():
        norm = key.replace("-", "_")
        if norm not in params and norm in renamed:
            deprecations.warn(f"--config key {key!r} of `dimctl {name}`", repr(renamed[norm]))
            norm = renamed[norm]
        if norm not in params:
            raise UsageError(f"--config {path}: unknown key {key!r} for `dimctl {name}`")
        checked[norm] = value
    return checked
