"""`--config FILE.toml`: defaults for a subcommand's options, under flags and DIMCTL_* variables.

Top-level keys apply to the subcommand being run; a table named after a subcommand
(`[pretrain]`, `[probe]`) applies to that subcommand only, and a command group's subcommands take
nested tables (`[generate.train]`, `[generate.sample]`). Keys are option names, with dashes or
underscores. An unknown key is a usage error naming it (a table's keys are checked when its
subcommand runs).

A run folder's `config.json` (pretrain, finetune, generate train) is taken too, for the command
that wrote it: its resolved settings are the defaults, so `--config RUN/config.json --out NEW`
re-creates the run's settings (flags still override them).
"""

import json
import tomllib
from pathlib import Path

from dimctl.cli import deprecations
from dimctl.errors import UsageError
from dimctl.io.reading import open_regular


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


CONFIG_LIMIT = 1 << 20  # bytes: a settings file, not a data file (and never /dev/zero read without end)


# Settings a run records that a preset implies: given back as flags beside the preset they would
# make the run a custom one (cli/pretrain.py drops the preset when any weight is given).
IMPLIED_BY = {"pretrain": {"preset": ("alpha", "beta", "gamma")}}


def load_default_map(path: Path, group, args: list[str]) -> dict:
    as_json = path.suffix.lower() == ".json"
    try:
        # Never blocks: a FIFO or device (`mkfifo c.toml`) is refused before a byte is read.
        with open_regular(path, f"--config {path}") as f:
            raw = f.read(CONFIG_LIMIT + 1)
        if len(raw) > CONFIG_LIMIT:
            raise UsageError(f"--config {path}: over {CONFIG_LIMIT >> 20} MB; a config file holds settings only")
        data = json.loads(raw.decode()) if as_json else tomllib.loads(raw.decode())
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except RecursionError:
        raise UsageError(f"--config {path}: nested too deeply to be a settings file") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError) as e:
        kind = "a run's config.json" if as_json else "a readable TOML file"
        raise UsageError(f"--config {path}: not {kind} ({e})") from None
    if as_json:
        return _run_config(path, group, _chain(group, args), data)
    return _level(path, group, _chain(group, args), (), data)


def _run_config(path: Path, group, chain: list, data) -> dict:
    """The default map of a run's config.json for the command that wrote it: every recorded setting
    that is an option of that command, except those left unset (null) or implied by another."""
    command = data.get("command") if isinstance(data, dict) else None
    settings = data.get("config") if isinstance(data, dict) else None
    if not isinstance(command, str) or not isinstance(settings, dict):
        raise UsageError(f"--config {path}: not a run's config.json (no \"command\" and \"config\"); "
                         f"settings files are TOML")
    running = " ".join(name for name, _ in chain)
    if not chain or command != running or _is_group(chain[-1][1]):
        raise UsageError(f"--config {path} holds the settings of a `dimctl {command}` run, not of "
                         f"`dimctl {running or 'COMMAND'}`")
    options = {p.name for p in chain[-1][1].params if getattr(p, "param_type_name", "") == "option"}
    # Settings with no option (only the library sets them) are left to the command, as in the run.
    values = {k: v for k, v in settings.items() if k in options and v is not None}
    _refuse_switches(path, chain[-1][1], values)
    for setting, implied in IMPLIED_BY.get(command, {}).items():
        if values.get(setting) is not None:
            for name in implied:
                values.pop(name, None)
    return _nest(command.split(), values)


def _chain(group, args: list[str]) -> list[tuple[str, object]]:
    """The (name, command) path being run: `dimctl generate train` → [generate, train]. Only these
    commands are loaded: the group imports each subcommand's module on demand, and another
    command's table is checked when that command runs."""
    chain = []
    while _is_group(group):
        ctx = group.context_class(group, info_name="dimctl")
        names = group.list_commands(ctx)
        name = next((a for a in args if not a.startswith("-") and a in names), None)
        if name is None:
            break
        group = group.get_command(ctx, name)
        chain.append((name, group))
        args = args[args.index(name) + 1:]
    return chain


def _level(path: Path, group, chain: list, above: tuple[str, ...], table: dict) -> dict:
    """The default map for ``table`` read at the level of ``group`` (reached through ``above``;
    ``chain`` is the rest of the path being run): a table named after a command of this level
    applies to that command (nested groups take nested tables, `[generate.train]`); any other key
    applies to the command being run."""
    names = group.list_commands(group.context_class(group, info_name="dimctl")) if _is_group(group) else []
    leaf = chain[-1][1] if chain else group
    leaf_name = " ".join((*above, *(name for name, _ in chain)))
    default_map: dict = {}
    for key, value in table.items():
        if isinstance(value, dict) and key in names:
            if chain and key == chain[0][0]:
                _merge(default_map, {key: _level(path, chain[0][1], chain[1:], (*above, key), value)})
        elif leaf_name and not _is_group(leaf):
            _merge(default_map, _nest([name for name, _ in chain], _check(path, leaf, leaf_name, {key: value})))
        else:
            where = f"in [{'.'.join(above)}]" if above else "outside a [command] table"
            raise UsageError(f"--config {path}: key {key!r} is {where} and no command was given")
    return default_map


def _is_group(command) -> bool:
    return hasattr(command, "list_commands")


def _nest(names: list[str], values: dict) -> dict:
    for name in reversed(names):
        values = {name: values}
    return values


def _merge(into: dict, more: dict) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _check(path: Path, command, name: str, values: dict) -> dict:
    # A key is an option's name as typed (`num` for --num) or its parameter's (`count`).
    params = {}
    for p in command.params:
        if getattr(p, "param_type_name", "") == "option":
            params[p.name] = p.name
            params.update({flag.lstrip("-").replace("-", "_"): p.name for flag in p.opts if flag.startswith("--")})
    checked, written = {}, {}
    renamed = {old.lstrip("-").replace("-", "_"): new.lstrip("-").replace("-", "_")
               for old, new in deprecations.RENAMED.get(tuple(name.split()), {}).items() if old.startswith("--")}
    for key, value in values.items():
        norm = key.replace("-", "_")
        if norm not in params and norm in renamed:
            deprecations.warn(f"--config key {key!r} of `dimctl {name}`", repr(renamed[norm]))
            norm = renamed[norm]
        if norm not in params:
            raise UsageError(f"--config {path}: unknown key {key!r} for `dimctl {name}`")
        checked[params[norm]], written[params[norm]] = value, key
    _refuse_switches(path, command, checked, written)
    return checked


def _refuse_switches(path: Path, command, values: dict, keys: dict | None = None) -> None:
    """A true/false value is refused for any option but an on/off flag: click would take it as a
    number (`epochs = true` trained 1 epoch, `knn-k = true` gave k = 1) or as the string "True".
    ``keys`` gives the key as written for a parameter name, to name it as the user wrote it."""
    for p in command.params:
        value = values.get(p.name)
        if isinstance(value, bool) and getattr(p, "param_type_name", "") == "option" \
                and not getattr(p, "is_bool_flag", False):
            key = (keys or {}).get(p.name, p.name)
            flag = next((o for o in p.opts if o.startswith("--")), p.name)
            raise UsageError(f"--config {path}: key {key!r} is {str(value).lower()}, but {flag} takes "
                             f"a value, not true/false")
