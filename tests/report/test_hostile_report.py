"""Reports over hostile inputs: names holding HTML stay text in Markdown too, links leaving the
given folders and FIFOs are not read (nor waited on), and bad result lines are named by file and
line (exit 3) — too long, nested too deeply, or with a field of the wrong type."""

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from tests.cli.helpers import ENV, assert_one_line_error, run_here
from tests.report.tiny import dimctl


def test_names_holding_html_are_escaped_in_markdown(made, tmp_path):
    run = tmp_path / "<img src=x onerror=alert(1)>"
    shutil.copytree(made.runs["dim-l"], run, ignore=shutil.ignore_patterns("checkpoints"))
    dimctl("report", run, "-o", tmp_path / "r.md", "--title", "<b>t</b> & co")
    text = (tmp_path / "r.md").read_text()
    outside_code = re.sub(r"`[^`]+`", "", text)
    assert "<img" not in outside_code and "&lt;img src=x onerror=alert(1)&gt;" in outside_code
    assert "# &lt;b&gt;t&lt;/b&gt; &amp; co" in text


def test_links_out_of_the_roots_and_fifos_are_not_read(made, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = {"command": "probe", "layer": "y", "classifier": "svm", "accuracy": 0.123456, "encoder": "0" * 64}
    (outside / "secret.jsonl").write_text(json.dumps(secret) + "\n")
    root = tmp_path / "given"
    run = root / "run"
    shutil.copytree(made.runs["dim-l"], run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "leak.jsonl").symlink_to(outside / "secret.jsonl")
    (root / "loose.jsonl").symlink_to(outside / "secret.jsonl")
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(run / "blocks.jsonl")
    os.mkfifo(root / "blocks.jsonl")
    result = subprocess.run([sys.executable, "-m", "dimctl", "report", str(root)], capture_output=True, env=ENV,
                            timeout=120)  # a reader that opened a FIFO would wait here until killed
    assert result.returncode == 0, result.stderr.decode()
    assert "12.35" not in result.stdout.decode() and "12.3" not in result.stdout.decode()


def test_bad_result_lines_are_named_by_file_and_line(tmp_path):
    good = json.dumps({"command": "probe", "layer": "y", "classifier": "svm", "accuracy": 0.5}) + "\n"
    cases = {"deep.jsonl": good + "[" * 100_000 + "]" * 100_000 + "\n",
             "typed.jsonl": good + json.dumps({"command": "probe", "layer": "y", "accuracy": "high"}) + "\n",
             "huge.jsonl": good + json.dumps({"command": "probe", "pad": "x" * (2 << 20)}) + "\n",
             "infinite.jsonl": good + '{"command": "probe", "layer": "y", "accuracy": Infinity}\n'}
    messages = {"deep.jsonl": "line 2 is nested too deeply", "typed.jsonl": "line 2: 'accuracy' is str",
                "huge.jsonl": "line 2 is longer than 1 MB", "infinite.jsonl": "line 2: 'accuracy' is inf, not a finite"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        result = run_here("report", tmp_path / name)
        assert_one_line_error(result, 3)
        assert f"{name}: {messages[name]}" in result.stderr.decode()
    piped = run_here("report", "-", input=cases["typed.jsonl"].encode())
    assert_one_line_error(piped, 3)
    assert "<stdin>: line 2: 'accuracy' is str" in piped.stderr.decode()


# Names that are markup in some Markdown renderer (HTML on): live HTML through unbalanced or escaped
# backticks, links to javascript:, a blank line that ends an HTML block, control characters.
MARKUP_NAMES = ["`<img src=x onerror=alert(1)>``", "\\`<img src=x onerror=alert(1)>`",
                "``<img src=x onerror=alert(1)>`", "x\\", "[x](javascript:alert(1))", "![x](javascript:alert(1))",
                "<javascript:alert(1)>", "[x]: javascript:alert(1)",
                "a\n\n<img src=x onerror=alert(1)>\n\n[x]: javascript:x",
                "\r dimctl: error: forged", "\x1b]0;title\x07", "\x1b[2J", "*a* _b_ # c | d & <e>"]
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class Live(HTMLParser):
    """What a renderer's HTML would run or follow: tags other than plain text's, on* handlers, javascript: links."""

    TEXT_TAGS = {"h1", "h2", "h3", "h4", "p", "strong", "em", "code", "table", "thead", "tbody", "tr", "th", "td",
                 "details", "summary", "img", "a", "br"}

    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key.startswith("on") or "javascript:" in (value or "").replace(" ", "").lower():
                self.found.append((tag, key, value))
        if tag not in self.TEXT_TAGS or tag == "a" or tag == "img" and not dict(attrs).get("src", "").endswith(".png"):
            self.found.append((tag, attrs))


def _live_markup(markdown_text: str) -> list:
    markdown_it = pytest.importorskip("markdown_it")
    markdown = pytest.importorskip("markdown")
    found = []
    for rendered in (markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown_text),
                     markdown.markdown(markdown_text, extensions=["tables"])):
        parser = Live()
        parser.feed(rendered)
        found += parser.found
    return found


def test_markdown_reports_hold_no_live_markup_whatever_the_names():
    from dimctl.report.document import Document, Heading, Picture, Text
    from dimctl.report.inputs import PNG_SIGNATURE
    from dimctl.report.render import to_markdown, to_text
    from dimctl.report.tables import Table

    for name in MARKUP_NAMES:
        doc = Document(name)
        doc.add(Heading(f"Run {name}", 2))
        doc.add(Heading(f"Made by `dimctl {name}`", 3))
        doc.add(Text(name))
        doc.add(Text(f"folder `{name}`; made by `dimctl probe`."))
        doc.add(Table(f"Results of `dimctl {name}`", ["run", name], [[name, "1"]], [False, True], [f"`{name}` {name}"]))
        doc.add(Table(f"Configuration of {name}", [name], [[name]], [False], [name], main=False))
        doc.add(Picture(PNG_SIGNATURE, name, "pic"))
        text = to_markdown(doc, "r_files")
        assert not CONTROL.search(text) and not _live_markup(text), (name, text, _live_markup(text))
        assert not CONTROL.search(to_text(doc)), ascii(name)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the plots' font lacks glyphs for control characters
def test_report_output_of_hostile_result_lines_holds_no_control_characters_or_markup(tmp_path):
    lines = "".join(json.dumps({"command": "probe", "layer": name, "classifier": "svm", "accuracy": 0.5,
                                "features": f"/x/{name}.h5", "encoder": f"{i:064d}"}) + "\n"
                    for i, name in enumerate(MARKUP_NAMES))
    (tmp_path / "r.jsonl").write_text(lines)
    result = run_here("report", tmp_path / "r.jsonl", "-o", "-")
    assert result.returncode == 0, result.stderr.decode()
    assert "forged" in result.stdout.decode() and not CONTROL.search(result.stdout.decode())
    result = run_here("report", tmp_path / "r.jsonl", "-o", tmp_path / "r.md")
    assert result.returncode == 0 and not CONTROL.search(result.stderr.decode()), result.stderr.decode()
    text = (tmp_path / "r.md").read_text()
    assert "forged" in text and not CONTROL.search(text) and not _live_markup(text)


def _png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk claiming ``width`` × ``height`` grey pixels (no pixel data)."""
    import struct
    import zlib

    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))


def _pretrain_config(**settings) -> str:
    return json.dumps({"command": "pretrain", "config": {"method": "dim", "alpha": 0, "beta": 1, "gamma": 0.1,
                                                         "epochs": 1, **settings}})


@pytest.mark.parametrize("name, text, note", [
    ("config.json", "5", "config.json: holds a JSON number, not the object of settings dimctl writes"),
    ("config.json", "[" * 100_000 + "]" * 100_000, "config.json: nested too deeply to be a run's settings"),
    ("config.json", '{"a":' * 100 + "1" + "}" * 100, "config.json: nested more than 16 levels deep"),
    ("config.json", json.dumps({"command": "pretrain", "config": []}), "config.json: config is a JSON array"),
    ("config.json", _pretrain_config(method=[]), "config.json: config.method is a JSON array, not what dimctl writes"),
    ("config.json", _pretrain_config(alpha="x"), "config.json: config.alpha is a JSON string, not what dimctl writes"),
    ("config.json", _pretrain_config(epochs=1.5), "config.json: config.epochs is a JSON number"),
    ("big.png", _png_header(30_000, 30_000), "big.png: its header claims 30000×30000 pixels, over the"),
    ("samples/big.png", _png_header(30_000, 30_000), "samples/big.png: its header claims 30000×30000 pixels"),
])
def test_bad_run_folder_files_are_skipped_with_a_note(made, tmp_path, name, text, note):
    # Each was an unexpected AttributeError, RecursionError, TypeError, ValueError or
    # DecompressionBombError; the report now goes on without the file and says so once.
    run = tmp_path / "run"
    shutil.copytree(made.runs["dim-l"], run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / name).parent.mkdir(exist_ok=True)
    (run / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    result = run_here("report", run, "-o", tmp_path / "r.html")
    err = result.stderr.decode()
    assert result.returncode == 0, err
    skipped = [line for line in err.splitlines() if "skipped" in line]
    assert skipped == [line for line in skipped if line.startswith(f"dimctl: report: skipped {run}/{note}")], err
    assert len(skipped) == 1 and "unexpected" not in err and "Traceback" not in err


def test_a_deep_folder_tree_is_searched_to_a_bounded_depth(tmp_path):
    # 1,500 nested folders overflowed os.walk's recursion (an unexpected RecursionError).
    root = tmp_path / "root"
    root.mkdir()
    (root / "probe.jsonl").write_text(json.dumps({"command": "probe", "layer": "y", "classifier": "svm",
                                                  "accuracy": 0.5}) + "\n")
    here = os.getcwd()
    os.chdir(root)
    try:
        for _ in range(1500):  # one level at a time: os.makedirs would recurse too
            os.mkdir("d")
            os.chdir("d")
        os.chdir(here)
        result = run_here("report", root)
    finally:
        os.chdir(root)  # removed here, level by level: pytest's rmtree of tmp_path would recurse too
        while os.path.isdir("d"):
            os.chdir("d")
        while os.getcwd() != str(root):
            os.chdir("..")
            os.rmdir("d")
        os.chdir(here)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert err.count("skipped") == 1 and "more than 32 folder levels below" in err and "unexpected" not in err
