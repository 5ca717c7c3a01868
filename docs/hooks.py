"""MkDocs hook: the command pages' option tables, generated from the real CLI at build time.

A page says where a command's options go with a marker, `<!-- options: pretrain -->` (a group's
subcommand: `<!-- options: generate train -->`; `<!-- options: dimctl -->`: the options every
command takes). The table is rendered from the command's click parameters, through the same
`get_help_record` that `dimctl COMMAND --help` prints, so it cannot drift from the code; nothing
generated is committed. tests/test_docs.py calls these functions directly, without mkdocs.
"""

import html
import re

# `<!-- options: NAME -->` alone on its line, NAME being `dimctl`, a command, or a group and one of
# its subcommands (a marker quoted inside a sentence, as docs/contributing.md quotes one, stays text).
MARKER = re.compile(r"^<!-- options: ([a-z][a-z ]*[a-z]) -->$", flags=re.M)
DEFAULT = re.compile(r"\s*\[default: (.*)\]$")


def commands() -> dict:
    """Every command the CLI has, by its words: `dimctl` (the root's own options), each entry of
    COMMANDS, and a group's subcommands (`generate train`); loaded as `dimctl` loads them to run."""
    import typer

    from dimctl.cli.main import COMMANDS, app, load_command

    found = {"dimctl": typer.main.get_command(app)}
    for name in COMMANDS:
        command = load_command(name)
        found[name] = command
        for sub, leaf in getattr(command, "commands", {}).items():
            found[f"{name} {sub}"] = leaf
    return found


def _cell(text: str) -> str:
    """One table cell: the help text's `code spans` kept as written; outside them, what Markdown
    would read as HTML or emphasis is escaped. A pipe splits a table cell even inside a code span."""
    parts = " ".join(text.split()).split("`")
    for i in range(0, len(parts), 2):  # the even parts lie outside code spans
        parts[i] = html.escape(parts[i], quote=False).replace("*", "\\*").replace("_", "\\_")
    return "`".join(parts).replace("|", "\\|")


def options_table(command, words: str) -> str:
    """A Markdown table of ``command``'s arguments and options, grouped by the help panels its
    `--help` shows (pretrain's Data, Encoder, …), with each option's default and variable."""
    ctx = command.make_context(words, [], resilient_parsing=True)
    panels: dict[str, list[str]] = {}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or getattr(param, "hidden", False):
            continue
        flags, help_text = record
        default = DEFAULT.search(help_text)
        help_text = DEFAULT.sub("", help_text)
        if param.param_type_name == "argument":
            flags = param.make_metavar(ctx) if hasattr(param, "make_metavar") else param.name.upper()
            help_text = help_text or "(argument)"
        variable = param.envvar if isinstance(param.envvar, str) else ""
        row = (f"| `{flags}` | {_cell(help_text)} | {_cell(f'`{default[1]}`') if default else ''} | "
               f"{f'`{variable}`' if variable else ''} |")
        panel = getattr(param, "rich_help_panel", None) or ("Arguments" if param.param_type_name == "argument"
                                                            else "Options")
        panels.setdefault(panel, []).append(row)
    head = "| option | what | default | variable |\n|---|---|---|---|"
    if list(panels) == ["Options"]:
        return f"{head}\n" + "\n".join(panels["Options"]) + "\n"
    return "\n".join(f"**{panel}**\n\n{head}\n" + "\n".join(rows) + "\n" for panel, rows in panels.items())


def usage_and_help(command, words: str) -> str:
    """The command's usage line and its help text as `--help` opens with them, in a code block."""
    ctx = command.make_context(words, [], resilient_parsing=True)
    usage = " ".join(["dimctl" if words == "dimctl" else f"dimctl {words}", *command.collect_usage_pieces(ctx)])
    return f"```text\n{usage}\n\n{(command.help or '').strip()}\n```\n"


def render(name: str, found: dict | None = None) -> str:
    """What a marker for ``name`` is replaced with: usage, help, then the option tables."""
    found = commands() if found is None else found
    if name not in found:
        raise KeyError(f"<!-- options: {name} -->: dimctl has no command {name!r}; it has {', '.join(found)}")
    command = found[name]
    return f"{usage_and_help(command, name)}\n{options_table(command, name)}"


_cache: dict = {}


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if not MARKER.search(markdown):
        return markdown
    if "commands" not in _cache:  # loaded once per build: every command's module is imported
        _cache["commands"] = commands()
    return MARKER.sub(lambda m: render(m[1], _cache["commands"]), markdown)
