"""Run dimctl commands in this process (no interpreter start-up) with tiny settings, for fixtures."""

import contextlib
import io
import json

from dimctl.cli.main import run

# One epoch of a quarter-width encoder with 16-wide MI heads on digits: about a second.
TINY = ["--dataset", "digits", "--mi-units", "16", "--epochs", "1", "--width", "0.25", "--fc-dim", "64",
        "--checkpoint-every", "0"]


def dimctl(*args) -> str:
    """Run a dimctl command in this process; its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run([str(a) for a in args])
    assert code == 0, (args, code)
    return out.getvalue()


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
