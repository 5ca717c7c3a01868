"""A command's options derived from a config class (dimctl/settings.py): name, type, default and
help come from the field, so a setting is declared once, in the library, and the CLI only adds
what is its own (the run folder, --resume, --force).

Typer reads a command's parameters from ``inspect.signature``, which honours ``__signature__``:
``with_settings`` gives a ``def command(ctx, ..., **settings)`` the settings as keyword options.
"""

import inspect
from typing import Annotated

import typer

from dimctl.settings import declared, panel_of, range_problem


def setting_parameters(config_class) -> list[inspect.Parameter]:
    """One keyword option per setting with ``cli`` set; an ``unset`` setting defaults to None (not given)."""
    params = []
    for f in declared(config_class):
        if not f.metadata.get("cli", True):
            continue
        annotation, default = _option(config_class, f)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return params


def _option(config_class, f):
    meta = f.metadata
    annotation, default = f.type, f.default
    if meta["unset"]:
        annotation, default = annotation | None, None
    option = typer.Option(*meta["flags"], help=meta["help"], show_default=not meta["unset"],
                          rich_help_panel=panel_of(config_class, f), callback=_range_check(f))
    return Annotated[annotation, option], default


def _range_check(f):
    """The setting's declared range, checked as its option is parsed: exit 2 naming the flag."""
    def check(value):
        problem = range_problem(f, value)
        if problem:
            raise typer.BadParameter(f"{value:g} {problem}")
        return value
    return check


def with_settings(config_class, after: str):
    """Decorate ``command(ctx, <own options>, **settings)``: its ``--help`` lists the settings of
    ``config_class`` after the option ``after``, and they arrive in ``settings`` by name."""
    def decorate(command):
        own = [p for p in inspect.signature(command).parameters.values() if p.kind is not p.VAR_KEYWORD]
        at = next(i for i, p in enumerate(own) if p.name == after) + 1
        keyword = [p.replace(kind=p.KEYWORD_ONLY) if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "ctx" else p
                   for p in own]

        def derive() -> None:
            command.__signature__ = inspect.Signature([*keyword[:at], *setting_parameters(config_class),
                                                       *keyword[at:]])
        command.derive_settings = derive
        derive()
        return command
    return decorate


def derive_settings_again(command) -> None:
    """Derive a command's setting options anew, as the command is loaded (cli/main.py): a setting
    known only at run time (a ``--method`` registered after its module was imported, with its own
    settings) gets its option too."""
    derive = getattr(command, "derive_settings", None)
    if derive is not None:
        derive()

