"""The documentation site (mkdocs.yml, docs/): every command of the CLI has its page, whose option
tables docs/hooks.py generates from the command itself; every page is in the nav and every link
between pages resolves. These are the checks `mkdocs build --strict` makes that can drift with the
code, made here without mkdocs, so `make test` catches them too."""

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from dimctl.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def commands():
    return hooks().commands()


def nav_pages() -> list[str]:
    def walk(entry):
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, dict):
            for value in entry.values():
                yield from walk(value)
        else:
            for item in entry:
                yield from walk(item)

    return list(walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))


def markers() -> dict[str, str]:
    """Each `<!-- options: NAME -->` in the pages → the page that holds it."""
    found = {}
    for page in DOCS.rglob("*.md"):
        for name in hooks().MARKER.findall(page.read_text()):
            assert name not in found, f"{name} has options on {found[name]} and {page}"
            found[name] = str(page.relative_to(DOCS))
    return found


def test_every_command_has_a_page_with_its_generated_options(commands):
    expected = {"dimctl", *COMMANDS, *(f"{name} {sub}" for name in COMMANDS
                                      for sub in getattr(commands[name], "commands", {}))}
    assert set(commands) == expected
    placed = markers()
    assert set(placed) == expected  # no command without its table, no table of a command that is gone
    for name in COMMANDS:
        assert placed[name] == f"commands/{name}.md"
        assert all(placed[f"{name} {sub}"] == f"commands/{name}.md" for sub in getattr(commands[name], "commands", {}))


def test_the_generated_tables_hold_every_option_the_help_shows(commands):
    render = hooks().render
    for name, command in commands.items():
        text = render(name, commands)
        assert text.startswith(f"```text\ndimctl {name} [OPTIONS]".replace("dimctl dimctl", "dimctl"))
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            if param.param_type_name == "option":
                assert any(f"{flag}" in text for flag in param.opts), (name, param.opts)
                if param.envvar and name != "dimctl":
                    assert f"`{param.envvar}`" in text, (name, param.envvar)
    assert "**Data**" in render("pretrain", commands)  # pretrain's options in its help's panels
    assert "`DIMCTL_GENERATE_TRAIN_STEPS`" in render("generate train", commands)


def test_an_unknown_marker_fails_the_build(commands):
    with pytest.raises(KeyError, match="dimctl has no command 'nope'"):
        hooks().on_page_markdown("<!-- options: nope -->", None, None, None)


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    nav = nav_pages()
    assert len(nav) == len(set(nav))
    assert set(nav) == pages


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", sorted(str(p.relative_to(ROOT)) for p in [ROOT / "README.md", *DOCS.rglob("*.md")]))
def test_links_between_pages_resolve(page):
    path = ROOT / page
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = target.split("#")[0]
        assert (path.parent / file).exists(), f"{page} links to {target}, which does not exist"
        if path.parent != ROOT and DOCS in path.parents:
            assert DOCS in (path.parent / file).resolve().parents, f"{page} links outside docs/: {target}"
