"""Reports over hostile inputs: names holding HTML stay text in Markdown too, links leaving the
given folders and FIFOs are not read (nor waited on), and bad result lines are named by file and
line (exit 3) — too long, nested too deeply, or with a field of the wrong type."""

import json
import os
import re
import shutil
import subprocess
import sys

from tests.cli.test_cli import ENV, assert_one_line_error, run_here
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
             "huge.jsonl": good + json.dumps({"command": "probe", "pad": "x" * (2 << 20)}) + "\n"}
    messages = {"deep.jsonl": "line 2 is nested too deeply", "typed.jsonl": "line 2: 'accuracy' is str",
                "huge.jsonl": "line 2 is longer than 1 MB"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        result = run_here("report", tmp_path / name)
        assert_one_line_error(result, 3)
        assert f"{name}: {messages[name]}" in result.stderr.decode()
    piped = run_here("report", "-", input=cases["typed.jsonl"].encode())
    assert_one_line_error(piped, 3)
    assert "<stdin>: line 2: 'accuracy' is str" in piped.stderr.decode()
