"""`--help` of every command shows its texts as written: brackets are not taken for Rich markup,
flags show no value label, and the docstrings' examples keep their lines at 80 columns.
In-process (dimctl's own entry point): what is checked is the text, not the process."""

import inspect

import typer

from dimctl.cli.main import COMMANDS, app, load_command, run


def commands() -> list[tuple[list[str], object]]:
    """(words, click command) of `dimctl`, of every subcommand and of each group's subcommands."""
    found = [([], typer.main.get_command(app))]
    for name in COMMANDS:
        command = load_command(name)
        found.append(([name], command))
        found += [([name, sub], c) for sub, c in getattr(command, "commands", {}).items()]
    return found


def help_of(words: list[str], columns: int, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert run([*words, "--help"]) == 0
    return capsys.readouterr().out


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def texts(words: list[str], command) -> list[str]:
    """Every text the help of ``command`` shows: its own, each parameter's, each subcommand's line."""
    if not words:  # the group lists the table's lines, not the commands (nothing is imported for its help)
        lines = [line for _, _, line in COMMANDS.values()]
    else:
        lines = [inspect.cleandoc(c.help).split("\n\n")[0] for c in getattr(command, "commands", {}).values()]
    return [command.help, *(p.help for p in command.params if getattr(p, "help", None)), *lines]


def test_every_text_shows_as_written_brackets_too(capsys, monkeypatch):
    with_brackets = []
    for words, command in commands():
        shown = flat(help_of(words, 1000, capsys, monkeypatch))  # wide: no line is wrapped
        for text in texts(words, command):
            assert flat(text) in shown, (words, text)
            with_brackets += [text] if "[" in text else []
    assert any("pip install 'dimctl[tensorboard]'" in t for t in with_brackets)  # the markup Rich would eat


def test_flags_show_no_value_label(capsys, monkeypatch):
    flags = labelled = 0
    for words, command in commands():
        shown = help_of(words, 1000, capsys, monkeypatch)
        assert "<bool>" not in shown, words
        rows = [line.replace("│", " ").split() for line in shown.splitlines() if line.startswith("│")]  # panels'
        ctx = command.make_context("dimctl", ["--help"], resilient_parsing=True)
        for param in command.get_params(ctx):
            names = [*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())]
            names += ["-h"] if "--help" in names else []  # as under `dimctl`, whose context names both
            row = next((r for r in rows if r and r[0] in names), None)
            if param.param_type_name != "option" or row is None or param.hidden:
                continue
            rest = [word for word in row if word not in names]
            if param.is_flag:  # the flag's names, then its help: no value between them
                assert rest[0] == param.help.split()[0], (words, names, row)
                flags += 1
            elif param.metavar is None and rest[0].startswith("<"):  # the check sees a label where one is
                labelled += 1
    assert flags > 50 and labelled > 50


def examples(help_text: str) -> list[str]:
    """The lines after a docstring's `Example:` or `Examples:` paragraph (examples come last)."""
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    at = next(i for i, p in enumerate(paragraphs) if p.strip() in ("Example:", "Examples:"))
    return [line.strip() for p in paragraphs[at + 1:] for line in p.splitlines() if line.strip()]


def test_examples_keep_their_lines_at_80_columns(capsys, monkeypatch):
    seen = 0
    for words, command in commands():
        lines = examples(command.help)
        assert lines, words
        shown = [line.strip() for line in help_of(words, 80, capsys, monkeypatch).splitlines()]
        for line in lines:  # each line as written: a command, or one continued by a trailing backslash
            assert line in shown, (words, line)
            seen += line.startswith("dimctl ")
        for i, line in enumerate(lines[:-1]):
            if line.endswith("\\"):  # a continuation goes on with the command's next words
                assert lines[i + 1].startswith(("--", "-", "|", "&&")), (words, lines[i + 1])
    assert seen > 30
